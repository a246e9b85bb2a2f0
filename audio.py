"""Waveform I/O: read with soundfile, mix to mono, resample with soxr.

No torchaudio: soundfile (libsndfile) reads WAV/FLAC/OGG, soxr resamples, and the STFT/mel come from
torch + librosa (mel_processing.py), so the project installs with the CPU torch wheel alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Sequence, Union

import numpy as np
import soundfile as sf
import soxr

from atomic import atomic_write

PathLike = Union[str, Path]
SENTENCE_PAUSE_SECONDS = 0.2  # silence between joined sentences


class AudioError(ValueError):
    """An audio file cannot be used as it is (missing, unreadable, wrong sample rate, ...)."""


@dataclass
class AudioClip:
    """A decoded clip: `wav` (T,) float32 mono in [-1, 1] at `sampling_rate`.

    `source_rate` and `source_channels` describe the file before resampling / mixing down.
    """
    wav: np.ndarray
    sampling_rate: int
    source_rate: int
    source_channels: int

    @property
    def seconds(self) -> float:
        return len(self.wav) / self.sampling_rate


def read_audio(path: PathLike) -> AudioClip:
    """Decode a file as float32 and mix all channels down to mono (mean of the channels)."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except Exception as e:  # libsndfile raises several types for corrupt / unsupported files
        raise AudioError(f"cannot read audio file {path}: {e}") from e
    channels = data.shape[1]
    wav = data.mean(axis=1) if channels > 1 else data[:, 0]
    return AudioClip(np.ascontiguousarray(wav, dtype=np.float32), int(sr), int(sr), int(channels))


def resample_clip(clip: AudioClip, sampling_rate: int, resample: bool = True) -> AudioClip:
    """Bring `clip` to `sampling_rate`; with resample=False a different rate raises AudioError."""
    if clip.sampling_rate == sampling_rate:
        return clip
    if not resample:
        raise AudioError(f"sample rate is {clip.sampling_rate} Hz but the config expects {sampling_rate} Hz "
                         f"(data.resample is false); convert the file or set data.resample to true")
    wav = _soxr_resample(clip.wav, clip.sampling_rate, sampling_rate)
    return AudioClip(wav, sampling_rate, clip.source_rate, clip.source_channels)


def _soxr_resample(wav: np.ndarray, in_rate: float, out_rate: float) -> np.ndarray:
    """(T,) -> (~T * out_rate / in_rate,) float32 in [-1, 1]."""
    # The resampler's ringing can overshoot full scale slightly; keep the [-1, 1] contract.
    return np.clip(soxr.resample(wav, in_rate, out_rate, quality="HQ"), -1.0, 1.0).astype(np.float32)


def load_wav(path: PathLike, sampling_rate: int, resample: bool = True) -> np.ndarray:
    """Read `path` as mono float32 (T,) at `sampling_rate` (resampled, or AudioError if resample=False)."""
    return resample_clip(read_audio(path), sampling_rate, resample).wav


def save_wav(path: PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM WAV atomically: a crash or a full disk never leaves a half-written file at `path`."""
    write_wav_stream(path, [audio], sample_rate)


def write_wav_stream(path: PathLike, chunks: Iterable[np.ndarray], sample_rate: int) -> int:
    """Write audio chunks to a 16-bit PCM WAV as they come (memory stays flat), atomically: the file appears
    at `path` only when the last chunk is written. Returns the number of samples."""
    samples = 0
    with atomic_write(path) as handle, sf.SoundFile(handle, "w", sample_rate, 1, "PCM_16", format="WAV") as wav:
        for chunk in chunks:
            chunk = np.clip(np.asarray(chunk, dtype=np.float32).reshape(-1), -1.0, 1.0)
            wav.write(chunk)
            samples += len(chunk)
    return samples


def to_pcm16(audio: np.ndarray) -> bytes:
    """float audio in [-1, 1] -> raw little-endian 16-bit PCM bytes (what `aplay -f S16_LE` plays)."""
    return (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def join_with_pauses(waves: Sequence[np.ndarray], sample_rate: int,
                     pause_seconds: float = SENTENCE_PAUSE_SECONDS) -> np.ndarray:
    """Concatenate sentence waveforms with `pause_seconds` of silence between them."""
    pause = np.zeros(int(round(pause_seconds * sample_rate)), dtype=np.float32)
    pieces: List[np.ndarray] = []
    for i, wave in enumerate(waves):
        if i:
            pieces.append(pause)
        pieces.append(np.asarray(wave, dtype=np.float32))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
