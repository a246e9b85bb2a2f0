"""Voice files: a training checkpoint (G_<step>.pth) or an exported voice (export_voice.py) -> a model.

    from training.voice_file import load_voice
    model, hps = load_voice("pretrained/demo_voice.pth")          # inference-ready, on the CPU

Every check happens before the model is built for real: the file loads, it carries a valid config, its
vocabulary fits this code's text front end, and every stored tensor has the shape that config asks for
(checked on a model built on the "meta" device, which allocates nothing, so a config that asks for a
huge model cannot exhaust memory before the mismatch is reported). Problems raise CheckpointError or
ConfigError with one sentence saying what to do.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import torch

import config as config_lib
import text as text_lib
from training.checkpoint import CheckpointError, check_state_fits, load_checkpoint, load_state_checked
from config import INPUT_KEYS, MEL_KEYS, ConfigError, HParams
from models import FlowMatchingSynthesizer, MultiBandISTFTGenerator, make_generator

DEFAULT_VOICE = Path(__file__).resolve().parents[1] / "pretrained" / "multispeaker.pth"  # what users get by default
ConfigLike = Union[None, str, Path, dict, HParams]
VOCODER_PREFIX = "generator."  # the vocoder's weights in a FlowMatchingSynthesizer state dict


@dataclass
class VoiceState:
    """What a voice file holds, validated: the weights to load, the config in force and the vocabulary size."""
    weights: dict
    hps: HParams
    n_vocab: int
    checkpoint: dict


def parse_device(device: Union[str, torch.device]) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N' -> torch.device; ValueError saying what is available otherwise."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was requested but CUDA is not available; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist: {torch.cuda.device_count()} GPU(s) visible")
    return dev


def _to_hparams(cfg: ConfigLike) -> Optional[HParams]:
    if cfg is None or isinstance(cfg, HParams):
        return cfg
    if isinstance(cfg, dict):
        return config_lib.from_dict(cfg)
    return config_lib.load_config(cfg)


def check_config_fits(given: HParams, stored: HParams) -> None:
    """Raise ConfigError naming the field where a user-given config contradicts the checkpoint's."""
    for key in MEL_KEYS + INPUT_KEYS:
        a, b = getattr(given.data, key), getattr(stored.data, key)
        if a != b:
            raise ConfigError(f"config does not fit the checkpoint: data.{key} is {a} in the given config but "
                              f"{b} in the checkpoint; drop --config to use the checkpoint's own config")


def _read_file(path: Union[str, Path]) -> dict:
    try:
        return load_checkpoint(str(path), map_location="cpu")
    except CheckpointError as e:
        if e.__cause__ is None:
            raise
        # torch's unpickling errors run over many lines and talk about weights_only; the type says enough.
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt, unsafe or not a checkpoint and cannot "
                              f"be loaded ({type(e.__cause__).__name__}); use another G_<step>.pth or copy the "
                              f"file again") from None


def read_voice(path: Union[str, Path], use_ema: bool = True, config: ConfigLike = None,
               require_ema: bool = False) -> VoiceState:
    """Load and validate a voice file without building the model (see the module docstring).

    use_ema: take the EMA weights when the file has them (warns and takes the raw weights otherwise,
    unless require_ema). config: overrides the stored config; it must fit the checkpoint's features.
    """
    ckpt = _read_file(path)
    if ckpt.get("parts") == ["vocoder"]:
        raise CheckpointError(f"{path} is a vocoder file (no acoustic model): it cannot speak text by itself; "
                              f"use a voice file or a training checkpoint")
    stored_cfg, given = ckpt.get("config"), _to_hparams(config)
    if stored_cfg is None and given is None:
        raise CheckpointError(f"checkpoint {path} carries no config; pass the training config (--config)")
    try:
        stored = config_lib.from_dict(stored_cfg) if stored_cfg is not None else given
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {path} holds an invalid config: {e}") from None
    if given is not None:
        check_config_fits(given, stored)
    hps = given if given is not None else stored
    n_vocab = ckpt.get("n_vocab", len(text_lib.symbols))
    if isinstance(n_vocab, bool) or not isinstance(n_vocab, int) or n_vocab != len(text_lib.symbols):
        raise CheckpointError(
            f"checkpoint {path} was trained with a vocabulary size (n_vocab) of {n_vocab!r} but this "
            f"code's text frontend has {len(text_lib.symbols)} symbols; use the matching code version")
    weights = _pick_weights(ckpt, path, use_ema, require_ema)
    with torch.device("meta"):  # shapes only: nothing is allocated, however large the config
        skeleton = FlowMatchingSynthesizer(n_vocab, hps)
    check_state_fits(skeleton, weights, path)
    return VoiceState(weights, hps, n_vocab, ckpt)


