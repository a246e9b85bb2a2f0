"""Building blocks of the networks in models.py.

Acoustic model: ChannelLayerNorm, ConvNeXtBlock (text encoder), timestep / rotary embeddings,
SelfAttention and AdaLNTransformerBlock (velocity network). Vocoder: HiFi-GAN ResBlock1 / ResBlock2,
transposed-conv padding and weight-norm folding. Every block keeps (B, C, T) shapes and masks padding
where it takes a mask.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from commons import get_padding, init_weights

LRELU_SLOPE = 0.1


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


# ----------------------------------------------------------------------------------------------------------
# Acoustic model blocks


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of a (B, C, T) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm(C) -> Linear(C, ff*C) -> GELU -> Linear(ff*C, C) -> layer scale, residual.

    x (B, C, T), mask (B, 1, T) -> (B, C, T). The input is masked before the depthwise conv so padded
    frames act exactly like the conv's own zero padding at a sequence end.
    """

    def __init__(self, channels: int, kernel_size: int = 7, ff_mult: int = 4, layer_scale: float = 1e-1,
                 dropout: float = 0.0):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ConvNeXtBlock kernel_size must be odd to keep the length, got {kernel_size}")
        self.dwconv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.pw1 = nn.Linear(channels, channels * ff_mult)
        self.pw2 = nn.Linear(channels * ff_mult, channels)
        self.gamma = nn.Parameter(torch.full((channels,), float(layer_scale)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x * mask).transpose(1, 2)  # (B, T, C)
        y = self.pw2(self.dropout(F.gelu(self.pw1(self.norm(y)))))
        return (x + (self.gamma * y).transpose(1, 2)) * mask


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding of t (B,) in [0, 1] -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = scale * t.float().unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def rotary_tables(length: int, head_dim: int, device, base: float = 10000.0):
    """fp32 cos, sin tables (length, head_dim) for rotary position embedding (rotate-half convention)."""
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1) * inv.unsqueeze(0)
    angles = torch.cat([angles, angles], dim=1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, heads, T, head_dim) rotated by position; computed in fp32 (bf16 would blur the angles)."""
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    return (xf * cos + torch.cat([-x2, x1], dim=-1) * sin).to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention with rotary positions and a key-padding mask (scaled_dot_product_attention).

    No dropout on the attention probabilities: on a CPU it forces the math kernel (a B x H x T x T random
    mask), which made a training step of the velocity net 28% slower; the block's residual dropout stays.
    """

    def __init__(self, d_model: int, nhead: int):
        super().__init__()
        self.nhead = nhead
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x (B, T, D), attn_mask (B, 1, 1, T) bool (True = valid key) -> (B, T, D)."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.nhead, d // self.nhead).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class AdaLNTransformerBlock(nn.Module):
    """Pre-norm transformer block with adaptive LayerNorm (shift, scale, gate from the conditioning vector).

    The modulation is zero-initialised, so gates start at 0 and the block starts as the identity (DiT).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(d_model, nhead)
        self.norm2 = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.ff = nn.Sequential(nn.Linear(d_model, dim_feedforward), nn.GELU(approximate="tanh"),
                                nn.Dropout(dropout), nn.Linear(dim_feedforward, d_model))
        self.dropout = nn.Dropout(dropout)
        self.modulation = nn.Linear(d_model, 6 * d_model)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x, cond, attn_mask, cos, sin):
        """x (B, T, D), cond (B, D) -> (B, T, D)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(cond)).unsqueeze(1).chunk(6, dim=2)
        y = self.attn(self.norm1(x) * (1 + scale1) + shift1, attn_mask, cos, sin)
        x = x + gate1 * self.dropout(y)
        y = self.ff(self.norm2(x) * (1 + scale2) + shift2)
        return x + gate2 * self.dropout(y)
