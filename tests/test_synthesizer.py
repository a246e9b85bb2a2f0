"""End to end: an untrained FlowMatchingSynthesizer turns a sentence into audio of the predicted length."""
from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_hps

import text
from models import FlowMatchingSynthesizer
from sampling import SamplingConfig

SENTENCES = ("Printing, in the only sense with which we are at present concerned.", "Hello world.")


def encode(sentences, hps):
    """Sentences -> padded ids (B, T_text) long, lengths (B,) long (blanks interspersed)."""
    seqs = [text.text_to_ids(s, hps.data) for s in sentences]
    lengths = torch.tensor([len(s) for s in seqs])
    ids = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
    return ids, lengths


def tiny_model(**overrides) -> FlowMatchingSynthesizer:
    torch.manual_seed(0)
    return FlowMatchingSynthesizer(len(text.symbols), make_tiny_hps(**overrides)).eval()


@pytest.mark.parametrize("method,nfe_per_step", [("euler", 1), ("midpoint", 2)])
def test_sentence_to_audio_of_predicted_length(method, nfe_per_step, device):
    model = tiny_model().to(device)
    ids, lengths = (x.to(device) for x in encode(SENTENCES, model.hps))
    audio, durations, mel, extra = model.infer(ids, lengths, sampling=SamplingConfig(steps=4, method=method),
                                               rng=torch.Generator().manual_seed(0))
    mel_lengths = durations.sum(1)
    assert torch.equal(extra["mel_lengths"], mel_lengths)
    assert torch.equal(extra["audio_lengths"], mel_lengths * 256)
    assert audio.shape == (2, 1, int(mel_lengths.max()) * 256)
    assert mel.shape == (2, 80, int(mel_lengths.max()))
    assert (durations[lengths.unsqueeze(1) > torch.arange(ids.size(1), device=device)] >= 1).all()  # all spoken
    assert torch.isfinite(audio).all() and audio.abs().max() > 0
    short = int(lengths.argmin())
    assert audio[short, :, int(extra["audio_lengths"][short]):].abs().max() == 0  # nothing past its length
    assert extra["nfe"] == 4 * nfe_per_step
    assert extra["acoustic_seconds"] > 0 and extra["vocoder_seconds"] > 0


def test_batch_matches_items_alone():
    """The longest item is identical in a batch and alone; the shorter one up to its last frames."""
    model = tiny_model()
    ids, lengths = encode(SENTENCES, model.hps)
    gens = [torch.Generator().manual_seed(i) for i in (1, 2)]
    batch_audio, _, _, extra = model.infer(ids, lengths, sampling=SamplingConfig(steps=3), rng=gens)
    for i in range(2):
        alone, _, _, alone_extra = model.infer(ids[i:i + 1, :lengths[i]], lengths[i:i + 1],
                                               sampling=SamplingConfig(steps=3),
                                               rng=[torch.Generator().manual_seed(i + 1)])
        n = int(alone_extra["audio_lengths"][0])
        assert n == int(extra["audio_lengths"][i])
        # The vocoder's receptive field sees the batch padding only within a few frames of the end.
        keep = n if n == batch_audio.size(-1) else n - 16 * 256
        assert torch.allclose(batch_audio[i, :, :keep], alone[0, :, :keep], atol=1e-4)


def test_multi_speaker_vocoder_is_conditioned():
    """Catches the vocoder's speaker input zeroed or ignored: two speakers' audio from one mel differ by far more
    than float noise (measured: 24 % of the signal's norm)."""
    model = tiny_model(gin_channels=8, n_speakers=3)
    assert model.generator.cond is not None
    mel = torch.randn(1, 80, 12) - 5
    with torch.no_grad():
        a, _ = model.vocode(mel, torch.tensor([0]))
        b, _ = model.vocode(mel, torch.tensor([2]))
    assert a.shape == (1, 1, 12 * 256) and (a - b).norm() > 0.05 * a.norm()
    with pytest.raises(ValueError, match="speakers"):
        model.vocode(mel)
    with pytest.raises(ValueError, match="gin_channels"):  # a one-voice vocoder refuses a speaker
        tiny_model().generator(mel, torch.ones(1, 8, 1))
    ids, lengths = encode(SENTENCES[1:], model.hps)
    audio, _, _, extra = model.infer(ids, lengths, sampling=SamplingConfig(steps=2), speakers=torch.tensor([1]))
    assert audio.shape[-1] == int(extra["audio_lengths"][0])


def test_a_voice_marked_vocoder_bf16_vocodes_in_bf16_where_the_cpu_has_bf16_hardware():
    """model.vocoder_bf16: the torch path vocodes under bfloat16 autocast on a CPU with bf16 hardware (faster
    there), in fp32 elsewhere and for voices without the mark; either way the audio is float32 and close."""
    import numpy as np

    from inference.synthesizer import TorchSynthesizer, fast_bf16_cpu

    hps = make_tiny_hps(vocoder_bf16=True)
    model = tiny_model(vocoder_bf16=True)
    assert TorchSynthesizer(model, hps, len(text.symbols)).model.vocoder_bf16 == fast_bf16_cpu()
    plain = make_tiny_hps()
    assert not TorchSynthesizer(tiny_model(), plain, len(text.symbols)).model.vocoder_bf16
    sampling = SamplingConfig(steps=2, temperature=0.0)
    fp32, _, _ = TorchSynthesizer(model, hps, len(text.symbols), vocoder_bf16=False).synthesize("Hello there.", sampling)
    bf16, _, _ = TorchSynthesizer(model, hps, len(text.symbols), vocoder_bf16=True).synthesize("Hello there.", sampling)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape and not np.array_equal(bf16, fp32)
    assert np.corrcoef(bf16, fp32)[0, 1] > 0.99
