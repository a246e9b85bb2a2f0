"""Typed configuration: JSON with `train`, `data` and `model` sections.

Every key is declared here with its default. Unknown keys, wrong types and inconsistent values raise
`ConfigError` naming the key, so a typo never silently falls back to a default. The config travels
inside every checkpoint (`HParams.to_dict()`), so inference needs only the checkpoint.

Configs are frozen (validated once, never changed behind a model's back): make a changed copy with
`hps.replace(max_steps=100, n_speakers=4)` (keys are unique across the sections).
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from sampling import SamplingConfig


class ConfigError(ValueError):
    """A config value is unknown, missing, of the wrong type or inconsistent."""


# data.* keys that define the mel features (what the acoustic model writes and the vocoder reads).
MEL_KEYS = ("sampling_rate", "filter_length", "hop_length", "win_length", "n_mel_channels", "mel_fmin", "mel_fmax")
# data.* keys that define the model's inputs: its text ids and its speakers.
INPUT_KEYS = ("n_speakers", "add_blank", "text_cleaners", "language")
# data.* keys a trained model's weights depend on (a resumed run must keep them).
MODEL_DATA_KEYS = MEL_KEYS + INPUT_KEYS + ("mel_mean", "mel_std", "cleaned_text")
# The model keys that shape the MB-iSTFT generator: a vocoder taken from another file brings them along.
GENERATOR_KEYS = ("upsample_initial_channel", "upsample_rates", "upsample_kernel_sizes", "resblock",
                  "resblock_kernel_sizes", "resblock_dilation_sizes", "gen_istft_n_fft", "gen_istft_hop_size",
                  "subbands", "pqmf_taps", "pqmf_cutoff", "pqmf_beta", "vocoder", "source_filter_channels", "source_filter_layers")
VOCODERS = ("mb_istft", "source_filter")


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 1234
    epochs: int = 100000
    max_steps: Optional[int] = None  # stop after this many optimizer steps (None: run `epochs`)
    max_minutes: Optional[float] = None  # stop after this much training wall time, summed over resumed runs
    learning_rate: float = 2e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.99])
    eps: float = 1e-8
    weight_decay: float = 0.01
    warmup_steps: int = 1000
    lr_decay: float = 0.999875  # per-step exponential decay after warm-up
    grad_clip: float = 1.0
    batch_size: int = 16
    max_frames_per_batch: Optional[int] = None  # frame-budget batching; None: fixed batch_size
    max_mel_frames: Optional[int] = None  # random crop of long clips for the flow loss (None: whole clip)
    fp16_run: bool = False  # fp16 autocast + GradScaler (CUDA only)
    bf16_run: bool = False  # bf16 autocast (CPU and recent GPUs)
    ema_decay: float = 0.999
    log_interval: int = 50
    eval_interval: int = 1000
    keep_ckpts: int = 3
    num_workers: int = 2
    train_acoustic: bool = True
    train_vocoder: bool = True
    segment_size: int = 8192  # vocoder training segment in samples
    c_mel: float = 45.0
    c_stft: float = 1.0
    c_gen: float = 1.0  # the generator's LSGAN term (HiFi-GAN: 1); lower it with c_fm to soften the adversarial phase
    c_fm: float = 2.0
    c_envelope: float = 0.0  # the vocoder's coarse log-mel L1 (losses.EnvelopeLoss); 0: off
    c_pitch: float = 1.0  # the source-filter vocoder's pitch predictor: log-F0 L1 + voicing BCE vs YIN
    discriminator_start_step: int = 0  # adversarial losses from this step on (a mel/STFT-only warm-up before)
    vocoder_learning_rate: float = 2e-4
    # None: vocoder_learning_rate. A fresh discriminator beside a trained generator may learn faster.
    discriminator_learning_rate: Optional[float] = None
    # Condition dropout of the flow (flow_matching.ConditionDropout): guidance, the null speaker, prompting.
    cond_drop_rate: float = 0.0
    speaker_drop_rate: float = 0.0
    prompt_rate: float = 0.0
    # > 0 with model.prosody_conditioning: each clip is made louder or softer by up to this many dB (its mel and
    # its energy feature together, after the alignment: prosody.loudness_gain), so the model learns what an energy
    # change sounds like.
    gain_augment_db: float = 0.0
    init_checkpoint: Optional[str] = None  # initialise weights (not optimizer state) from this file
    init_parts: List[str] = field(default_factory=lambda: ["acoustic", "vocoder"])
    # Train only the parameters whose names start with one of these (e.g. "acoustic.emb_g"); empty: all.
    trainable: List[str] = field(default_factory=list)
    # > 0: guidance distillation. The velocity net learns init_checkpoint's guided velocity at this scale
    # (a frozen copy is the teacher), so it speaks as if guided with one pass per ODE step; the rest of
    # the model stays frozen.
    guidance_distill_scale: float = 0.0

    def base_learning_rates(self) -> Dict[str, float]:
        """Each optimizer's base learning rate, by the name the trainer gives it."""
        disc = self.vocoder_learning_rate if self.discriminator_learning_rate is None else self.discriminator_learning_rate
        return {"acoustic": self.learning_rate, "vocoder": self.vocoder_learning_rate, "discriminator": disc}


