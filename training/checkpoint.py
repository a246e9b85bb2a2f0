"""Training checkpoints: atomic saves, discovery, validation, pruning and resume with fallback.

Files are named `<prefix><step>.pth` (`G_1000.pth`, `D_1000.pth`). A save writes a temporary file in the
same folder, flushes it to disk and renames it over the target, so a crash or a kill mid-save never
leaves a half-written `G_*.pth`. Loading turns every failure (missing, truncated, not a checkpoint) into
`CheckpointError` with the path and what to do; resuming falls back to the previous checkpoint with a
warning instead of silently restarting from step 0.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple, Union

from atomic import atomic_write, writer_pid

if TYPE_CHECKING:
    import torch

PathLike = Union[str, Path]


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or lacks required entries."""


def save_checkpoint(path: PathLike, state: dict) -> Path:
    """Write `state` to `path` atomically and durably (temporary file + fsync + rename). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, durable=True) as f:
        import torch  # imported here: CheckpointError must be usable without torch (the ONNX runtime)

        torch.save(state, f)
    return path


def checkpoint_step(path: PathLike, prefix: str = "G_") -> Optional[int]:
    """Step number of `<prefix><step>.pth`, or None if the name does not match."""
    m = re.fullmatch(re.escape(prefix) + r"(\d+)\.pth", Path(path).name)
    return int(m.group(1)) if m else None


def list_checkpoints(directory: PathLike, prefix: str = "G_") -> List[Path]:
    """All `<prefix><step>.pth` in `directory`, oldest (lowest step) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(checkpoint_step(p, prefix), p) for p in directory.iterdir() if p.is_file()]
    return [p for step, p in sorted((s, p) for s, p in found if s is not None)]


def latest_checkpoint(directory: PathLike, prefix: str = "G_") -> Optional[Path]:
    """Newest `<prefix><step>.pth` by step number (not by file time), or None."""
    found = list_checkpoints(directory, prefix)
    return found[-1] if found else None


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu",
                    required_keys: Sequence[str] = ()) -> dict:
    """Load a checkpoint dict; raise CheckpointError if it is missing, unreadable or incomplete."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); the save was interrupted. "
                              f"Delete it to resume from an older checkpoint.")
    import torch

    try:
        # weights_only: a checkpoint holds tensors, numbers, strings and containers only.
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError... for damaged files
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt (or unsafe) and cannot be loaded "
                              f"({_load_failure(e)}). Delete or move it to resume from an older checkpoint.") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    missing = [k for k in required_keys if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks required entries: {', '.join(missing)}")
    return state


def _load_failure(e: Exception) -> str:
    """One line for why torch.load failed (torch's own text runs over many lines of weights_only advice)."""
    if isinstance(e, pickle.UnpicklingError):
        return ("UnpicklingError: not a weights-only checkpoint: damaged, not a checkpoint, or holding objects "
                "other than tensors, which are refused because loading them could run code")
    first_line = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {first_line.split('. ')[0][:200]}"


def prune_checkpoints(directory: PathLike, keep: int, prefix: str = "G_") -> List[Path]:
    """Delete all but the newest `keep` `<prefix><step>.pth` files (keep <= 0: keep all).

    Also removes stale temporary files left by a killed save. Returns the deleted paths.
    """
    directory = Path(directory)
    removed = []
    if directory.is_dir():
        for p in directory.iterdir():
            pid = writer_pid(p.name)
            if p.name.startswith(f".{prefix}") and pid is not None and not _pid_alive(pid):
                p.unlink(missing_ok=True)
                removed.append(p)
    if keep > 0:
        for p in list_checkpoints(directory, prefix)[:-keep]:
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class ResumePoint:
    """A loaded checkpoint and the newer ones that could not be used."""

    step: int
    path: Path
    state: dict
    skipped: List[Tuple[Path, str]] = field(default_factory=list)  # (path, reason) of unusable newer files


def load_latest_valid(directory: PathLike, prefix: str = "G_", map_location: Union[str, torch.device] = "cpu",
                      required_keys: Sequence[str] = (), logger: Optional[logging.Logger] = None
                      ) -> Optional[ResumePoint]:
    """Load the newest usable checkpoint in `directory`, falling back to older ones if needed.

    A step is usable when `<prefix><step>.pth` loads cleanly. Each unusable newer step is reported
    with a warning. Returns None only when there is no checkpoint at
    all; if checkpoints exist but none loads, raises CheckpointError rather than starting from zero.
    """
    log = logger or logging.getLogger(__name__)
    candidates = list_checkpoints(directory, prefix)
    skipped: List[Tuple[Path, str]] = []
    for path in reversed(candidates):
        step = checkpoint_step(path, prefix)
        try:
            state = load_checkpoint(path, map_location, required_keys)
        except CheckpointError as e:
            log.warning("cannot resume from step %d: %s Falling back to the previous checkpoint.", step, e)
            skipped.append((path, str(e)))
            continue
        if skipped:
            log.warning("resuming from %s (step %d) instead of the newest checkpoint %s",
                        path, step, skipped[0][0])
        return ResumePoint(step=step, path=path, state=state, skipped=skipped)
    if candidates:
        raise CheckpointError(
            f"none of the {len(candidates)} checkpoint(s) in {directory} can be loaded "
            f"({'; '.join(reason for _, reason in skipped)}). Refusing to restart from step 0 over "
            f"them: move the folder away or pass another -m name to start a fresh run.")
    return None


def check_state_fits(module: torch.nn.Module, state: dict, path: PathLike) -> None:
    """CheckpointError naming missing, unexpected or wrongly shaped entries of `state` for `module`."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} shape mismatch(es), e.g. " + "; ".join(wrong[:3]))
        if missing:
            parts.append(f"{len(missing)} missing weight(s), e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weight(s), e.g. {', '.join(unexpected[:3])}")
        raise CheckpointError(f"checkpoint {path} does not fit the model built from the config: "
                              + "; ".join(parts) + ". Was it written with another config or code version?")


def load_state_checked(module: torch.nn.Module, state: dict, path: PathLike) -> None:
    """`module.load_state_dict(state)` with a CheckpointError naming mismatched entries, not torch's wall of text."""
    check_state_fits(module, state, path)
    module.load_state_dict(state)
