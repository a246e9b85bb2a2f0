"""Helpers of train_flow_matching.py: run folder and config, logging, stop signals, RNG state, step bookkeeping.

The training loop itself (Trainer, run_worker, main) lives in train_flow_matching.py, which re-exports
these names.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

import config as config_lib
from training.checkpoint import list_checkpoints
from config import MODEL_DATA_KEYS, ConfigError, HParams
from training.distributed import DistContext

LOGGER_NAME = "train_flow_matching"
# Model keys that may change between runs of one folder (they do not change the acoustic/vocoder weights).
MUTABLE_MODEL_KEYS = ("flow_dropout", "use_discriminator", "discriminator_channels", "cfg_scale")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REPEAT_SIGNAL_GRACE_S = 2.0  # a second Ctrl-C later than this aborts without saving


# ----------------------------------------------------------------------------------------------------------
# Run folder, config and logging


def resolve_run_dir(name: str) -> Path:
    """A bare name goes under logs/ (VITS convention); anything with a path separator is used as is."""
    path = Path(name)
    if path.is_absolute() or len(path.parts) > 1:
        return path
    return Path("logs") / name


def shape_differences(saved: HParams, given: HParams) -> List[str]:
    """Config keys that differ and would make the saved weights mean something else."""
    diffs = []
    s, g = saved.to_dict(), given.to_dict()
    for key, value in s["model"].items():
        if key not in MUTABLE_MODEL_KEYS and g["model"].get(key) != value:
            diffs.append(f"model.{key} ({value!r} in the run, {g['model'].get(key)!r} in the given config)")
    for key in MODEL_DATA_KEYS:
        if g["data"].get(key) != s["data"].get(key):
            diffs.append(f"data.{key} ({s['data'].get(key)!r} in the run, {g['data'].get(key)!r} in the given config)")
    return diffs


def other_differences(saved: HParams, given: HParams) -> List[str]:
    s, g = saved.to_dict(), given.to_dict()
    return [f"{sec}.{k}: {s[sec][k]!r} -> {g[sec][k]!r}" for sec in s for k in s[sec] if s[sec][k] != g[sec][k]]


def prepare_run(args: argparse.Namespace) -> tuple:
    """Resolve the run folder and the config in force; write config.json. Returns (hps, run_dir, notes).

    A given config is compared with the run's config.json only when the folder holds checkpoints: a
    folder with a config.json but no checkpoint (e.g. a run that failed at start) just takes the new one.
    Configs are validated on load, so a bad config never reaches config.json.
    """
    run_dir = resolve_run_dir(args.model)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"-m {args.model}: {run_dir} is a file, not a run folder; pass a folder name "
                          f"(a bare NAME means logs/NAME)")
    saved_path = run_dir / "config.json"
    notes: List[str] = []
    if args.config is None:
        if not saved_path.is_file():
            raise ConfigError(f"no config given and {saved_path} does not exist: pass -c CONFIG to start a run")
        hps = config_lib.load_config(saved_path)
    else:
        hps = config_lib.load_config(args.config)
        if saved_path.is_file() and list_checkpoints(run_dir, "G_"):
            saved = config_lib.load_config(saved_path)
            diffs = shape_differences(saved, hps)
            if diffs:
                raise ConfigError(
                    f"config {args.config} does not match the run in {run_dir}: " + "; ".join(diffs)
                    + ". These keys define the model, so its checkpoints cannot continue with them. "
                      "Use another -m name for a new run, or drop -c to resume with the run's config.")
            notes = [f"config change on resume: {d}" for d in other_differences(saved, hps)]
        elif saved_path.is_file():
            notes = [f"{saved_path} has no checkpoints next to it: replaced by {args.config}"]
    if args.max_steps is not None:
        hps = hps.replace(max_steps=args.max_steps)
    if args.max_minutes is not None:
        hps = hps.replace(max_minutes=args.max_minutes)
    if not Path(hps.data.training_files).is_file():
        raise ConfigError(f"data.training_files {hps.data.training_files!r} not found (relative paths are taken "
                          f"from the current folder {os.getcwd()}); write the file lists first or fix the path")
    run_dir.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank runs this; one writes
        hps.save(saved_path)
    return hps, run_dir, notes


class _TqdmHandler(logging.StreamHandler):
    """Console handler that does not break the progress bar."""

    def emit(self, record):
        try:
            from tqdm import tqdm
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def setup_logging(run_dir: Path, ctx: DistContext) -> logging.Logger:
    """train.log + console on rank 0; other ranks print warnings and errors only, tagged with the rank."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s " + (f"[rank {ctx.rank}] " if ctx.distributed else "")
                            + "%(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: List[logging.Handler] = [_TqdmHandler()]
    if ctx.is_main:
        handlers.append(logging.FileHandler(run_dir / "train.log"))
    else:
        handlers[0].setLevel(logging.WARNING)
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    return logger