@dataclass(frozen=True)
class DataConfig:
    training_files: str = "filelists/train.txt"
    validation_files: str = "filelists/val.txt"
    text_cleaners: List[str] = field(default_factory=lambda: ["english_cleaners2"])
    language: str = "en-us"  # espeak voice used by phonemizing cleaners
    cleaned_text: bool = True  # filelists already hold cleaned (phonemized) text
    add_blank: bool = True
    sampling_rate: int = 22050
    filter_length: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mel_channels: int = 80
    mel_fmin: float = 0.0
    mel_fmax: Optional[float] = None  # None: Nyquist
    mel_mean: float = 0.0  # dataset log-mel statistics, written by preprocess.py
    mel_std: float = 1.0
    n_speakers: int = 0
    speaker_names: List[str] = field(default_factory=list)  # names of speaker ids 0..n_speakers-1 (optional)
    default_speaker: str = ""  # the speaker name used when none is asked for (empty: id 0)
    resample: bool = True  # resample clips at another rate (False: refuse them)
    min_audio_seconds: float = 0.3
    max_audio_seconds: float = 20.0
    cache_dir: Optional[str] = None  # where mel features are cached (None: no cache)
    durations_dir: Optional[str] = None  # external aligner durations: <cache>/<wav stem>.npy
    # mels the vocoder trains on instead of the recordings' own: <dir>/<wav stem>.npy, e.g. an acoustic
    # model's teacher-forced output (teacher_forced_mels.py), so that it learns to vocode generated mels
    vocoder_mel_dir: Optional[str] = None


