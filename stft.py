"""STFT and inverse STFT for the vocoders.

Two interchangeable implementations of each with the same framing:

* `TorchISTFT`: `torch.istft` (fast, not exportable to ONNX).
* `ConvTransposeISTFT`: a precomputed inverse real-DFT basis applied with `conv_transpose1d`
  (overlap-add), exportable to ONNX and runnable in onnxruntime.
* `TorchSTFT` / `ConvSTFT` (`make_stft`): the forward transform, as `torch.stft` (centred, reflect padding)
  or as a `conv1d` with the windowed real-DFT basis (exportable); both return (real, imaginary) parts.

Framing (both): centred frames (`center=True` in `torch.stft` terms), synthesis hann window, and the
output has exactly `frames * hop` samples. Keeping that last hop (which plain `torch.istft` without
`length` drops) is what makes the generator produce exactly `T_mel * hop_length` samples; it requires
`hop <= n_fft // 2` so the samples are still covered by the last frame.

Both compute in fp32 whatever the input dtype, with autocast disabled inside.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import windows
from torch import nn


def hann_window(win_length: int) -> torch.Tensor:
    """Periodic hann window (the one `torch.stft` conventionally uses), float32 (win_length,)."""
    return torch.from_numpy(windows.hann(win_length, sym=False).astype(np.float32))


def _check_framing(n_fft: int, hop_length: int, win_length: int) -> None:
    if not 0 < hop_length <= n_fft // 2:
        raise ValueError(f"iSTFT hop_length ({hop_length}) must be in [1, n_fft // 2] (n_fft={n_fft}) so the "
                         f"last hop of samples is covered by a frame; lower gen_istft_hop_size or raise gen_istft_n_fft")
    if not 0 < win_length <= n_fft:
        raise ValueError(f"iSTFT win_length ({win_length}) must be in [1, n_fft] (n_fft={n_fft})")


def _padded_window(n_fft: int, win_length: int) -> torch.Tensor:
    """Window of length win_length centred in n_fft samples, as torch.stft pads it. (n_fft,)"""
    window = hann_window(win_length)
    left = (n_fft - win_length) // 2
    return F.pad(window, (left, n_fft - win_length - left))


class TorchISTFT(nn.Module):
    """`torch.istft` with exact-length output. Not ONNX exportable (use ConvTransposeISTFT there)."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int | None = None):
        super().__init__()
        win_length = win_length or n_fft
        _check_framing(n_fft, hop_length, win_length)
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", hann_window(win_length), persistent=False)

    def forward(self, magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """magnitude, phase (B, n_fft//2+1, F) -> waveform (B, F * hop_length), fp32."""
        with torch.autocast(device_type=magnitude.device.type, enabled=False):
            return self.from_spectrum(torch.polar(magnitude.float(), phase.float()))

    def from_parts(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        """real, imaginary parts (B, n_fft//2+1, F) -> waveform (B, F * hop_length), fp32."""
        with torch.autocast(device_type=real.device.type, enabled=False):
            return self.from_spectrum(torch.complex(real.float(), imag.float()))

    def from_spectrum(self, spec: torch.Tensor) -> torch.Tensor:
        return torch.istft(spec, self.n_fft, self.hop_length, self.win_length, window=self.window,
                           center=True, length=spec.size(-1) * self.hop_length)


class ConvTransposeISTFT(nn.Module):
    """Inverse STFT as a transposed convolution with a fixed inverse-DFT basis (ONNX exportable).

    Each frame is x[n] = w[n] / N * sum_k c_k (Re_k cos(2 pi k n / N) - Im_k sin(2 pi k n / N)) with
    c_0 = c_{N/2} = 1 and c_k = 2 otherwise (the real inverse DFT, window folded into the basis);
    `conv_transpose1d` with stride hop overlap-adds the frames and the result is divided by the
    overlap-added squared window, which is what `torch.istft` computes.
    """

    def __init__(self, n_fft: int, hop_length: int, win_length: int | None = None):
        super().__init__()
        win_length = win_length or n_fft
        _check_framing(n_fft, hop_length, win_length)
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        window = _padded_window(n_fft, win_length).double()
        n_bins = n_fft // 2 + 1
        k = torch.arange(n_bins, dtype=torch.float64).unsqueeze(1)
        n = torch.arange(n_fft, dtype=torch.float64).unsqueeze(0)
        angle = 2 * math.pi * k * n / n_fft
        scale = torch.full((n_bins, 1), 2.0, dtype=torch.float64)
        scale[0] = 1.0
        if n_fft % 2 == 0:
            scale[-1] = 1.0
        cos_basis = scale * torch.cos(angle) / n_fft * window
        sin_basis = -scale * torch.sin(angle) / n_fft * window
        basis = torch.cat([cos_basis, sin_basis], dim=0).unsqueeze(1)  # (2 * n_bins, 1, n_fft)
        self.register_buffer("basis", basis.float(), persistent=False)
        self.register_buffer("window_sq", (window ** 2).float().view(1, 1, n_fft), persistent=False)

    def forward(self, magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """magnitude, phase (B, n_fft//2+1, F) -> waveform (B, F * hop_length), fp32."""
        with torch.autocast(device_type=magnitude.device.type, enabled=False):
            magnitude, phase = magnitude.float(), phase.float()
            return self.from_parts(magnitude * torch.cos(phase), magnitude * torch.sin(phase))

    def from_parts(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        """real, imaginary parts (B, n_fft//2+1, F) -> waveform (B, F * hop_length), fp32."""
        with torch.autocast(device_type=real.device.type, enabled=False):
            frames = real.size(-1)
            spec = torch.cat([real.float(), imag.float()], dim=1)
            signal = F.conv_transpose1d(spec, self.basis, stride=self.hop_length)  # (B, 1, n_fft + hop*(F-1))
            # Window envelope for this number of frames; ones_like keeps F dynamic in an ONNX graph.
            ones = torch.ones_like(real[:1, :1, :])
            envelope = F.conv_transpose1d(ones, self.window_sq, stride=self.hop_length)
            start = self.n_fft // 2
            end = start + frames * self.hop_length
            signal = signal[:, :, start:end] / envelope[:, :, start:end].clamp(min=1e-11)
            return signal.squeeze(1)


class TorchSTFT(nn.Module):
    """`torch.stft` (centred frames, reflect padding, periodic hann window of n_fft): waveform (B, L) ->
    (real, imaginary) parts, each (B, n_fft // 2 + 1, L // hop_length + 1), fp32."""

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", hann_window(n_fft), persistent=False)

    def forward(self, x: torch.Tensor):
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.stft(x.float(), self.n_fft, self.hop_length, window=self.window, center=True,
                              return_complex=True)
            return spec.real, spec.imag


class ConvSTFT(TorchSTFT):
    """TorchSTFT as a `conv1d` with the windowed real-DFT basis (ONNX exportable; the same result to float
    rounding)."""

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__(n_fft, hop_length)
        n = torch.arange(n_fft, dtype=torch.float64)
        angle = 2 * math.pi * torch.arange(n_fft // 2 + 1, dtype=torch.float64).unsqueeze(1) * n / n_fft
        window = self.window.double()
        basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window]).unsqueeze(1)
        self.register_buffer("basis", basis.float(), persistent=False)  # (2 * n_bins, 1, n_fft)

    def forward(self, x: torch.Tensor):
        with torch.autocast(device_type=x.device.type, enabled=False):
            padded = F.pad(x.float().unsqueeze(1), (self.n_fft // 2, self.n_fft // 2), mode="reflect")
            return F.conv1d(padded, self.basis, stride=self.hop_length).chunk(2, dim=1)


def make_stft(impl: str, n_fft: int, hop_length: int) -> nn.Module:
    """impl "torch" (torch.stft) or "conv" (ConvSTFT, ONNX exportable)."""
    if impl not in ("torch", "conv"):
        raise ValueError(f"stft impl must be 'torch' or 'conv', got {impl!r}")
    return TorchSTFT(n_fft, hop_length) if impl == "torch" else ConvSTFT(n_fft, hop_length)


def make_istft(impl: str, n_fft: int, hop_length: int, win_length: int | None = None) -> nn.Module:
    """impl "torch" (torch.istft) or "conv" (ConvTransposeISTFT, ONNX exportable)."""
    if impl == "torch":
        return TorchISTFT(n_fft, hop_length, win_length)
    if impl == "conv":
        return ConvTransposeISTFT(n_fft, hop_length, win_length)
    raise ValueError(f"istft_impl must be 'torch' or 'conv', got {impl!r}")
