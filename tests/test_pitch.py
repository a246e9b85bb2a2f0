"""pitch.py: YIN targets on real speech and a predictor that learns them from the mel (the source-filter
vocoder's pitch)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from conftest import make_tiny_hps
from mel_processing import mel_from_config
from pitch import F0_REF, PitchPredictor, pitch_loss, yin_targets

CLIP = Path(__file__).parent / "data" / "wavs" / "LJ001-0001.wav"
SR, HOP = 22050, 256


def real_clip(seconds: float = 2.0) -> torch.Tensor:
    """(1, 1, frames * HOP) of LJ001-0001."""
    wav, sr = sf.read(CLIP, dtype="float32", frames=int(seconds * SR))
    assert sr == SR
    frames = len(wav) // HOP
    return torch.from_numpy(wav[:frames * HOP]).view(1, 1, -1)


def test_yin_targets_find_the_pitch_and_voicing_of_a_buzz_noise_and_real_speech():
    t = torch.arange(40 * HOP) / SR
    buzz = sum(torch.sin(2 * np.pi * 180.0 * k * t) / k for k in range(1, 6)).view(1, 1, -1) * 0.3
    target, voiced = yin_targets(buzz, SR, HOP)
    assert target.shape == voiced.shape == (1, 40) and voiced.all()
    assert torch.allclose(F0_REF * target.exp()[:, 2:-2], torch.tensor(180.0), rtol=0.02)
    noise = 0.3 * torch.randn(1, 1, 40 * HOP, generator=torch.Generator().manual_seed(0))
    assert not yin_targets(noise, SR, HOP)[1].any()
    assert not yin_targets(buzz * 1e-3, SR, HOP)[1].any()  # -60 dB: too quiet to be voiced

    target, voiced = yin_targets(real_clip(), SR, HOP)
    assert 0.3 < voiced.float().mean() < 0.9  # pauses, the quiet start and consonants are unvoiced
    assert 150 < float((F0_REF * target[voiced].exp()).median()) < 300  # the LJ Speech reader's voice


def test_the_predictor_learns_yin_from_the_mel():
    hps = make_tiny_hps()
    wav = real_clip()
    mel = mel_from_config(wav.view(1, -1), hps.data)
    torch.manual_seed(0)
    predictor = PitchPredictor(hps.data.n_mel_channels, channels=32)
    optimizer = torch.optim.Adam(predictor.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = pitch_loss(predictor(mel), wav, hps.data)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