@dataclass(frozen=True)
class ModelConfig:
    hidden_channels: int = 192  # text encoder width
    text_encoder_layers: int = 4  # ConvNeXt blocks
    text_encoder_kernel: int = 7
    text_encoder_ff_mult: int = 4
    use_duration_predictor: bool = True
    duration_predictor_channels: int = 256
    duration_predictor_kernel: int = 3
    duration_predictor_layers: int = 2
    flow_d_model: int = 512
    flow_nhead: int = 8
    flow_num_layers: int = 12
    flow_dim_feedforward: int = 2048
    flow_dropout: float = 0.1
    sigma_min: float = 1e-4
    prior_start: bool = True  # ODE starts at mu + noise (Grad-TTS); False: pure noise
    use_prior_loss: bool = True
    gin_channels: int = 0  # speaker embedding size (0: single speaker)
    # MB-iSTFT generator (MB-iSTFT-VITS defaults)
    resblock: str = "1"
    resblock_kernel_sizes: List[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: List[List[int]] = field(default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    upsample_rates: List[int] = field(default_factory=lambda: [4, 4])
    upsample_kernel_sizes: List[int] = field(default_factory=lambda: [16, 16])
    upsample_initial_channel: int = 512
    gen_istft_n_fft: int = 16
    gen_istft_hop_size: int = 4
    subbands: int = 4
    pqmf_taps: int = 62
    pqmf_cutoff: Optional[float] = None  # None: chosen for near-perfect reconstruction (pqmf.optimal_cutoff); 0.15 measures only ~22 dB
    pqmf_beta: float = 9.0
    prompt_context: bool = False  # the velocity net also sees a mel context (reference-clip prompting)
    # The flow also sees each token's pitch, voicing and energy (prosody.py): measured in training, predicted
    # and edited (SamplingConfig pitch_shift, pitch_range, energy_db) at inference.
    prosody_conditioning: bool = False
    cfg_scale: float = 0.0  # default classifier-free guidance scale at inference (needs cond_drop_rate > 0)
    # The voice's default sampling at inference (with cfg_scale): what every path (command line, Python API,
    # ONNX export, server, page) uses when the user does not choose; set from a measured table, not a guess.
    sampling_steps: int = 10
    sampling_method: str = "euler"
    # The torch path vocodes in bfloat16 autocast on a CPU with bf16 hardware (AMX or AVX-512 BF16), where it
    # is faster; set for a voice whose quality was measured that way (the last convolution stays fp32).
    vocoder_bf16: bool = False
    # "mb_istft": the MB-iSTFT generator (models.py); "source_filter": excitation at the predicted pitch
    # filtered by gains a ConvNeXt reads from the mel (source_filter.py), which cannot lock to the frame rate.
    vocoder: str = "mb_istft"
    source_filter_channels: int = 384
    source_filter_layers: int = 8
    speaker_conditioned_vocoder: bool = True  # False: a speaker-independent (shared) vocoder
    use_discriminator: bool = False
    use_spectral_norm: bool = False
    # Widest layer of each period / scale discriminator. HiFi-GAN's 1024 costs ~7x the generator's step on a
    # CPU; 256 keeps the same layout at ~1/6 of that cost.
    discriminator_channels: int = 1024


@dataclass(frozen=True)
class HParams:
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "HParams":
        """A validated copy with `changes` (config keys of any section, e.g. max_steps=5, n_speakers=3)."""
        sections = {name: {} for name in _SECTIONS}
        for key, value in changes.items():
            section = _SECTION_OF.get(key)
            if section is None:
                raise ConfigError(f"unknown config key {key!r}")
            sections[section][key] = value
        return validate(HParams(**{name: dataclasses.replace(getattr(self, name), **values)
                                   for name, values in sections.items()}))

    def save(self, path: str | Path) -> None:
        """Write the config as JSON, atomically (another rank or a reader never sees half a file)."""
        from atomic import write_text_atomic

        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")


_SECTIONS = {"train": TrainConfig, "data": DataConfig, "model": ModelConfig}
# Keys of experiments that never shipped, removed from the code (the vocoder model card names the commit that
# still has them). Files written before then carry them at their "off" value, which is dropped on loading.
RETIRED_KEYS = {("train", "c_if"): 0.0, ("data", "speed_perturb"): None, ("model", "harmonic_source"): False,
                ("model", "source_harmonics"): 8}
_SECTION_OF = {f.name: name for name, cls in _SECTIONS.items() for f in dataclasses.fields(cls)}


def _check_type(name: str, value: Any, hint: Any) -> Any:
    """Check one JSON value against a dataclass field's type hint; ints are accepted for floats.

    List hints (List[int], List[List[int]], ...) are checked element by element, so
    `"upsample_rates": ["4", "4"]` is refused here, naming the key, instead of failing deep in a model.
    """
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) is typing.Union and type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else hint
    expected = _type_name(base)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key '{name}' must not be null (expected {expected})")
    if typing.get_origin(base) is list:
        (inner,) = typing.get_args(base)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{name}' has value {value!r}, expected {expected}")
        try:
            return [_check_type(name, v, inner) for v in value]
        except ConfigError:
            raise ConfigError(f"config key '{name}' has value {value!r}, expected {expected} "
                              f"(every element must be {_type_name(inner)})") from None
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
    }.get(base)
    if ok is None:
        raise ConfigError(f"config key '{name}' has an unsupported type {hint!r} (config.py bug)")
    if not ok:
        raise ConfigError(f"config key '{name}' has value {value!r}, expected {expected}")
    return float(value) if base is float else value


