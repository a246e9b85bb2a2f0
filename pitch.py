"""Pitch for the source-filter vocoder (source_filter.py) and the prosody features (prosody.py).

PitchPredictor: log-mel (B, n_mels, T) -> log F0 and voicing per frame (`pitch_from_raw`: Hz and [0, 1]),
learned from YIN on the training audio (`yin_targets`, `pitch_loss`), so the vocoder still needs only a mel.
start_cycles: the phase an excitation at that pitch has reached at a frame (a window of a clip continues it).
harmonic_sum: a harmonic tone (all harmonics equal) in closed form, for the vocoder's pulses and prosody's templates.
"""
from __future__ import annotations

from typing import Tuple

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modules import LRELU_SLOPE

F0_MIN, F0_MAX = 50.0, 600.0  # Hz: the search range of YIN and the clamp of the predictor
F0_REF = 100.0  # the predictor outputs log(F0 / F0_REF)
QUIET_DB = -50.0  # frames below this RMS (dB full scale) are unvoiced
PERIODICITY = 0.5  # normalised autocorrelation at the YIN period above which a loud frame is voiced


class PitchPredictor(nn.Module):
    """log-mel (B, n_mels, T) -> (B, 2, T): log(F0 / F0_REF) and the voicing logit (see `pitch_from_raw`)."""

    def __init__(self, n_mels: int, channels: int = 128, layers: int = 4, kernel: int = 5):
        super().__init__()
        sizes = [n_mels] + [channels] * layers
        self.convs = nn.ModuleList(nn.Conv1d(a, b, kernel, padding=kernel // 2) for a, b in zip(sizes, sizes[1:]))
        self.out = nn.Conv1d(channels, 2, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
        return self.out(x)


def pitch_from_raw(raw: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """PitchPredictor output (B, 2, T) -> (F0 (B, T) Hz, voicing (B, T) in [0, 1])."""
    return (F0_REF * torch.exp(raw[:, 0])).clamp(F0_MIN, F0_MAX), torch.sigmoid(raw[:, 1])


def start_cycles(f0: torch.Tensor, start: int, hop_length: int, sampling_rate: int) -> torch.Tensor:
    """f0 (B, T) -> (B,) phase in cycles (mod 1) at the start of frame `start` of the whole clip."""
    cycles = f0[:, :start].double().sum(1) * (hop_length / sampling_rate)
    return (cycles - torch.floor(cycles)).float()


def harmonic_sum(x: torch.Tensor, harmonics: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """sum_{k=1..K} cos(k x) for phases x (radians) and K = harmonics (broadcast with x), by the closed form
    (Dirichlet kernel) sin((K + 1/2) x) / (2 sin(x / 2)) - 1/2; K where |sin(x / 2)| < eps (x ~ 0 mod 2 pi)."""
    half = torch.sin(x / 2)
    near_pulse = half.abs() < eps
    safe = torch.where(near_pulse, torch.ones_like(half), half)
    return torch.where(near_pulse, harmonics.expand_as(half), torch.sin((harmonics + 0.5) * x) / (2 * safe) - 0.5)


def yin_frames(audio: np.ndarray, sampling_rate: int, hop_length: int
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame pitch analysis of audio (B, T * hop) float -> (F0 Hz, voiced bool, RMS dB full scale), each (B, T).

    F0 by YIN (librosa) on frames of 4 * hop centred like the mel frames; a frame is voiced when it is louder
    than QUIET_DB and its normalised autocorrelation at the YIN period exceeds PERIODICITY. About 20 ms per
    second of audio.
    """
    frames, frame_length = audio.shape[1] // hop_length, 4 * hop_length
    f0 = librosa.yin(audio, fmin=F0_MIN, fmax=F0_MAX, sr=sampling_rate, frame_length=frame_length,
                     hop_length=hop_length)[:, :frames]
    padded = np.pad(audio, ((0, 0), (frame_length // 2, frame_length // 2)))
    windows = librosa.util.frame(padded, frame_length=frame_length, hop_length=hop_length)[..., :frames]
    windows = windows * np.hanning(frame_length)[:, None]
    acf = np.fft.irfft(np.abs(np.fft.rfft(windows, n=2 * frame_length, axis=1)) ** 2, axis=1)  # (B, lag, T)
    lag = np.round(sampling_rate / f0).astype(int)[:, None, :]
    periodicity = np.take_along_axis(acf, lag, axis=1)[:, 0] / np.maximum(acf[:, 0], 1e-12)
    rms_db = 10 * np.log10(np.maximum(np.mean(windows ** 2, axis=1) / np.mean(np.hanning(frame_length) ** 2), 1e-12))
    voiced = (rms_db > QUIET_DB) & (periodicity > PERIODICITY)
    return f0, voiced, rms_db


def yin_targets(wav: torch.Tensor, sampling_rate: int, hop_length: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Training targets for PitchPredictor from audio segments: wav (B, 1, T * hop) -> (log(F0 / F0_REF) (B, T),
    voiced (B, T) bool), by `yin_frames`."""
    f0, voiced, _ = yin_frames(wav.squeeze(1).detach().float().cpu().numpy(), sampling_rate, hop_length)
    target = np.log(f0 / F0_REF)
    return torch.from_numpy(target).float().to(wav.device), torch.from_numpy(voiced).to(wav.device)


def pitch_loss(raw: torch.Tensor, wav: torch.Tensor, data_cfg) -> torch.Tensor:
    """PitchPredictor output (B, 2, T) against YIN on the segments' audio wav (B, 1, T * hop): L1 of log F0 on
    voiced frames plus the voicing's binary cross-entropy on all frames."""
    target, voiced = yin_targets(wav, data_cfg.sampling_rate, data_cfg.hop_length)
    raw = raw.float()
    f0_error = ((raw[:, 0] - target).abs() * voiced).sum() / voiced.sum().clamp(min=1)
    return f0_error + F.binary_cross_entropy_with_logits(raw[:, 1], voiced.float())
