"""Delivery measured from audio: pitch (F0 by librosa's pyin), speaking time and loudness, to check prosody
controls (benchmarks/bench_prosody.py) against what was asked.

    p = measure(wav, sample_rate)   # Prosody(f0_median_st, f0_std_st, voiced_share, speech_seconds, loudness_db)
    p.f0_median_st - plain.f0_median_st    # the pitch shift a request produced, in semitones

Pitch is in semitones above 55 Hz over the voiced frames (pyin's voicing decision, 50-500 Hz). Speaking time is
the clip without the silence before and after it (librosa.effects.trim at 40 dB below the peak). Loudness is
the RMS level in dB over the non-silent stretches (librosa.effects.split at 40 dB), so pauses do not count.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F0_MIN, F0_MAX = 50.0, 500.0  # Hz: the range of the voices here (low male to high female)
REFERENCE_HZ = 55.0  # semitone 0
TOP_DB = 40.0  # silence: this far below the clip's peak
HOP = 256


@dataclass(frozen=True)
class Prosody:
    f0_median_st: float  # median F0 of voiced frames, semitones above REFERENCE_HZ (nan: nothing voiced)
    f0_std_st: float  # spread of F0 over voiced frames, semitones (the pitch range)
    voiced_share: float  # voiced frames / frames
    speech_seconds: float  # without leading and trailing silence
    loudness_db: float  # RMS level over the non-silent stretches, dB re full scale


def semitones(f0_hz: np.ndarray) -> np.ndarray:
    return 12.0 * np.log2(f0_hz / REFERENCE_HZ)


def measure(wav: np.ndarray, sample_rate: int) -> Prosody:
    """(T,) float waveform -> Prosody; ValueError for a silent clip."""
    import librosa

    wav = np.asarray(wav, dtype=np.float32)
    if not np.any(wav):
        raise ValueError("the clip is silent: no delivery to measure")
    f0, voiced, _ = librosa.pyin(wav, fmin=F0_MIN, fmax=F0_MAX, sr=sample_rate, frame_length=4 * HOP, hop_length=HOP)
    st = semitones(f0[voiced & np.isfinite(f0)])
    trimmed, _ = librosa.effects.trim(wav, top_db=TOP_DB, frame_length=4 * HOP, hop_length=HOP)
    spans = librosa.effects.split(wav, top_db=TOP_DB, frame_length=4 * HOP, hop_length=HOP)
    sounding = np.concatenate([wav[a:b] for a, b in spans]) if len(spans) else wav
    rms = float(np.sqrt(np.mean(sounding.astype(np.float64) ** 2)))
    return Prosody(f0_median_st=float(np.median(st)) if st.size else float("nan"),
                   f0_std_st=float(np.std(st)) if st.size else float("nan"),
                   voiced_share=float(np.mean(voiced)), speech_seconds=len(trimmed) / sample_rate,
                   loudness_db=20.0 * np.log10(max(rms, 1e-9)))