def _type_name(hint: Any) -> str:
    """List[int] -> 'List[int]', float -> 'float' (for messages)."""
    if typing.get_origin(hint) is list:
        return f"List[{_type_name(typing.get_args(hint)[0])}]"
    return getattr(hint, "__name__", str(hint))


def _section_from_dict(section: str, values: dict):
    cls = _SECTIONS[section]
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{section}' must be an object")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if (section, key) in RETIRED_KEYS and value != RETIRED_KEYS[section, key]:
            raise ConfigError(f"{section}.{key} was an experiment that never shipped and is gone from the code "
                              f"(docs/experiments.md names the commit that has it); remove the key")
    values = {k: v for k, v in values.items() if (section, k) not in RETIRED_KEYS}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown config key(s) in '{section}': {', '.join(unknown)} "
                          f"(known keys: {', '.join(known)})")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _check_type(f"{section}.{k}", v, hints[k]) for k, v in values.items()}
    return cls(**kwargs)


def check_generator_config(hps: HParams) -> None:
    """Raise ConfigError (naming the values) when the MB-iSTFT generator cannot produce T * hop_length samples.

    Called by `validate` and by the generator's constructor (hps built in code never went through validate).
    """
    m, d = hps.model, hps.data
    if m.vocoder not in VOCODERS:
        raise ConfigError(f"model.vocoder must be one of {', '.join(VOCODERS)}, got {m.vocoder!r}")
    if m.vocoder == "source_filter":
        if m.source_filter_channels < 1 or m.source_filter_layers < 0:
            raise ConfigError("model.source_filter_channels must be >= 1 and model.source_filter_layers >= 0, got "
                              f"{m.source_filter_channels} and {m.source_filter_layers}")
        return
    product = math.prod(m.upsample_rates)
    total = product * m.gen_istft_hop_size * m.subbands
    if total != d.hop_length:
        raise ConfigError(
            f"model.upsample_rates {m.upsample_rates} (product {product}) * model.gen_istft_hop_size "
            f"{m.gen_istft_hop_size} * model.subbands {m.subbands} = {total}, but data.hop_length is "
            f"{d.hop_length}; the rule prod(upsample_rates) * gen_istft_hop_size * subbands == hop_length "
            f"must hold (change upsample_rates when you change the sample rate / hop)")
    if len(m.upsample_rates) != len(m.upsample_kernel_sizes):
        raise ConfigError(f"model.upsample_rates {m.upsample_rates} and model.upsample_kernel_sizes "
                          f"{m.upsample_kernel_sizes} must have the same length")
    for kernel, rate in zip(m.upsample_kernel_sizes, m.upsample_rates):
        if rate < 1 or kernel < rate:
            raise ConfigError(f"model.upsample_kernel_sizes entry {kernel} is smaller than its upsample rate "
                              f"{rate} (or the rate is < 1); use a kernel of at least the rate (2 * rate is usual)")
        if rate == 1 and (kernel - rate) % 2:
            # ConvTranspose1d with stride 1 cannot take output_padding: T frames stay T only for odd kernels.
            raise ConfigError(f"model.upsample_kernel_sizes entry {kernel} with rate 1: kernel - rate must be "
                              f"even; use e.g. kernel 3")
    if len(m.resblock_kernel_sizes) != len(m.resblock_dilation_sizes):
        raise ConfigError(f"model.resblock_kernel_sizes {m.resblock_kernel_sizes} and model.resblock_dilation_sizes "
                          f"{m.resblock_dilation_sizes} must have the same length")
    if m.resblock not in ("1", "2"):
        raise ConfigError(f"model.resblock must be '1' or '2', got {m.resblock!r}")
    if not 0 < m.gen_istft_hop_size <= m.gen_istft_n_fft // 2:
        raise ConfigError(f"model.gen_istft_hop_size ({m.gen_istft_hop_size}) must be in [1, gen_istft_n_fft // 2] "
                          f"(gen_istft_n_fft {m.gen_istft_n_fft})")
    if m.upsample_initial_channel % (2 ** len(m.upsample_rates)):
        raise ConfigError(f"model.upsample_initial_channel ({m.upsample_initial_channel}) must be divisible by "
                          f"2 ** len(upsample_rates) = {2 ** len(m.upsample_rates)} (channels halve per stage)")