def close_logging(logger: logging.Logger) -> None:
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()


# ----------------------------------------------------------------------------------------------------------
# Stop signals, precision, optimizer groups, RNG state and step bookkeeping


class StopRequest:
    """SIGINT / SIGTERM set a flag checked after every step; a second SIGINT aborts immediately."""

    def __init__(self, logger: logging.Logger):
        self.log = logger
        self.signum: Optional[int] = None
        self._since = 0.0
        self._previous: Dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        import threading
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if self.signum is None:
            self.signum, self._since = signum, now
            self.log.warning("received %s: finishing this step, saving a checkpoint, then exiting "
                             "(press Ctrl-C again to abort without saving)", signal.Signals(signum).name)
        elif signum == signal.SIGINT and now - self._since > REPEAT_SIGNAL_GRACE_S:
            raise KeyboardInterrupt
        # A repeat within the grace period is the same stop request arriving twice (terminal + parent).


def start_data_workers(loader: torch.utils.data.DataLoader):
    """iter(loader) with SIGINT / SIGTERM held while its workers fork. A forked worker inherits the mask,
    so a stop sent to the whole process group (pkill -f, systemd, Ctrl-C) in the moment before the worker
    ignores it (torch's own SIGTERM handler would kill it) waits, and is dropped once the worker ignores it;
    in the trainer it is delivered when the mask is lifted here."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks (and no fork)
        return iter(loader)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_stop_signals(_worker_id: int) -> None:
    """DataLoader worker_init_fn: data workers ignore SIGINT / SIGTERM, which must reach the trainer (it
    saves a checkpoint), not kill a worker under it. Lifts the mask start_data_workers set (a stop that
    arrived meanwhile is dropped)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def resolve_amp(train_cfg, device: torch.device, logger: logging.Logger) -> Optional[torch.dtype]:
    """Autocast dtype: fp16 (CUDA only; on CPU falls back to bf16 with a warning), bf16, or None (fp32)."""
    if train_cfg.fp16_run:
        if device.type == "cuda":
            return torch.float16
        logger.warning("train.fp16_run needs a CUDA device (GradScaler); on %s training uses bf16 autocast "
                       "instead. Set bf16_run instead of fp16_run to silence this warning.", device.type)
        return torch.bfloat16
    if train_cfg.bf16_run:
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("train.bf16_run is set but this GPU does not support bf16; use fp16_run instead")
        return torch.bfloat16
    return None


def param_groups(module: torch.nn.Module, weight_decay: float) -> List[dict]:
    """AdamW groups: decay matrices / conv kernels, not biases, norms, scales and embeddings' 1-D params.

    Parameters of submodules with an `lr_scale` attribute (new parts joined to a trained network, e.g. the
    vocoder's pitch predictor) get groups of their own after those, at that multiple of the learning rate.
    """
    scales = {id(p): m.lr_scale for m in module.modules() if hasattr(m, "lr_scale") for p in m.parameters()}
    groups: Dict[tuple, list] = {}
    for p in module.parameters():
        if p.requires_grad:
            groups.setdefault((p.dim() >= 2, scales.get(id(p), 1.0)), []).append(p)
    order = sorted(groups, key=lambda key: (key[1] != 1.0, not key[0], key[1]))
    return [dict(params=groups[key], weight_decay=weight_decay if key[0] else 0.0, decay=key[0], lr_scale=key[1])
            for key in order]


def to_device(batch: dict, device: torch.device) -> dict:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}


def capture_rng(device: torch.device) -> dict:
    np_state = np.random.get_state()
    state = dict(torch=torch.get_rng_state(), python=random.getstate(),
                 numpy=[np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]])
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


@dataclass
class StepResult:
    """What one training step did: losses (floats), gradient norms, whether the update was skipped."""

    losses: Dict[str, float] = field(default_factory=dict)
    grad_norms: Dict[str, float] = field(default_factory=dict)
    skipped: bool = False  # some part's update was skipped (non-finite); counted once in skipped_steps
    skipped_parts: List[str] = field(default_factory=list)  # e.g. ["discriminator"], ["acoustic", "vocoder"]
    frames: int = 0  # mel frames in this process's batch


class Meter:
    """Running sums of step results between two log lines."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums: Dict[str, float] = {}
        self.count = 0
        self.frames = 0
        self.seconds = 0.0
        self.skipped = 0

    def add(self, result: StepResult, seconds: float) -> None:
        self.count += 1
        self.frames += result.frames
        self.seconds += seconds
        self.skipped += int(result.skipped)
        if result.skipped:
            return
        for k, v in {**{f"loss/{k}": v for k, v in result.losses.items()},
                     **{f"grad_norm/{k}": v for k, v in result.grad_norms.items()}}.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def means(self) -> Dict[str, float]:
        n = max(self.count - self.skipped, 1)
        return {k: v / n for k, v in self.sums.items()}
