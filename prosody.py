"""Prosody the acoustic model is conditioned on, and the edits a user asks of it.

Measured from every training clip (`frame_prosody`, YIN as in pitch.py): per mel frame the pitch in semitones
above F0_REF, whether the frame is voiced, and its energy in dB full scale. The model averages them over each
token's frames (`token_prosody`: FastPitch's phone-level pitch, plus voicing and energy), sees them beside the
text (teacher forcing) and learns to predict them from text and speaker. At inference the prediction is
edited (`apply_edit`) before the velocity network sees it, so the model itself, not a post-filter, speaks
higher, with a wider range or with more energy:

    frames = frame_prosody(wav, 22050, 256)                    # (3, T_mel) numpy: semitones, voiced, dB
    tokens = token_prosody(torch.from_numpy(frames)[None], attn)   # (1, 3, T_text), normalised
    edited = apply_edit(tokens, x_mask, torch.tensor([[2.0, 1.5, -3.0]]))  # +2 st, range x1.5, -3 dB

Normalised token features (what the network sees): (semitones - PITCH_CENTER) / PITCH_UNIT, the voiced
fraction of the token's frames, and (dB - ENERGY_CENTER) / ENERGY_UNIT. A token without voiced frames gets
the utterance's mean voiced pitch, so it carries no contour of its own and range edits leave it in place.
Each token's pitch also reaches the prior mean as a harmonic template (`harmonic_templates`, `template_of`:
where a tone at that pitch puts its harmonics in the mel), and training varies loudness (`loudness_gain`).
"""
from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np
import torch

from config import MEL_KEYS
from mel_processing import LOG_MEL_FLOOR, mel_from_config
from pitch import F0_REF, harmonic_sum, yin_frames

N_FEATURES = 3  # pitch, voiced fraction, energy
TEMPLATE_SEMITONES = (-12.0, 30.0, 0.25)  # harmonic templates from 50 to 575 Hz, a quarter semitone apart
RIPPLE_CHANNELS = 7  # mel channels of the local mean removed as the spectral envelope
PITCH_CENTER, PITCH_UNIT = 6.0, 6.0  # semitones above F0_REF (100 Hz): 6 st is 142 Hz
ENERGY_CENTER, ENERGY_UNIT = -30.0, 10.0  # dB full scale


def frame_prosody(wav: np.ndarray, sampling_rate: int, hop_length: int) -> np.ndarray:
    """wav (T_mel * hop,) float -> (3, T_mel) float32: pitch in semitones above F0_REF (0 where unvoiced),
    voiced (0 or 1), energy in dB full scale."""
    f0, voiced, rms_db = yin_frames(np.asarray(wav, dtype=np.float32)[None], sampling_rate, hop_length)
    semitones = np.where(voiced, 12.0 * np.log2(f0 / F0_REF), 0.0)
    return np.stack([semitones[0], voiced[0].astype(np.float64), rms_db[0]]).astype(np.float32)


