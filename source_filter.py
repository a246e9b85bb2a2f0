"""A source-filter vocoder: excitation at the predicted pitch, shaped by gains a ConvNeXt reads from the mel.

Why: a convolutional upsampler fed a steady mel repeats itself every hop_length samples, so the MB-iSTFT
generator puts its harmonics on multiples of sr / hop (86 Hz) whatever the voice's pitch (the frame-rate
lock, `metrics.frame_rate_lock`); given a pitch-driven source it learns to ignore it under mel and STFT losses
(pretrained/VOCODER.md, stages 5-9). Here the harmonics can only come from the source: the network does not
make samples, it filters two excitations in the STFT domain, as classic source-filter vocoders (and DDSP's
harmonic-plus-noise synth) do, so the output's partials sit at k * F0 by construction.

mel (B, n_mels, T) log-mel
  -> PitchPredictor (pitch.py) -> F0, voicing (B, T)
  -> harmonic excitation: a band-limited pulse train sum_k cos(k phi), k F0 < sr / 2, times the voicing
     noise excitation: white noise
  -> STFT of both (n_fft = win = data.filter_length, hop = data.hop_length, frames centred on t * hop)
  -> S = exp(a_h) e^{i theta} E_h + exp(a_n) E_n, with a_h, theta, a_n (B, n_fft // 2 + 1, T) from a ConvNeXt
     on the mel, log F0 and voicing (the mel's frames are centred hop / 2 later: the gains are averaged onto
     the STFT frames)
  -> iSTFT -> audio (B, 1, T * hop)
In training the noise is fresh; at inference it is excitation.noise_table read at each sample's position in the
clip (deterministic, and a window vocoded alone reads what the whole clip would: `window`).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from config import HParams
from excitation import noise_window
from modules import ChannelLayerNorm, ConvNeXtBlock
from pitch import F0_REF, PitchPredictor, harmonic_sum, pitch_from_raw, start_cycles
from stft import make_istft, make_stft

INITIAL_LOG_GAIN = -3.0
LOG_GAIN_MAX = 8.0  # exp(8) ~ 3e3: above any gain the excitations need; keeps exp finite


def excitation_phase(f0: torch.Tensor, hop_length: int, sampling_rate: int,
                     cycles0: Optional[torch.Tensor] = None) -> torch.Tensor:
    """f0 (B, T) Hz -> the pulse train's phase in cycles mod 1 (B, T * hop), F0 held within each frame; a chunk
    started at frame j continues the whole clip's phase when given cycles0 = pitch.start_cycles(f0, j, ...)."""
    per_frame = f0.double() * (hop_length / sampling_rate)
    frame_start = torch.cumsum(per_frame, dim=1) - per_frame
    if cycles0 is not None:
        frame_start = frame_start + cycles0.double().unsqueeze(1)
    frame_start = (frame_start - torch.floor(frame_start)).to(f0.dtype).repeat_interleave(hop_length, dim=1)
    within = torch.arange(hop_length, device=f0.device, dtype=f0.dtype).repeat(f0.size(1))
    cycles = frame_start + within * (f0 / sampling_rate).repeat_interleave(hop_length, dim=1)
    return cycles - torch.floor(cycles)


def pulse_train(f0: torch.Tensor, voicing: torch.Tensor, hop_length: int, sampling_rate: int,
                cycles0: Optional[torch.Tensor] = None) -> torch.Tensor:
    """f0, voicing (B, T) -> band-limited pulses (B, T * hop): voicing * sum_{k=1..K} cos(2 pi k phase) / sqrt(K / 2)
    with K = the harmonics below the Nyquist frequency (unit power whatever the pitch; pitch.harmonic_sum)."""
    harmonics = torch.floor(sampling_rate / 2 / f0).clamp(min=1).repeat_interleave(hop_length, dim=1)
    value = harmonic_sum(2 * math.pi * excitation_phase(f0, hop_length, sampling_rate, cycles0), harmonics)
    return voicing.repeat_interleave(hop_length, dim=1) * value / torch.sqrt(harmonics / 2)


