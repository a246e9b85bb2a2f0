"""Turn a training checkpoint into a small inference-only voice file.

    python -m inference.export_voice logs/demo_small/G_3400.pth pretrained/demo_voice.pth --half

A training checkpoint holds the raw weights, the EMA weights and the optimizer states (about 15x the
size of the model). The export keeps only the EMA weights (what inference uses), the config and the
vocabulary size; --half stores the floating-point parameters in float16, halving the file again.
Buffers (the mel mean and std) stay in float32: they are tiny and exact values matter there.
TorchSynthesizer.from_checkpoint loads the export like any checkpoint (weights are cast back to float32).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch

import config as config_lib
from training.checkpoint import CheckpointError, check_state_fits, save_checkpoint
from models import FlowMatchingSynthesizer
from training.voice_file import VOCODER_PREFIX, read_vocoder, read_voice


def vocoder_from(path: Path, hps) -> Tuple[dict, Optional[int], object]:
    """The vocoder weights ('generator.*', EMA when present) of a voice, checkpoint or vocoder file, its step,
    and `hps` with that vocoder's generator shape (config.GENERATOR_KEYS: it may be wider than the voice's
    own); CheckpointError unless it was trained on the same mel features as `hps`."""
    state, theirs, ckpt = read_vocoder(path)
    differ = [k for k in config_lib.MEL_KEYS if getattr(theirs.data, k) != getattr(hps.data, k)]
    if differ:
        raise CheckpointError(f"the vocoder {path} was trained on other mel features ({', '.join(differ)}): "
                              f"it cannot vocode this voice's mels")
    hps = hps.replace(**{k: getattr(theirs.model, k) for k in config_lib.GENERATOR_KEYS})
    return {VOCODER_PREFIX + k: v for k, v in state.items()}, ckpt.get("step"), hps


def export_voice(src: Path, dst: Path, half: bool = True, vocoder_only: bool = False,
                 metadata: Optional[dict] = None, vocoder: Optional[Path] = None, **model_changes) -> dict:
    """Write the EMA-only (optionally float16) export of `src` to `dst`. Returns the exported dict.

    vocoder_only: keep the vocoder alone (a shared vocoder file: voice.load_vocoder reads it,
    train.init_checkpoint with init_parts ["vocoder"] starts a new voice from it). metadata: stored as
    is under "metadata" (clone_voice.py records the source dataset and date there). vocoder: take the
    vocoder from this file instead (e.g. a newer shared vocoder for a voice trained with a frozen one).
    model_changes: config keys to set in the export, e.g. sampling_steps=2 (the voice's measured default)."""
    state = read_voice(src, use_ema=True, require_ema=True)  # refuses weights that do not fit their config
    weights, hps = dict(state.weights), state.hps
    metadata = {**(state.checkpoint.get("metadata") or {}), **(metadata or {})}  # a re-export keeps the source's
    hps = hps.replace(**model_changes)
    if vocoder is not None:
        swapped, step, hps = vocoder_from(vocoder, hps)
        weights = {k: v for k, v in weights.items() if not k.startswith(VOCODER_PREFIX)}
        weights.update(swapped)
        metadata = {**(metadata or {}), "vocoder": {"file": Path(vocoder).name, "step": step}}
    with torch.device("meta"):
        skeleton = FlowMatchingSynthesizer(state.n_vocab, hps)
    check_state_fits(skeleton, weights, vocoder or src)
    buffers = {name for name, _ in skeleton.named_buffers()}
    weights = {k: v.half() if half and k not in buffers and v.is_floating_point() else v
               for k, v in weights.items() if not vocoder_only or k.startswith(VOCODER_PREFIX)}
    exported = {"ema": weights, "config": hps.to_dict(), "n_vocab": state.n_vocab,
                "step": state.checkpoint.get("step"), "weights": "ema-only", "dtype": "float16" if half else "float32",
                "parts": ["vocoder"] if vocoder_only else ["acoustic", "vocoder"], **({"metadata": metadata} if metadata else {})}
    save_checkpoint(dst, exported)
    return exported


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Export the EMA weights of a training checkpoint for inference.")
    p.add_argument("checkpoint", help="G_<step>.pth written by train_flow_matching.py")
    p.add_argument("output", help="where to write the voice file (e.g. pretrained/demo_voice.pth)")
    p.add_argument("--half", action="store_true", help="store parameters in float16 (half the size)")
    p.add_argument("--vocoder-only", action="store_true",
                   help="export the vocoder alone (a shared vocoder such as pretrained/vocoder.pth)")
    p.add_argument("--vocoder", help="take the vocoder from this voice / checkpoint / vocoder file instead")
    p.add_argument("--default-steps", type=int, help="the voice's default ODE steps (model.sampling_steps)")
    p.add_argument("--default-method", help="the voice's default solver (model.sampling_method)")
    p.add_argument("--vocoder-bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="the torch path vocodes in bfloat16 on CPUs with bf16 hardware (model.vocoder_bf16); "
                        "set it once that was measured for this voice")
    args = p.parse_args(argv)
    defaults = {k: v for k, v in (("sampling_steps", args.default_steps), ("sampling_method", args.default_method),
                                  ("vocoder_bf16", args.vocoder_bf16)) if v is not None}
    if Path(args.output).resolve() == Path(args.checkpoint).resolve():
        print("error: the output would overwrite the training checkpoint; choose another path", file=sys.stderr)
        return 2
    try:
        exported = export_voice(Path(args.checkpoint), Path(args.output), half=args.half,
                                vocoder_only=args.vocoder_only, vocoder=args.vocoder and Path(args.vocoder),
                                **defaults)
    except (CheckpointError, config_lib.ConfigError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_params = sum(v.numel() for v in exported["ema"].values())
    size_mb = Path(args.output).stat().st_size / 1e6
    print(f"wrote {args.output}: step {exported['step']}, {n_params / 1e6:.2f}M values, "
          f"{exported['dtype']}, {size_mb:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
