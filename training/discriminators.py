"""HiFi-GAN discriminators: multi-period (periods 2, 3, 5, 7, 11) and multi-scale (3 scales).

model.discriminator_channels caps every layer's width (HiFi-GAN: 1024) to make the adversarial phase
affordable on a CPU.

`Discriminator(hps)(y, y_hat)` -> (real_outs, fake_outs, real_fmaps, fake_fmaps): one score tensor
(B, N) per sub-discriminator and, per sub-discriminator, the list of its intermediate feature maps
(used by losses.feature_loss).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from commons import get_padding
from config import HParams

LRELU_SLOPE = 0.1
PERIODS = (2, 3, 5, 7, 11)

Scores = List[torch.Tensor]
FeatureMaps = List[List[torch.Tensor]]


def _norm(use_spectral_norm: bool):
    return spectral_norm if use_spectral_norm else weight_norm


def _conv_stack(convs: nn.ModuleList, conv_post: nn.Module, x: torch.Tensor
                ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """Leaky-ReLU conv stack then the post conv -> (flattened score (B, N), every layer's output)."""
    fmap = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmap.append(x)
    x = conv_post(x)
    fmap.append(x)
    return torch.flatten(x, 1, -1), fmap


class DiscriminatorP(nn.Module):
    """Period discriminator: folds (B, 1, T) into (B, 1, T / p, p) and applies 2-D convs along time.

    -> (score (B, N), feature maps [(B, C, T_i, p), ...]).
    """

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3, use_spectral_norm: bool = False,
                 max_channels: int = 1024):
        super().__init__()
        self.period = period
        norm = _norm(use_spectral_norm)
        pad = (get_padding(kernel_size, 1), 0)
        channels = [1] + [min(c, max_channels) for c in (32, 128, 512, 1024)]
        self.convs = nn.ModuleList([
            norm(nn.Conv2d(c_in, c_out, (kernel_size, 1), (stride, 1), padding=pad))
            for c_in, c_out in zip(channels[:-1], channels[1:])])
        top = channels[-1]
        self.convs.append(norm(nn.Conv2d(top, top, (kernel_size, 1), 1, padding=pad)))
        self.conv_post = norm(nn.Conv2d(top, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        b, c, t = x.shape
        if t % self.period:  # reflect-pad to a whole number of periods
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        return _conv_stack(self.convs, self.conv_post, x.view(b, c, -1, self.period))


class DiscriminatorS(nn.Module):
    """Scale discriminator: strided grouped 1-D convs on (B, 1, T) -> (score (B, N), feature maps)."""

    def __init__(self, use_spectral_norm: bool = False, max_channels: int = 1024):
        super().__init__()
        norm = _norm(use_spectral_norm)
        c = [min(n, max_channels) for n in (16, 64, 256, 1024)]
        # Grouped convs keep HiFi-GAN's 4 / 16 / 64 / 256 input channels per group where the width allows.
        self.convs = nn.ModuleList([
            norm(nn.Conv1d(1, c[0], 15, 1, padding=7)),
            norm(nn.Conv1d(c[0], c[1], 41, 4, groups=4, padding=20)),
            norm(nn.Conv1d(c[1], c[2], 41, 4, groups=16, padding=20)),
            norm(nn.Conv1d(c[2], c[3], 41, 4, groups=max(1, c[2] // 4), padding=20)),
            norm(nn.Conv1d(c[3], c[3], 41, 4, groups=max(1, c[3] // 4), padding=20)),
            norm(nn.Conv1d(c[3], c[3], 5, 1, padding=2)),
        ])
        self.conv_post = norm(nn.Conv1d(c[3], 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        return _conv_stack(self.convs, self.conv_post, x)


def _run_pair(discriminators: Sequence[nn.Module], inputs_r: Sequence[torch.Tensor], inputs_g: Sequence[torch.Tensor]):
    real_outs, fake_outs, real_fmaps, fake_fmaps = [], [], [], []
    for d, y, y_hat in zip(discriminators, inputs_r, inputs_g):
        # One pass over real and fake together: half the kernel launches of two passes.
        score, fmap = d(torch.cat([y, y_hat], dim=0))
        n = y.size(0)
        real_outs.append(score[:n])
        fake_outs.append(score[n:])
        real_fmaps.append([f[:n] for f in fmap])
        fake_fmaps.append([f[n:] for f in fmap])
    return real_outs, fake_outs, real_fmaps, fake_fmaps


class MultiPeriodDiscriminator(nn.Module):
    """One DiscriminatorP per period. forward(y, y_hat (B, 1, T)) -> (real_outs, fake_outs, real_fmaps, fake_fmaps)."""

    def __init__(self, periods: Sequence[int] = PERIODS, use_spectral_norm: bool = False, max_channels: int = 1024):
        super().__init__()
        self.discriminators = nn.ModuleList([
            DiscriminatorP(p, use_spectral_norm=use_spectral_norm, max_channels=max_channels) for p in periods])

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor) -> Tuple[Scores, Scores, FeatureMaps, FeatureMaps]:
        n = len(self.discriminators)
        return _run_pair(self.discriminators, [y] * n, [y_hat] * n)


class MultiScaleDiscriminator(nn.Module):
    """DiscriminatorS on the raw waveform (spectral norm, as in HiFi-GAN) and on 2x and 4x average-pooled copies."""

    def __init__(self, scales: int = 3, max_channels: int = 1024):
        super().__init__()
        self.discriminators = nn.ModuleList(
            [DiscriminatorS(use_spectral_norm=(i == 0), max_channels=max_channels) for i in range(scales)])
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor) -> Tuple[Scores, Scores, FeatureMaps, FeatureMaps]:
        inputs_r, inputs_g = [], []
        for i in range(len(self.discriminators)):
            if i > 0:
                y, y_hat = self.pool(y), self.pool(y_hat)
            inputs_r.append(y)
            inputs_g.append(y_hat)
        return _run_pair(self.discriminators, inputs_r, inputs_g)


class Discriminator(nn.Module):
    """Multi-period + multi-scale discriminator.

    forward(y, y_hat (B, 1, T)) -> (real_outs, fake_outs, real_fmaps, fake_fmaps), lists over the
    len(PERIODS) period discriminators followed by the 3 scale discriminators.
    """

    def __init__(self, hps: HParams):
        super().__init__()
        m = hps.model
        self.mpd = MultiPeriodDiscriminator(PERIODS, m.use_spectral_norm, m.discriminator_channels)
        self.msd = MultiScaleDiscriminator(3, m.discriminator_channels)

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor) -> Tuple[Scores, Scores, FeatureMaps, FeatureMaps]:
        if y.shape != y_hat.shape or y.dim() != 3 or y.size(1) != 1:
            raise ValueError(f"Discriminator needs y and y_hat of the same shape (B, 1, T), got "
                             f"{tuple(y.shape)} and {tuple(y_hat.shape)}")
        p = self.mpd(y, y_hat)
        s = self.msd(y, y_hat)
        return tuple(a + b for a, b in zip(p, s))
