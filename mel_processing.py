"""The one mel-spectrogram definition shared by the acoustic model, the vocoder and evaluation.

Definition (VITS/HiFi-GAN convention):
  * reflect-pad the waveform by (n_fft - hop) / 2 on each side, then STFT with center=False and a
    periodic Hann window of `win_size` (zero-padded to n_fft by torch.stft), so a clip of T_wav
    samples gives exactly T_wav // hop frames;
  * magnitude sqrt(re^2 + im^2 + 1e-9) (the epsilon keeps the gradient finite at silent bins, which
    matters when this runs on generated audio inside a loss);
  * Slaney-normalised librosa mel filter bank; natural log of the mel energies clamped at 1e-5.

Filter banks and windows are built once per (params, device, dtype) by small LRU function caches,
never stored in mutable module globals. The cached tensors are shared: treat them as read-only.
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import librosa
import torch
import torch.nn.functional as F

LOG_CLAMP = 1e-5  # floor of the mel energy before the log: log(1e-5) ~ -11.5 is "silence"
LOG_MEL_FLOOR = math.log(LOG_CLAMP)  # log-mel of silence; pads mel batches and generated mels
MAG_EPS = 1e-9


@functools.lru_cache(maxsize=32)
def hann_window(win_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Periodic Hann window (win_size,) on `device` (cached, read-only)."""
    return torch.hann_window(win_size, device=device, dtype=dtype)


@functools.lru_cache(maxsize=32)
def mel_basis(sampling_rate: int, n_fft: int, num_mels: int, fmin: float, fmax: Optional[float],
              device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Slaney mel filter bank (num_mels, n_fft // 2 + 1) on `device` (cached, read-only).

    fmax None means the Nyquist frequency.
    """
    basis = librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=num_mels, fmin=fmin, fmax=fmax,
                                htk=False, norm="slaney")
    return torch.from_numpy(basis).to(device=device, dtype=dtype)


def _as_batch(y: torch.Tensor) -> torch.Tensor:
    """Accept (T,), (B, T) or (B, 1, T) waveforms; return (B, T) in float32/float64.

    Half precision is promoted to float32: the STFT is not accurate (nor supported on CPU) in
    fp16/bf16, so the features are always computed in full precision, also under autocast.
    """
    if y.dim() == 3:
        if y.size(1) != 1:
            raise ValueError(f"expected a mono waveform (B, 1, T), got shape {tuple(y.shape)}")
        y = y.squeeze(1)
    elif y.dim() == 1:
        y = y.unsqueeze(0)
    elif y.dim() != 2:
        raise ValueError(f"expected a waveform of shape (T,), (B, T) or (B, 1, T), got {tuple(y.shape)}")
    if y.dtype not in (torch.float32, torch.float64):
        y = y.float()
    return y


def spectrogram(y: torch.Tensor, n_fft: int, hop_size: int, win_size: int) -> torch.Tensor:
    """Linear magnitude spectrogram.

    y: (B, T_wav) (also (T_wav,) or (B, 1, T_wav)) float waveform in [-1, 1]
    -> (B, n_fft // 2 + 1, T_wav // hop_size) float32 (float64 if y is float64).
    """
    y = _as_batch(y)
    if win_size > n_fft:
        raise ValueError(f"win_size ({win_size}) must not exceed n_fft ({n_fft})")
    pad_total = n_fft - hop_size
    if pad_total < 0:
        raise ValueError(f"hop_size ({hop_size}) must not exceed n_fft ({n_fft})")
    pad_left = pad_total // 2
    pad_right = pad_total - pad_left
    if y.size(-1) <= max(pad_left, pad_right):
        raise ValueError(f"waveform of {y.size(-1)} samples is too short for reflect padding of "
                         f"{max(pad_left, pad_right)} samples (n_fft {n_fft}, hop {hop_size}); "
                         f"it needs at least {max(pad_left, pad_right) + 1} samples")
    with torch.autocast(device_type=y.device.type, enabled=False):
        y = F.pad(y.unsqueeze(1), (pad_left, pad_right), mode="reflect").squeeze(1)
        spec = torch.stft(y, n_fft, hop_length=hop_size, win_length=win_size,
                          window=hann_window(win_size, y.device, y.dtype),
                          center=False, normalized=False, onesided=True, return_complex=True)
        return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + MAG_EPS)


def spec_to_mel(spec: torch.Tensor, n_fft: int, num_mels: int, sampling_rate: int, fmin: float,
                fmax: Optional[float]) -> torch.Tensor:
    """Linear magnitude (B, n_fft // 2 + 1, T) -> log-mel (B, num_mels, T)."""
    with torch.autocast(device_type=spec.device.type, enabled=False):
        basis = mel_basis(int(sampling_rate), int(n_fft), int(num_mels), float(fmin),
                          None if fmax is None else float(fmax), spec.device, spec.dtype)
        mel = torch.matmul(basis, spec)
        return torch.log(torch.clamp(mel, min=LOG_CLAMP))


def mel_spectrogram(y: torch.Tensor, n_fft: int, num_mels: int, sampling_rate: int, hop_size: int,
                    win_size: int, fmin: float, fmax: Optional[float]) -> torch.Tensor:
    """Log-mel spectrogram.

    y: (B, T_wav) (also (T_wav,) or (B, 1, T_wav)) float waveform in [-1, 1]
    -> (B, num_mels, T_wav // hop_size) natural-log mel energies (not normalised).
    """
    spec = spectrogram(y, n_fft, hop_size, win_size)
    return spec_to_mel(spec, n_fft, num_mels, sampling_rate, fmin, fmax)


def mel_from_config(y: torch.Tensor, data_cfg) -> torch.Tensor:
    """mel_spectrogram with the fields of a `config.DataConfig`: (B, T_wav) -> (B, n_mels, T_wav // hop)."""
    return mel_spectrogram(y, data_cfg.filter_length, data_cfg.n_mel_channels, data_cfg.sampling_rate,
                           data_cfg.hop_length, data_cfg.win_length, data_cfg.mel_fmin, data_cfg.mel_fmax)