class SourceFilterGenerator(nn.Module):
    """The source-filter vocoder (module docstring). forward(mel (B, n_mels, T), g=None) -> (audio (B, 1, T * hop),
    audio again: it has no sub-bands), and the pitch predictor's raw output (B, 2, T) with `return_pitch`;
    `pitch` = (F0 (B, T) Hz, voicing (B, T)) replaces the prediction and `cycles0` (B,) starts the pulses at that
    phase (pitch.start_cycles: a window of a clip); `noise` (B, T * hop) replaces the noise excitation.
    istft_impl "conv": both transforms as convolutions (ONNX exportable, the same output)."""

    def __init__(self, hps: HParams, istft_impl: str = "torch"):
        super().__init__()
        m, d = hps.model, hps.data
        self.hop_length, self.sampling_rate = d.hop_length, d.sampling_rate
        self.n_fft = d.filter_length
        self.n_bins = self.n_fft // 2 + 1
        self.subbands = 1
        self.set_istft_impl(istft_impl)
        channels = m.source_filter_channels
        self.pitch = PitchPredictor(d.n_mel_channels)
        self.embed = nn.Conv1d(d.n_mel_channels + 2, channels, 7, padding=3)
        gin = m.gin_channels if m.speaker_conditioned_vocoder else 0
        self.cond = nn.Conv1d(gin, channels, 1) if gin > 0 else None
        self.norm = ChannelLayerNorm(channels)
        self.blocks = nn.ModuleList(ConvNeXtBlock(channels, 7, 3) for _ in range(m.source_filter_layers))
        self.head = nn.Conv1d(channels, 3 * self.n_bins, 1)
        with torch.no_grad():  # start quiet (speech's RMS is about 0.05), no phase change
            self.head.weight[self.n_bins:2 * self.n_bins].zero_()
            self.head.bias.fill_(INITIAL_LOG_GAIN)
            self.head.bias[self.n_bins:2 * self.n_bins].zero_()

    def forward(self, mel: torch.Tensor, g: Optional[torch.Tensor] = None,
                pitch: Optional[Tuple[torch.Tensor, torch.Tensor]] = None, cycles0: Optional[torch.Tensor] = None,
                return_pitch: bool = False, noise: Optional[torch.Tensor] = None):
        raw = None
        with torch.autocast(device_type=mel.device.type, enabled=False):
            if pitch is None:
                raw = self.pitch(mel.float())
                pitch = pitch_from_raw(raw.detach())
            f0, voicing = (p.float() for p in pitch)
        gains = self.gains(mel, f0, voicing, g)
        audio = self.synthesise(gains, f0, voicing, cycles0, noise).unsqueeze(1)
        return (audio, audio, raw) if return_pitch else (audio, audio)

    def gains(self, mel: torch.Tensor, f0: torch.Tensor, voicing: torch.Tensor,
              g: Optional[torch.Tensor] = None) -> torch.Tensor:
        """-> (B, 3 * n_bins, T): harmonic log-gain, harmonic phase (radians), noise log-gain per mel frame."""
        x = torch.cat([mel, torch.log(f0 / F0_REF).unsqueeze(1), voicing.unsqueeze(1)], dim=1)
        x = self.embed(x)
        if g is not None:
            if self.cond is None:
                raise ValueError("speaker conditioning g was given but the vocoder was built without gin_channels")
            x = x + self.cond(g)
        x = self.norm(x)
        mask = torch.ones_like(x[:, :1])
        for block in self.blocks:
            x = block(x, mask)
        return self.head(x)

    def synthesise(self, gains: torch.Tensor, f0: torch.Tensor, voicing: torch.Tensor,
                   cycles0: Optional[torch.Tensor], noise: Optional[torch.Tensor], offset: int = 0) -> torch.Tensor:
        """Filter the two excitations by `gains` (B, 3 * n_bins, T) -> audio (B, T * hop). fp32 throughout.
        `offset`: the first sample's position in the clip (where the inference noise is read)."""
        with torch.autocast(device_type=gains.device.type, enabled=False):
            gains = gains.float()
            # Mel frame t is centred at t * hop + hop / 2, STFT frame t at t * hop: average neighbours onto it.
            gains = torch.cat([gains[..., :1], gains, gains[..., -1:]], dim=-1)
            gains = 0.5 * (gains[..., :-1] + gains[..., 1:])  # (B, 3 * n_bins, T + 1)
            log_h, phase, log_n = gains.split(self.n_bins, dim=1)
            length = f0.size(1) * self.hop_length
            if noise is None:
                noise = (torch.randn(f0.size(0), length, device=f0.device) if self.training else
                         torch.from_numpy(noise_window(offset, length)).to(f0.device).expand(f0.size(0), -1))
            h_real, h_imag = self.stft(pulse_train(f0, voicing, self.hop_length, self.sampling_rate, cycles0))
            n_real, n_imag = self.stft(noise)
            h_gain, n_gain = torch.exp(log_h.clamp(max=LOG_GAIN_MAX)), torch.exp(log_n.clamp(max=LOG_GAIN_MAX))
            cos, sin = torch.cos(phase), torch.sin(phase)
            real = h_gain * (cos * h_real - sin * h_imag) + n_gain * n_real
            imag = h_gain * (sin * h_real + cos * h_imag) + n_gain * n_imag
            return self.istft.from_parts(real, imag)[:, :length]

    def window(self, mel: torch.Tensor, left: int, right: int, g: Optional[torch.Tensor] = None):
        """Frames [left, right) of the whole clip's mel (B, n_mels, T) vocoded alone (streaming, parallel pieces):
        the pitch is the whole clip's, the pulses continue its phase and the noise is read at the window's place."""
        f0, voicing = self.predict_pitch(mel)
        f0, voicing, cycles0 = f0[:, left:right], voicing[:, left:right], start_cycles(f0, left, self.hop_length,
                                                                                      self.sampling_rate)
        audio = self.synthesise(self.gains(mel[..., left:right], f0, voicing, g), f0, voicing, cycles0, None,
                                left * self.hop_length).unsqueeze(1)
        return audio, audio

    def predict_pitch(self, mel: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """mel (B, n_mels, T) -> (F0 (B, T) Hz, voicing (B, T))."""
        with torch.autocast(device_type=mel.device.type, enabled=False):
            return pitch_from_raw(self.pitch(mel.float()))

    def remove_weight_norm(self) -> None:
        """Nothing to fold (no weight norm); the MB-iSTFT generator's interface."""

    def set_istft_impl(self, impl: str) -> "SourceFilterGenerator":
        """Both transforms as "torch" (torch.stft / istft) or "conv" (ONNX exportable); returns self."""
        device = self.head.bias.device if hasattr(self, "head") else None
        self.stft, self.istft = make_stft(impl, self.n_fft, self.hop_length), make_istft(impl, self.n_fft,
                                                                                          self.hop_length)
        if device is not None:
            self.stft.to(device), self.istft.to(device)
        self.istft_impl = impl
        return self

