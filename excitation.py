"""What the source-filter vocoder (source_filter.py) and the torch-free runtime must compute alike (numpy only).

The vocoder's noise excitation at inference is one fixed table read at each sample's position in the clip, so
the same mel gives the same audio, and a window vocoded alone (streaming, parallel pieces) reads the samples the
whole clip would; its harmonic excitation starts each window at the phase the clip's pitch has reached there.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

NOISE_SAMPLES = 2 ** 17  # 5.9 s at 22050 Hz before the noise repeats
NOISE_SEED = 0


@lru_cache(maxsize=1)
def noise_table() -> np.ndarray:
    """(NOISE_SAMPLES,) float32 standard normal noise, the same on every machine (numpy's PCG64)."""
    table = np.random.default_rng(NOISE_SEED).standard_normal(NOISE_SAMPLES).astype(np.float32)
    table.setflags(write=False)
    return table


def noise_window(start: int, length: int) -> np.ndarray:
    """Samples [start, start + length) of the clip's noise excitation, (length,) float32."""
    return noise_table()[(start + np.arange(length)) % NOISE_SAMPLES]


def start_cycles(f0: np.ndarray, start: int, hop_length: int, sampling_rate: int) -> np.ndarray:
    """f0 (B, T) Hz -> (B,) float32: the pulse train's phase in cycles (mod 1) at the start of frame `start`
    (F0 held within each frame; pitch.start_cycles in torch)."""
    cycles = f0[:, :start].astype(np.float64).sum(1) * (hop_length / sampling_rate)
    return (cycles - np.floor(cycles)).astype(np.float32)