def check_guidance_distillation(hps: HParams) -> None:
    """train.guidance_distill_scale > 0 needs a teacher to start from and a student that needs no guidance."""
    t, m = hps.train, hps.model
    if t.guidance_distill_scale < 0:
        raise ConfigError(f"train.guidance_distill_scale must be >= 0, got {t.guidance_distill_scale}")
    if t.guidance_distill_scale == 0:
        return
    if not t.init_checkpoint or "acoustic" not in t.init_parts or not t.train_acoustic:
        raise ConfigError("train.guidance_distill_scale > 0 distills init_checkpoint's velocity net: set "
                          "train.init_checkpoint to the guided voice, 'acoustic' in train.init_parts and "
                          "train.train_acoustic true")
    if t.cond_drop_rate or t.speaker_drop_rate:
        raise ConfigError("guidance distillation trains the conditional velocity only: set train.cond_drop_rate "
                          "and train.speaker_drop_rate to 0")
    if m.cfg_scale:
        raise ConfigError("the distilled velocity net already includes guidance: set model.cfg_scale to 0")
    if any(not p.startswith("acoustic.cfm.") for p in t.trainable):
        raise ConfigError("guidance distillation trains the velocity net only: train.trainable may name only "
                          "parameters under 'acoustic.cfm.' (or be empty)")


def guidance_refusal(hps: HParams) -> Optional[str]:
    """Why this voice cannot be sampled with guidance (cfg_scale > 0), or None when it can: guidance needs the
    unconditional velocity, which only training with condition dropout teaches."""
    t = hps.train
    if t.guidance_distill_scale > 0:
        return (f"this voice has guidance folded in (distilled at scale {t.guidance_distill_scale:g}): every step "
                f"is already guided, so cfg_scale must be 0 or left out")
    if t.cond_drop_rate <= 0 and hps.model.cfg_scale <= 0:
        return ("this voice was trained without condition dropout (train.cond_drop_rate 0), so it has no "
                "unconditional velocity to guide with: cfg_scale must be 0 or left out")
    return None


def default_sampling(model: ModelConfig) -> SamplingConfig:
    """The sampling settings a voice speaks with unless the user chooses others (model.sampling_*, cfg_scale)."""
    return SamplingConfig(steps=model.sampling_steps, method=model.sampling_method, cfg_scale=model.cfg_scale)


