"""Atomic file writes: readers see the old file or the whole new one, never half of it.

    with atomic_write("out.wav") as f:
        soundfile.write(f, audio, 22050, format="WAV")
    write_text_atomic("config.json", text)

A temporary file in the target's folder is written (and fsync'ed with durable=True), then renamed over
the target; on any error the temporary file is removed and the target is untouched. The new file gets
the permissions the umask gives an ordinary new file (mkstemp alone would make it 0600).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Sequence, Union

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


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes: which model or voice file wrote a folder (export_onnx, teacher_forced_mels)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (also when neither exists yet)."""
    if a.exists() and b.exists():
        return a.samefile(b)
    return a.resolve() == b.resolve()


def check_output_path(path: Union[str, Path], inputs: Sequence[Union[None, str, Path]] = (),
                      flag: str = "--output", example: str = "out.wav") -> Path:
    """Raise OSError with a clear message unless a file can be written at `path` (checked up front).

    inputs: files the run reads (checkpoint, config, text file) or writes besides `path` (another output):
    `path` naming one of them is refused with ValueError, since writing it would destroy the other.
    flag: the option that gave `path` (--output, --alignments, ...), named in the messages; example: a file
    name suggested when `path` is a folder."""
    path = Path(path)
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise ValueError(f"{flag} {path} is one of the inputs or outputs ({source}); writing there would "
                             f"destroy it: choose another {flag}")
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a directory; give a file name such as {path / example}")
    if not parent.exists():
        raise FileNotFoundError(f"{flag} directory {parent} does not exist; create it first or choose another {flag}")
    if not parent.is_dir():
        raise NotADirectoryError(f"{flag} directory {parent} is not a directory; choose another {flag}")
    try:  # os.access is unreliable (root, ACLs, read-only mounts): really try to create a file
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".write-test-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise PermissionError(f"cannot write to {flag} directory {parent}: {e.strerror or e}; choose another "
                              f"{flag}") from None
    return path
