"""pitch.py and the vocoder's harmonic source (model.harmonic_source): phase continuity across chunks, YIN
targets on real speech, a predictor that learns them, and a source that joins the shipped vocoder unchanged."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import text as text_lib
from config import ConfigError
from conftest import make_tiny_hps, wake_velocity_net
from mel_processing import mel_from_config
from models import FlowMatchingSynthesizer, MultiBandISTFTGenerator
from pitch import F0_REF, SINE_AMPLITUDE, PitchPredictor, harmonic_source, pitch_loss, start_cycles, yin_targets
from sampling import SamplingConfig
from inference.synthesizer import TorchSynthesizer
from training.train_utils import param_groups
from training.voice_file import read_vocoder

ROOT = Path(__file__).resolve().parent.parent
CLIP = Path(__file__).parent / "data" / "wavs" / "LJ001-0001.wav"
SR, HOP = 22050, 256
SENTENCES = ("Hello there. Printing, in the only sense with which we are at present concerned, differs from most if not "
             "from all the arts. Good night.")


def real_clip(seconds: float = 2.0) -> torch.Tensor:
    """(1, 1, frames * HOP) of LJ001-0001."""
    wav, sr = sf.read(CLIP, dtype="float32", frames=int(seconds * SR))
    assert sr == SR
    frames = len(wav) // HOP
    return torch.from_numpy(wav[:frames * HOP]).view(1, 1, -1)


def test_a_chunk_continues_the_whole_clips_phase():
    f0 = 80 + 200 * torch.rand(2, 60, generator=torch.Generator().manual_seed(0))
    voiced = torch.ones_like(f0)
    whole = harmonic_source(f0, voiced, HOP, SR, 3) / SINE_AMPLITUDE
    chunk = harmonic_source(f0[:, 25:], voiced[:, 25:], HOP, SR, 3, start_cycles(f0, 25, HOP, SR)) / SINE_AMPLITUDE
    assert (whole[..., 25 * HOP:] - chunk).abs().max() < 1e-3
    fresh = harmonic_source(f0[:, 25:], voiced[:, 25:], HOP, SR, 3) / SINE_AMPLITUDE  # no start phase: a jump
    assert (whole[..., 25 * HOP:] - fresh).abs().max() > 0.1


def test_unvoiced_frames_get_no_sines():
    voicing = torch.tensor([[1.0, 0.0, 1.0]])
    source = harmonic_source(torch.full((1, 3), 120.0), voicing, HOP, SR, 2)
    assert source[..., HOP:2 * HOP].abs().max() == 0 and source[..., :HOP].abs().max() > 0.9 * SINE_AMPLITUDE


def test_harmonics_sit_at_multiples_of_f0():
    source = harmonic_source(torch.full((1, 200), 150.0), torch.ones(1, 200), HOP, SR, 4)[0].numpy()
    for k, channel in enumerate(source, start=1):
        spectrum = np.abs(np.fft.rfft(channel))
        assert abs(np.argmax(spectrum) * SR / len(channel) - 150.0 * k) < 1.0


def test_harmonics_above_the_nyquist_frequency_are_silent():
    f0 = torch.tensor([[1000.0, 3000.0]])  # the 4th harmonic: 4 kHz, then 12 kHz (SR / 2 = 11025 Hz)
    source = harmonic_source(f0, torch.ones_like(f0), HOP, SR, 4)
    assert source[0, 3, :HOP].abs().max() > 0.9 * SINE_AMPLITUDE and source[0, 3, HOP:].abs().max() == 0
    assert source[0, 2, HOP:].abs().max() > 0.9 * SINE_AMPLITUDE  # 9 kHz stays


def test_the_source_has_as_many_sines_as_configured():
    hps = make_tiny_hps(harmonic_source=True, source_harmonics=24)
    generator = MultiBandISTFTGenerator(hps).eval()
    sines, _ = generator.excitation(torch.zeros(1, hps.data.n_mel_channels, 5))
    assert sines.shape == (1, 24, 5 * hps.data.hop_length)
    assert all(conv.in_channels == 24 for conv in generator.source_convs)
    with pytest.raises(ConfigError, match="source_harmonics must be >= 1"):
        MultiBandISTFTGenerator(make_tiny_hps(harmonic_source=True, source_harmonics=0))


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


def test_the_source_joins_the_shipped_vocoder_without_changing_it():
    """Zero-initialised source convolutions: the shipped weights speak as before until training moves them;
    the new parts train at 10x the learning rate (train_utils.param_groups)."""
    state, hps, _ = read_vocoder(ROOT / "pretrained" / "vocoder.pth")
    weights = {k: v.float() for k, v in state.items()}
    plain = MultiBandISTFTGenerator(hps).eval()
    plain.load_state_dict(weights)
    with_source = MultiBandISTFTGenerator(hps.replace(harmonic_source=True)).eval()
    missing = with_source.load_state_dict(weights, strict=False).missing_keys
    assert missing and all(k.startswith(("pitch.", "source_convs.")) for k in missing)
    mel = mel_from_config(real_clip(1.0).view(1, -1), hps.data)
    with torch.no_grad():
        reference = plain(mel)[0]
        audio, _, raw_pitch = with_source(mel, return_pitch=True)
        assert torch.equal(audio, reference) and raw_pitch.shape == (1, 2, mel.size(2))
        torch.nn.init.normal_(with_source.source_convs[0].weight, std=0.01)
        assert not torch.allclose(with_source(mel)[0], reference, atol=1e-4)

    groups = param_groups(with_source, 0.01)
    assert [(g["decay"], g["lr_scale"]) for g in groups] == [(True, 1.0), (False, 1.0), (True, 10.0), (False, 10.0)]
    assert [(g["decay"], g["lr_scale"]) for g in param_groups(plain, 0.01)] == [(True, 1.0), (False, 1.0)]


def test_the_source_is_read_in_fp32_under_bf16_autocast():
    """torch 2.13 on CPU: a bf16 convolution with few input channels and kernel == stride gives wrong values;
    the generator reads its sines in fp32 whatever the autocast."""
    hps = make_tiny_hps(harmonic_source=True)
    generator = MultiBandISTFTGenerator(hps).eval()
    torch.nn.init.normal_(generator.source_convs[0].weight, std=0.05)
    source = harmonic_source(torch.full((1, 20), 130.0), torch.ones(1, 20), HOP, SR, generator.source_convs[0].in_channels)
    with torch.no_grad():
        reference = generator.read_source(0, source)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = generator.read_source(0, source)
    assert under_autocast.dtype == torch.float32 and torch.equal(under_autocast, reference)


# ----------------------------------------------------------------------------------------------------------
# A voice whose vocoder has a harmonic source: streaming and the ONNX runtime keep the phase running


@pytest.fixture(scope="module")
def harmonic_voice(tmp_path_factory) -> Path:
    """A tiny untrained voice with model.harmonic_source and source convolutions that matter (not zero)."""
    hps = make_tiny_hps(harmonic_source=True)
    torch.manual_seed(0)
    model = FlowMatchingSynthesizer(len(text_lib.symbols), hps)
    wake_velocity_net(model.acoustic.cfm.estimator)
    for conv in model.generator.source_convs:
        torch.nn.init.normal_(conv.weight, std=0.2)
    path = tmp_path_factory.mktemp("harmonic") / "harmonic.pth"
    torch.save({"ema": model.state_dict(), "config": hps.to_dict(), "step": 1}, path)
    return path


def test_streamed_chunks_join_into_the_whole_utterance(harmonic_voice):
    tts = TorchSynthesizer.from_checkpoint(harmonic_voice)
    sampling = SamplingConfig(steps=2, temperature=0.0)
    whole, _, _ = tts.synthesize(SENTENCES, sampling)
    chunks = list(tts.stream(SENTENCES, sampling))
    assert len(chunks) > 3 and np.abs(np.concatenate(chunks) - whole).max() < 1e-4
    # Without the running phase each chunk's sines would restart: the source must reach the output.
    generator = tts.model.generator
    mel = torch.randn(1, generator.conv_pre.in_channels, 80) - 5.0
    with torch.no_grad():
        restarted = generator(mel[..., 40:])[0]
        continued = generator.window(mel, 40, 80)[0]
    assert (restarted - continued).abs().max() > 1e-3


def test_onnx_export_refuses_a_harmonic_source_in_one_line(harmonic_voice, tmp_path, capsys):
    """The torch-free runtime does not run the experiment; export says so instead of writing graphs it cannot use."""
    from inference import export_onnx

    out = tmp_path / "onnx"
    assert export_onnx.main([str(harmonic_voice), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "harmonic source" in err and len(err.splitlines()) == 1 and not list(out.glob("*.onnx"))
