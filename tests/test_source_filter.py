"""source_filter.py: the pulse train's partials, its phase across chunks, and a vocoder whose output follows
the pitch it is given (no frame-rate lock) and trains, saves and loads like the MB-iSTFT generator."""
from __future__ import annotations

import numpy as np
import torch

from conftest import make_tiny_hps
from losses import VocoderReconstructionLoss
from models import FlowMatchingSynthesizer, make_generator
from pitch import start_cycles
from source_filter import SourceFilterGenerator, pulse_train
from training.voice_file import load_vocoder

SR, HOP = 22050, 256


def harmonic_contrast(wav: np.ndarray, f0: float, fmax: float = 4000.0) -> float:
    """log10 of wav's (T,) power at k * f0 over its power at (k + 1/2) * f0, k * f0 < fmax (a 1 Hz grid)."""
    power = np.abs(np.fft.rfft(wav * np.hanning(len(wav)), n=SR)) ** 2
    k = np.arange(1, int(fmax / f0))
    return float(np.log10(power[np.round(k * f0).astype(int)].mean() / power[np.round((k + 0.5) * f0).astype(int)].mean()))


def test_the_pulse_train_has_unit_power_and_partials_at_multiples_of_f0():
    pulses = pulse_train(torch.full((1, 200), 103.0), torch.ones(1, 200), HOP, SR)[0].numpy()
    assert abs(np.mean(pulses ** 2) - 1.0) < 0.02
    assert harmonic_contrast(pulses, 103.0, fmax=11000.0) > 3.5  # 8000x: the window's sidelobes


def test_unvoiced_frames_get_no_pulses():
    pulses = pulse_train(torch.full((1, 3), 120.0), torch.tensor([[1.0, 0.0, 1.0]]), HOP, SR)
    assert pulses[0, HOP:2 * HOP].abs().max() == 0 and pulses[0, :HOP].abs().max() > 1


def test_a_chunk_continues_the_whole_clips_pulses():
    f0 = 80 + 200 * torch.rand(1, 60, generator=torch.Generator().manual_seed(0))
    voiced = torch.ones_like(f0)
    whole = pulse_train(f0, voiced, HOP, SR)
    chunk = pulse_train(f0[:, 25:], voiced[:, 25:], HOP, SR, start_cycles(f0, 25, HOP, SR))
    assert (whole[:, 25 * HOP:] - chunk).abs().max() < 1e-2 * whole.abs().max()


def source_filter_hps(**overrides):
    return make_tiny_hps(vocoder="source_filter", source_filter_channels=32, source_filter_layers=2, **overrides)


def test_the_vocoder_follows_the_pitch_it_is_given_not_the_frame_rate():
    torch.manual_seed(0)
    generator = SourceFilterGenerator(source_filter_hps()).eval()
    frames = 170  # about 2 s of one steady frame
    mel = torch.randn(1, 80, 1, generator=torch.Generator().manual_seed(1)).repeat(1, 1, frames) - 5
    for f0 in (103.0, 150.0):
        pitch = (torch.full((1, frames), f0), torch.ones(1, frames))
        with torch.no_grad():
            audio = generator(mel, pitch=pitch, noise=torch.zeros(1, frames * HOP))[0][0, 0].numpy()
        assert harmonic_contrast(audio[HOP * 10:-HOP * 10], f0) > 3
        assert harmonic_contrast(audio[HOP * 10:-HOP * 10], SR / HOP) < 1  # no comb at the frame rate (locked: >3)


def test_same_mel_gives_the_same_audio_in_eval_and_its_losses_train_it():
    hps = source_filter_hps()
    generator = make_generator(hps)
    mel = torch.randn(2, 80, 32, generator=torch.Generator().manual_seed(2)) - 5
    generator.eval()
    with torch.no_grad():
        assert torch.equal(generator(mel)[0], generator(mel)[0])
    generator.train()
    audio, bands, raw = generator(mel, return_pitch=True)
    assert audio.shape == bands.shape == (2, 1, 32 * HOP) and raw.shape == (2, 2, 32)
    loss = VocoderReconstructionLoss(hps)(audio, bands, torch.randn_like(audio) * 0.05)
    assert loss["stft_sub"] == 0  # no sub-bands
    loss["total"].backward()
    assert generator.head.weight.grad.abs().sum() > 0 and generator.blocks[0].pw1.weight.grad.abs().sum() > 0


def test_a_saved_source_filter_vocoder_loads_as_itself(tmp_path):
    hps = source_filter_hps()
    model = FlowMatchingSynthesizer(40, hps)
    path = tmp_path / "voc.pth"
    torch.save({"model": model.state_dict(), "config": hps.to_dict()}, path)
    generator, loaded_hps = load_vocoder(path)
    assert isinstance(generator, SourceFilterGenerator) and loaded_hps.model.vocoder == "source_filter"
    mel = torch.randn(1, 80, 20) - 5
    with torch.no_grad():
        assert torch.equal(generator(mel)[0], model.generator.eval()(mel)[0])


def test_windows_vocoded_alone_join_into_the_whole_clip():
    from runtime import streaming

    generator = SourceFilterGenerator(source_filter_hps()).eval()
    mel = torch.randn(1, 80, 150, generator=torch.Generator().manual_seed(3)) - 5
    with torch.no_grad():
        whole = generator(mel)[0][0, 0]
        joined = torch.cat([generator.window(mel, left, right)[0][0, 0][(start - left) * HOP:(end - left) * HOP]
                            for start, end, left, right in streaming.vocoder_windows(mel.size(-1))])
    assert joined.shape == whole.shape and (joined - whole).abs().max() < 1e-3 * whole.abs().max()


def test_a_streamed_source_filter_voice_joins_into_the_whole_utterance(tmp_path):
    import text as text_lib
    from conftest import wake_velocity_net
    from inference.synthesizer import TorchSynthesizer
    from sampling import SamplingConfig

    hps = source_filter_hps()
    torch.manual_seed(0)
    model = FlowMatchingSynthesizer(len(text_lib.symbols), hps)
    wake_velocity_net(model.acoustic.cfm.estimator)
    path = tmp_path / "sf.pth"
    torch.save({"ema": model.state_dict(), "config": hps.to_dict(), "step": 1}, path)
    tts = TorchSynthesizer.from_checkpoint(path)
    sentences = "Hello there. Printing, in the only sense with which we are at present concerned. Good night."
    sampling = SamplingConfig(steps=2, temperature=0.0)
    whole, _, _ = tts.synthesize(sentences, sampling)
    chunks = list(tts.stream(sentences, sampling))
    assert len(chunks) > 3 and np.abs(np.concatenate(chunks) - whole).max() < 1e-3 * np.abs(whole).max()
