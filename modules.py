"""MB-iSTFT vocoder: HiFi-GAN residual blocks and the multi-band iSTFT generator.

mel (B, n_mels, T) -> conv_pre -> [transposed-conv upsampling + ResBlocks] x len(upsample_rates)
-> conv_post -> per band: magnitude exp(.), phase pi * sin(.) on n_fft // 2 + 1 bins
-> iSTFT per band (B, subbands, T * hop / subbands) -> PQMF synthesis -> waveform (B, 1, T * hop).

The rule prod(upsample_rates) * gen_istft_hop_size * subbands == hop_length makes the frame rates meet.
The iSTFT window / inverse-DFT basis and the PQMF filters are built once as buffers (not per call, not
pinned to CUDA), and the exp / iSTFT / PQMF tail always runs in fp32, also under autocast.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from commons import get_padding, init_weights
from config import HParams, check_generator_config
from pqmf import PQMF
from stft import make_istft

LRELU_SLOPE = 0.1
LOG_MAGNITUDE_MAX = 10.0  # exp(10) ~ 2.2e4 is far above any real STFT magnitude; avoids inf in exp


def remove_weight_norm_all(module: nn.Module) -> None:
    """Fold every weight-norm parametrization under `module` into a plain weight (for inference)."""
    for sub in module.modules():
        if parametrize.is_parametrized(sub, "weight"):
            parametrize.remove_parametrizations(sub, "weight", leave_parametrized=True)


class ResBlock1(nn.Module):
    """HiFi-GAN ResBlock1: per dilation, LReLU -> dilated conv -> LReLU -> conv, residual. (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3, 5)):
        super().__init__()
        self.convs1 = nn.ModuleList([
            weight_norm(nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=get_padding(kernel_size, d)))
            for d in dilation])
        self.convs2 = nn.ModuleList([
            weight_norm(nn.Conv1d(channels, channels, kernel_size, padding=get_padding(kernel_size, 1)))
            for _ in dilation])
        self.convs1.apply(init_weights)
        self.convs2.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    """HiFi-GAN ResBlock2 (lighter): per dilation, LReLU -> dilated conv, residual. (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3)):
        super().__init__()
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=get_padding(kernel_size, d)))
            for d in dilation])
        self.convs.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, LRELU_SLOPE))
        return x


def upsample_padding(kernel_size: int, rate: int) -> Tuple[int, int]:
    """(padding, output_padding) so ConvTranspose1d(k, stride=rate) maps T frames to exactly T * rate.

    Valid (kernel, rate) pairs are enforced by config.check_generator_config.
    """
    padding = (kernel_size - rate + 1) // 2
    output_padding = 2 * padding - (kernel_size - rate)
    return padding, output_padding


class MultiBandISTFTGenerator(nn.Module):
    """MB-iSTFT generator.

    forward(mel (B, n_mels, T) de-normalized log-mel, g (B, gin_channels, 1) or None)
      -> (audio (B, 1, T * hop_length), subband_audio (B, subbands, T * hop_length // subbands)).
    istft_impl "torch" uses torch.istft; "conv" the ONNX-exportable ConvTransposeISTFT (same result).
    """

    def __init__(self, hps: HParams, istft_impl: str = "torch"):
        super().__init__()
        check_generator_config(hps)  # also here: an HParams built in code may never have been validated
        m = hps.model
        self.subbands = m.subbands
        self.n_fft = m.gen_istft_n_fft
        self.istft_hop = m.gen_istft_hop_size
        self.hop_length = hps.data.hop_length
        self.n_bins = self.n_fft // 2 + 1
        channels = m.upsample_initial_channel

        self.conv_pre = weight_norm(nn.Conv1d(hps.data.n_mel_channels, channels, 7, padding=3))
        self.cond = nn.Conv1d(m.gin_channels, channels, 1) if m.gin_channels > 0 else None
        resblock_cls = ResBlock1 if m.resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(m.upsample_rates, m.upsample_kernel_sizes)):
            padding, output_padding = upsample_padding(kernel, rate)
            c_in, c_out = channels // (2 ** i), channels // (2 ** (i + 1))
            self.ups.append(weight_norm(nn.ConvTranspose1d(c_in, c_out, kernel, rate, padding=padding,
                                                           output_padding=output_padding)))
            for k, dilations in zip(m.resblock_kernel_sizes, m.resblock_dilation_sizes):
                self.resblocks.append(resblock_cls(c_out, k, dilations))
        self.num_kernels = len(m.resblock_kernel_sizes)
        self.conv_post = weight_norm(nn.Conv1d(c_out, self.subbands * self.n_bins * 2, 7, padding=3))
        self.ups.apply(init_weights)
        self.conv_post.apply(init_weights)

        self.istft_impl = istft_impl
        self.istft = make_istft(istft_impl, self.n_fft, self.istft_hop)
        # One band is plain iSTFT-VITS: no filter bank.
        self.pqmf = PQMF(m.subbands, m.pqmf_taps, m.pqmf_cutoff, m.pqmf_beta) if m.subbands > 1 else None

    def set_istft_impl(self, impl: str) -> "MultiBandISTFTGenerator":
        """Switch between "torch" (torch.istft) and "conv" (ONNX exportable); returns self."""
        device = self.conv_post.bias.device
        self.istft = make_istft(impl, self.n_fft, self.istft_hop).to(device)
        self.istft_impl = impl
        return self

    def forward(self, mel: torch.Tensor, g: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.conv_pre(mel)
        if g is not None:
            if self.cond is None:
                raise ValueError("speaker conditioning g was given but the generator was built with gin_channels 0")
            x = x + self.cond(g)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))
        return self.spec_to_audio(x)

    def spec_to_audio(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """conv_post output (B, subbands * 2 * n_bins, F) -> (audio (B, 1, F * istft_hop * subbands), sub-bands)."""
        batch, _, frames = x.shape
        # exp, iSTFT and PQMF in fp32: bf16/fp16 exp and overlap-add lose too much precision.
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float().reshape(batch * self.subbands, 2 * self.n_bins, frames)
            magnitude = torch.exp(x[:, :self.n_bins].clamp(max=LOG_MAGNITUDE_MAX))
            phase = math.pi * torch.sin(x[:, self.n_bins:])
            subband_audio = self.istft(magnitude, phase).reshape(batch, self.subbands, frames * self.istft_hop)
            audio = subband_audio if self.pqmf is None else self.pqmf.synthesis(subband_audio)
        return audio, subband_audio

    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain weights for inference / export."""
        remove_weight_norm_all(self)
