"""Atomic file writes: readers see the old file or the whole new one, never half of it.

    with atomic_write("out.wav") as f:
        soundfile.write(f, audio, 22050, format="WAV")
    write_text_atomic("config.json", text)

A temporary file in the target's folder is written (and fsync'ed with durable=True), then renamed over
the target; on any error the temporary file is removed and the target is untouched. The new file gets
the permissions the umask gives an ordinary new file (mkstemp alone would make it 0600).
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Union

PathLike = Union[str, Path]
TMP_MARK = ".tmp-"  # temporary names are .<name>.tmp-<pid>-<random>: a stale one names its dead writer


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: PathLike, durable: bool = False) -> Iterator[BinaryIO]:
    """Binary file handle whose content replaces `path` when the block ends without an error.

    durable: fsync the file and its folder (checkpoints), so a power loss cannot leave an empty file."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}{TMP_MARK}{os.getpid()}-")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(folder)


def write_text_atomic(path: PathLike, text: str) -> None:
    """Replace `path` with UTF-8 `text` atomically."""
    with atomic_write(path) as handle:
        handle.write(text.encode("utf-8"))


def writer_pid(tmp_name: str) -> Optional[int]:
    """The pid in a temporary file name made by atomic_write, or None if it is not one."""
    pid = tmp_name.rpartition(TMP_MARK)[2].partition("-")[0]
    return int(pid) if TMP_MARK in tmp_name and pid.isdigit() else None


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; some filesystems do not support it, which is harmless."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