def _pick_weights(ckpt: dict, path, use_ema: bool, require_ema: bool) -> dict:
    ema, raw = ckpt.get("ema"), ckpt.get("model")
    if use_ema and isinstance(ema, dict):
        return ema
    if use_ema and require_ema:
        raise CheckpointError(f"checkpoint {path} has no EMA weights (key 'ema'); use a checkpoint written "
                              "by train_flow_matching.py")
    if not use_ema and raw is None and isinstance(ema, dict):
        raise CheckpointError(f"{path} holds only EMA weights (an exported voice); drop --no-ema / "
                              "use_ema=False to use them")
    if use_ema:
        warnings.warn(f"checkpoint {path} has no EMA weights; using the raw model weights")
    if not isinstance(raw, dict):
        raise CheckpointError(f"checkpoint {path} has no model weights (key 'model')")
    return raw


def read_vocoder(path: Union[str, Path]) -> Tuple[dict, HParams, dict]:
    """The vocoder of a voice file, training checkpoint or vocoder file without building it: (its weights,
    EMA when present, keyed as in MultiBandISTFTGenerator; the file's config; the whole file's dict)."""
    ckpt = _read_file(path)
    try:
        hps = config_lib.from_dict(ckpt.get("config"))
    except ConfigError as e:
        raise CheckpointError(f"{path} holds no valid config: {e}") from None
    weights = _pick_weights(ckpt, path, use_ema=True, require_ema=False)
    state = {k[len(VOCODER_PREFIX):]: v for k, v in weights.items() if k.startswith(VOCODER_PREFIX)}
    if not state:
        raise CheckpointError(f"{path} has no vocoder weights (keys 'generator.*')")
    return state, hps, ckpt


def load_vocoder(path: Union[str, Path], device: Union[str, torch.device] = "cpu"
                 ) -> Tuple[MultiBandISTFTGenerator, HParams]:
    """The MB-iSTFT generator of a voice file, training checkpoint or vocoder file (EMA weights, weight
    norm folded, eval mode): mel (B, n_mels, T) log-mel -> (audio (B, 1, T * hop), sub-bands)."""
    device = parse_device(device)
    state, hps, _ = read_vocoder(path)
    generator = make_generator(hps)
    load_state_checked(generator, state, path)
    generator.remove_weight_norm()
    return generator.to(device).eval(), hps


def load_voice(path: Union[str, Path], device: Union[str, torch.device] = "cpu", use_ema: bool = True,
               config: ConfigLike = None, istft_impl: str = "torch") -> Tuple[FlowMatchingSynthesizer, HParams]:
    """An inference-ready model (weight norm folded, eval mode, on `device`) and its config.

    istft_impl "conv": the ONNX-exportable iSTFT (same output)."""
    device = parse_device(device)
    state = read_voice(path, use_ema, config)
    model = FlowMatchingSynthesizer(state.n_vocab, state.hps, istft_impl=istft_impl)
    load_state_checked(model, state.weights, path)
    model.remove_weight_norm()
    return model.to(device).eval(), state.hps