def validate(hps: HParams) -> HParams:
    """Raise ConfigError for values that are individually valid but inconsistent together."""
    d, m, t = hps.data, hps.model, hps.train
    check_generator_config(hps)
    if m.flow_d_model % m.flow_nhead or (m.flow_d_model // m.flow_nhead) % 2:
        raise ConfigError(f"model.flow_d_model ({m.flow_d_model}) must be divisible by model.flow_nhead "
                          f"({m.flow_nhead}) into an even head size (rotary embedding)")
    if d.win_length > d.filter_length:
        raise ConfigError(f"data.win_length ({d.win_length}) must not exceed data.filter_length ({d.filter_length})")
    if d.mel_std <= 0:
        raise ConfigError(f"data.mel_std must be positive, got {d.mel_std}")
    if t.max_minutes is not None and t.max_minutes <= 0:
        raise ConfigError(f"train.max_minutes must be positive (or null for no time limit), got {t.max_minutes}")
    rates = t.base_learning_rates()
    if min(rates.values()) <= 0:
        raise ConfigError(f"learning rates must be positive, got {rates} (train.learning_rate, "
                          "vocoder_learning_rate, discriminator_learning_rate)")
    if t.fp16_run and t.bf16_run:
        raise ConfigError("train.fp16_run and train.bf16_run are exclusive; enable at most one")
    if not (t.train_acoustic or t.train_vocoder):
        raise ConfigError("train.train_acoustic and train.train_vocoder are both false: nothing to train")
    for key in ("cond_drop_rate", "speaker_drop_rate", "prompt_rate"):
        if not 0.0 <= getattr(t, key) <= 1.0:
            raise ConfigError(f"train.{key} must be in [0, 1], got {getattr(t, key)}")
    if t.prompt_rate > 0 and not m.prompt_context:
        raise ConfigError("train.prompt_rate > 0 needs model.prompt_context true (the network's prompt input)")
    if t.gain_augment_db > 0 and not m.prosody_conditioning:
        raise ConfigError("train.gain_augment_db > 0 needs model.prosody_conditioning true (it augments the energy "
                          "feature the model is conditioned on)")
    if t.speaker_drop_rate > 0 and d.n_speakers < 2:
        raise ConfigError("train.speaker_drop_rate > 0 needs a multi-speaker model (data.n_speakers > 1)")
    if m.cfg_scale < 0:
        raise ConfigError(f"model.cfg_scale must be >= 0, got {m.cfg_scale}")
    try:
        default_sampling(m)
    except ValueError as e:
        raise ConfigError(f"the model's default sampling (model.sampling_steps, sampling_method, cfg_scale): {e}") from None
    check_guidance_distillation(hps)
    if m.discriminator_channels < 16 or m.discriminator_channels % 16:
        raise ConfigError(f"model.discriminator_channels must be a multiple of 16 (grouped convs), got "
                          f"{m.discriminator_channels}")
    if t.discriminator_start_step < 0:
        raise ConfigError(f"train.discriminator_start_step must be >= 0, got {t.discriminator_start_step}")
    if t.segment_size % d.hop_length:
        raise ConfigError(f"train.segment_size ({t.segment_size}) must be a multiple of data.hop_length ({d.hop_length})")
    if d.speaker_names and (len(d.speaker_names) != d.n_speakers or len(set(d.speaker_names)) != d.n_speakers):
        raise ConfigError(f"data.speaker_names must hold {d.n_speakers} distinct names (one per speaker id), got "
                          f"{d.speaker_names}")
    if d.default_speaker and d.default_speaker not in d.speaker_names:
        raise ConfigError(f"data.default_speaker {d.default_speaker!r} is not one of data.speaker_names "
                          f"{d.speaker_names}")
    if (m.gin_channels > 0) != (d.n_speakers > 1):
        raise ConfigError(f"model.gin_channels ({m.gin_channels}) must be > 0 exactly when data.n_speakers "
                          f"({d.n_speakers}) > 1")
    return hps


def from_dict(raw: dict) -> HParams:
    if not isinstance(raw, dict):
        raise ConfigError("config must be a JSON object with 'train', 'data' and 'model' sections")
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(unknown)} (expected train, data, model)")
    sections = {name: _section_from_dict(name, raw.get(name, {})) for name in _SECTIONS}
    return validate(HParams(**sections))


def load_config(path: str | Path) -> HParams:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {path} is not valid JSON: {e}") from e
    return from_dict(raw)
