"""Vocoder losses: mel L1, multi-resolution STFT (full band and sub-bands), LSGAN and feature matching.

Loss modules are created once (windows and the PQMF are buffers) and follow the model's device. All
spectral losses run in fp32, also under autocast.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from config import HParams
from mel_processing import mel_from_config
from pqmf import PQMF
from stft import hann_window

# Multi-resolution STFT settings (fft, hop, win) from the multi-band MelGAN recipe.
FULL_BAND_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))
SUB_BAND_RESOLUTIONS = ((384, 30, 150), (683, 60, 300), (171, 10, 60))


class MelLoss(nn.Module):
    """L1 between log-mels of generated and reference audio, both (B, 1, T) or (B, T) -> scalar.

    Uses the project's single mel definition (mel_processing.mel_from_config) with hps.data.
    """

    def __init__(self, hps: HParams):
        super().__init__()
        self.data_cfg = hps.data

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(mel_from_config(y_hat, self.data_cfg), mel_from_config(y, self.data_cfg))


class EnvelopeLoss(nn.Module):
    """L1 between coarse log-mels (24 bands to 8 kHz, about what a recogniser's front end integrates), so the
    spectral envelope counts apart from where each harmonic sits. (B, 1, T) or (B, T) pairs -> scalar."""

    BANDS, FMAX = 24, 8000.0

    def __init__(self, hps: HParams):
        super().__init__()
        d = hps.data  # the project's mel with fewer, wider bands
        self.coarse_cfg = replace(d, n_mel_channels=self.BANDS, mel_fmax=min(self.FMAX, d.sampling_rate / 2))

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(mel_from_config(y_hat, self.coarse_cfg), mel_from_config(y, self.coarse_cfg))


class STFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1 at one resolution (Hann window, centred frames).
    x, y (B, T) -> (sc, mag) scalars."""

    def __init__(self, fft_size: int, hop_size: int, win_length: int):
        super().__init__()
        self.fft_size, self.hop_size, self.win_length = fft_size, hop_size, win_length
        self.register_buffer("window", hann_window(win_length), persistent=False)

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, fft_size // 2 + 1, frames) magnitude, clamped away from 0 for the log."""
        spec = torch.stft(x.float(), self.fft_size, self.hop_size, self.win_length, window=self.window,
                          center=True, return_complex=True)
        return torch.sqrt(torch.clamp(spec.real ** 2 + spec.imag ** 2, min=1e-7))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(device_type=x.device.type, enabled=False):
            x_mag, y_mag = self.magnitude(x), self.magnitude(y)
            sc = torch.linalg.norm(y_mag - x_mag, dim=(1, 2)) / torch.linalg.norm(y_mag, dim=(1, 2)).clamp(min=1e-7)
            mag = F.l1_loss(torch.log(x_mag), torch.log(y_mag))
        return sc.mean(), mag


class MultiResolutionSTFTLoss(nn.Module):
    """Mean of STFTLoss over resolutions ((fft, hop, win), ...).

    forward(x, y): (B, T), (B, 1, T) or (B, C, T) (channels, e.g. sub-bands, are folded into the batch)
    -> (spectral convergence, log magnitude) scalars.
    """

    def __init__(self, resolutions: Sequence[Tuple[int, int, int]] = FULL_BAND_RESOLUTIONS):
        super().__init__()
        self.losses = nn.ModuleList([STFTLoss(fft, hop, win) for fft, hop, win in resolutions])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if x.shape != y.shape:
            raise ValueError(f"MultiResolutionSTFTLoss needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
        x, y = x.reshape(-1, x.size(-1)), y.reshape(-1, y.size(-1))
        sc_total, mag_total = 0.0, 0.0
        for loss in self.losses:
            sc, mag = loss(x, y)
            sc_total, mag_total = sc_total + sc, mag_total + mag
        return sc_total / len(self.losses), mag_total / len(self.losses)


class VocoderReconstructionLoss(nn.Module):
    """Non-adversarial generator losses of MB-iSTFT training.

    forward(y_hat (B, 1, T), y_hat_sub (B, subbands, T // subbands), y (B, 1, T)) -> dict with
    "mel" (L1 of log-mels), "stft" (full-band sc + mag), "stft_sub" (sub-band sc + mag against the PQMF
    analysis of y; 0 for one band), "envelope" (EnvelopeLoss; 0 when train.c_envelope is 0) and
    "total" = c_mel * mel + c_stft * (stft + stft_sub) + c_envelope * envelope.
    """

    def __init__(self, hps: HParams):
        super().__init__()
        m = hps.model
        self.c_mel, self.c_stft, self.c_envelope = hps.train.c_mel, hps.train.c_stft, hps.train.c_envelope
        self.envelope = EnvelopeLoss(hps) if self.c_envelope > 0 else None
        self.mel = MelLoss(hps)
        self.full_band = MultiResolutionSTFTLoss(FULL_BAND_RESOLUTIONS)
        sub_bands = m.subbands > 1 and m.vocoder == "mb_istft"  # the source-filter vocoder has no sub-bands
        self.sub_band = MultiResolutionSTFTLoss(SUB_BAND_RESOLUTIONS) if sub_bands else None
        self.pqmf = PQMF(m.subbands, m.pqmf_taps, m.pqmf_cutoff, m.pqmf_beta) if sub_bands else None

    def forward(self, y_hat: torch.Tensor, y_hat_sub: torch.Tensor, y: torch.Tensor) -> Dict[str, torch.Tensor]:
        loss_mel = self.mel(y_hat, y)
        sc, mag = self.full_band(y_hat, y)
        loss_stft = sc + mag
        if self.sub_band is not None:
            with torch.autocast(device_type=y.device.type, enabled=False):
                y_sub = self.pqmf.analysis(y.float())[..., :y_hat_sub.size(-1)]
            sc_sub, mag_sub = self.sub_band(y_hat_sub, y_sub)
            loss_stft_sub = sc_sub + mag_sub
        else:
            loss_stft_sub = torch.zeros_like(loss_stft)
        loss_envelope = self.envelope(y_hat, y) if self.envelope is not None else torch.zeros_like(loss_stft)
        total = self.c_mel * loss_mel + self.c_stft * (loss_stft + loss_stft_sub) + self.c_envelope * loss_envelope
        return {"mel": loss_mel, "stft": loss_stft, "stft_sub": loss_stft_sub, "envelope": loss_envelope,
                "total": total}


def feature_loss(fmap_r: List[List[torch.Tensor]], fmap_g: List[List[torch.Tensor]]) -> torch.Tensor:
    """Feature matching: sum over discriminators and layers of L1(real features (detached), fake features)."""
    loss = 0.0
    for dr, dg in zip(fmap_r, fmap_g):
        for r, g in zip(dr, dg):
            loss = loss + torch.mean(torch.abs(r.detach().float() - g.float()))
    return loss


def discriminator_loss(real_outs: List[torch.Tensor], fake_outs: List[torch.Tensor]
                       ) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
    """LSGAN: sum over discriminators of mean((1 - D(real))^2) + mean(D(fake)^2).

    -> (loss, per-discriminator real losses, per-discriminator fake losses; detached, for logging).
    """
    loss, real_losses, fake_losses = 0.0, [], []
    for dr, dg in zip(real_outs, fake_outs):
        r_loss = torch.mean((1 - dr.float()) ** 2)
        g_loss = torch.mean(dg.float() ** 2)
        loss = loss + r_loss + g_loss
        real_losses.append(r_loss.detach())  # no .item(): avoids a device sync per step
        fake_losses.append(g_loss.detach())
    return loss, real_losses, fake_losses


def generator_loss(fake_outs: List[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """LSGAN generator term: sum over discriminators of mean((1 - D(fake))^2) -> (loss, per-discriminator)."""
    loss, losses = 0.0, []
    for dg in fake_outs:
        term = torch.mean((1 - dg.float()) ** 2)
        losses.append(term)
        loss = loss + term
    return loss, losses