def token_prosody(frames: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """Frame prosody (B, 3, T_mel) (frame_prosody's, padded with zeros) and a hard alignment (B, T_text, T_mel)
    -> normalised token features (B, 3, T_text), zero on tokens without frames (padding)."""
    frames, attn = frames.float(), attn.float()
    semitones, voiced, energy = frames[:, 0], frames[:, 1], frames[:, 2]
    n_frames = attn.sum(2)  # (B, T_text)
    n_voiced = torch.bmm(attn, voiced.unsqueeze(2)).squeeze(2)
    pitch_sum = torch.bmm(attn, (semitones * voiced).unsqueeze(2)).squeeze(2)
    utterance = pitch_sum.sum(1, keepdim=True) / n_voiced.sum(1, keepdim=True).clamp(min=1)
    pitch = torch.where(n_voiced > 0, pitch_sum / n_voiced.clamp(min=1), utterance)
    energy = torch.bmm(attn, energy.unsqueeze(2)).squeeze(2) / n_frames.clamp(min=1)
    has_frames = (n_frames > 0).float()
    features = torch.stack([(pitch - PITCH_CENTER) / PITCH_UNIT, n_voiced / n_frames.clamp(min=1),
                            (energy - ENERGY_CENTER) / ENERGY_UNIT], dim=1)
    return features * has_frames.unsqueeze(1)


def apply_edit(tokens: torch.Tensor, mask: torch.Tensor, edit: torch.Tensor) -> torch.Tensor:
    """Normalised token features (B, 3, T_text), mask (B, 1, T_text), edit (B, 3) rows of
    SamplingConfig.prosody_edit (pitch shift in semitones, pitch range factor, energy change in dB)
    -> edited features (B, 3, T_text). The pitch spread is scaled around the voicing-weighted mean pitch of the
    utterance (the plain mean when nothing is voiced), then shifted; voicing is kept; energy is shifted."""
    pitch, voiced, energy = tokens[:, 0:1], tokens[:, 1:2], tokens[:, 2:3]
    shift, spread, gain = (edit[:, i].view(-1, 1, 1).to(tokens.dtype) for i in range(3))
    weight = voiced.clamp(0, 1) * mask  # a predicted voicing may stray outside [0, 1]
    total = weight.sum(2, keepdim=True)
    mean = torch.where(total > 1e-3, (pitch * weight).sum(2, keepdim=True) / total.clamp(min=1e-3),
                       (pitch * mask).sum(2, keepdim=True) / mask.sum(2, keepdim=True).clamp(min=1))
    pitch = mean + spread * (pitch - mean) + shift / PITCH_UNIT
    return torch.cat([pitch, voiced, energy + gain / ENERGY_UNIT], dim=1) * mask


def loudness_gain(mel: torch.Tensor, frames: torch.Tensor, mel_lengths: torch.Tensor, gain_db: torch.Tensor):
    """Training augmentation: clip b made louder or softer by gain_db[b] dB (B,), applied to its log-mel
    (B, n_mels, T) (natural log of magnitude, kept at or above LOG_MEL_FLOOR) and to the energy of its frame
    prosody (B, 3, T) -> (mel, frames); padding untouched. Synthetic corpora speak at one level; this teaches the
    model what the energy feature means. The model applies it after the alignment (FlowMatchingTTS.forward):
    shifted mels moved the monotonic alignment and the durations drifted."""
    valid = (torch.arange(mel.size(2), device=mel.device).unsqueeze(0) < mel_lengths.unsqueeze(1)).unsqueeze(1)
    gain_db = gain_db.to(mel.device, mel.dtype).view(-1, 1, 1)
    shifted = (mel + gain_db * (math.log(10) / 20)).clamp(min=LOG_MEL_FLOOR)
    energy = frames[:, 2:3] + gain_db.to(frames.dtype) * valid
    return torch.where(valid, shifted, mel), torch.cat([frames[:, :2], energy, frames[:, 3:]], dim=1)


def harmonic_templates(data_cfg) -> torch.Tensor:
    """A copy of `_templates` for data_cfg's mel settings (computed once per process: a voice is built twice when
    it loads, once on the "meta" device to check shapes)."""
    return _templates(tuple(getattr(data_cfg, key) for key in MEL_KEYS)).clone()


@functools.lru_cache(maxsize=4)
def _templates(mel_settings: tuple) -> torch.Tensor:
    """(n_pitches, n_mels): the harmonic ripple (`ripple`) of the log-mel of a harmonic tone (equal harmonics up to
    the Nyquist frequency) at each pitch of TEMPLATE_SEMITONES, by this project's mel (mel_processing): where a
    voice's harmonics sit in the mel at that pitch. The acoustic model adds the template of each token's pitch to
    its prior mean (a learned gain per mel channel), so a pitch edit moves the harmonics the flow starts from."""
    data_cfg = SimpleNamespace(**dict(zip(MEL_KEYS, mel_settings)))
    low, high, step = TEMPLATE_SEMITONES
    sr = data_cfg.sampling_rate
    n = 2 * data_cfg.filter_length + 8 * data_cfg.hop_length  # a few frames; the middle one is read
    # cpu and float64 throughout: also when a model is built on the "meta" device
    f0 = F0_REF * 2.0 ** (torch.arange(low, high + step / 2, step, dtype=torch.float64, device="cpu") / 12.0)
    harmonics = torch.floor(sr / 2 / f0).unsqueeze(1)  # K: harmonics below the Nyquist frequency
    x = 2 * math.pi * f0.unsqueeze(1) * torch.arange(n, dtype=torch.float64, device="cpu") / sr
    tones = harmonic_sum(x, harmonics, eps=1e-9) / harmonics
    mel = mel_from_config(tones.float(), data_cfg)
    return ripple(mel[:, :, mel.size(2) // 2])


def ripple(log_mel: torch.Tensor) -> torch.Tensor:
    """(..., n_mels) log-mel -> its harmonic ripple: minus the local mean over RIPPLE_CHANNELS neighbouring mel
    channels (the spectral envelope), scaled to unit spread. Where harmonics sit, apart from how loud each is."""
    flat = log_mel.reshape(-1, 1, log_mel.size(-1))
    envelope = torch.nn.functional.avg_pool1d(flat, RIPPLE_CHANNELS, 1, RIPPLE_CHANNELS // 2,
                                              count_include_pad=False)
    detail = (flat - envelope).reshape(log_mel.shape)
    return detail / detail.std(-1, keepdim=True).clamp(min=1e-6)


def template_of(tokens: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Normalised token features (B, 3, T_text) -> the harmonic template of each token's pitch, interpolated
    between the table's rows (harmonic_templates) and scaled by its voiced fraction: (B, n_mels, T_text)."""
    low, high, step = TEMPLATE_SEMITONES
    semitones = tokens[:, 0] * PITCH_UNIT + PITCH_CENTER
    position = ((semitones - low) / step).clamp(0, table.size(0) - 1)
    below = position.floor().long().clamp(max=table.size(0) - 2)
    frac = (position - below).unsqueeze(1)
    rows = table[below].transpose(1, 2), table[below + 1].transpose(1, 2)  # (B, n_mels, T_text) each
    return (rows[0] * (1 - frac) + rows[1] * frac) * tokens[:, 1:2].clamp(0, 1)
