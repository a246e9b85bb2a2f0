"""The shipped multi-speaker voice: small, named speakers, intelligible, and each speaker sounds like itself.

pretrained/multispeaker.pth was trained on the multi-voice corpus (see pretrained/MULTISPEAKER.md). Three of
its voices read held-out sentences (corpus/test_ids.txt: no voice trained on them); the offline recogniser
scores them and resemblyzer checks that a voice's sentences are closer to each other than to another
voice's. The WER bounds are 1.5x the measured values, so a regression of a few words fails them.
"""
import numpy as np
import pytest
import torch

from evaluation.asr import Transcriber
from conftest import ROOT
from evaluation import metrics
from evaluation.speaker_similarity import SpeakerEncoder
from test_demo_voice import held_out_sentences

VOICE = ROOT / "pretrained" / "multispeaker.pth"
SPEAKERS = ["awb", "flite_slt", "kal", "kal16", "rms", "slt_hts", "ljspeech"]
CHECKED = ["slt_hts", "awb", "rms"]  # a female and two male voices, two engines
N_SENTENCES = 4
# Measured 2026-12-07 (AMD EPYC) at the voice's default (2 Euler steps, guidance distilled in): slt_hts 0.171,
# awb 0.098, rms 0.098 (41 words: one word is 0.024). Bounds: three or four words more. Not 1.5x: CPUs differ
# by more than that here (the guided voice scored awb 0.098 on an AMD EPYC and 0.171 on an Intel Xeon), and
# awb's bound still fails the 0.220 of a real regression (durations rounded down instead of to the nearest frame).
MAX_WER = {"slt_hts": 0.27, "awb": 0.20, "rms": 0.17}
# Mean cosine of two sentences of one voice minus that of one sentence each of two voices: measured
# 0.917 - 0.649 = 0.268
MIN_VOICE_MARGIN = 0.15
BLEND = "awb(1)+slt_hts(1)"  # a male and a female voice, half and half


@pytest.fixture(scope="module")
def synthesized():
    """{speaker: [waveform per held-out sentence]} at the voice's default sampling (what a user gets)."""
    from inference.synthesizer import TorchSynthesizer

    tts = TorchSynthesizer.from_checkpoint(VOICE)
    sentences = held_out_sentences(N_SENTENCES)
    sampling = tts.default_sampling
    out = {}
    for speaker in CHECKED + [BLEND]:
        out[speaker] = [tts.synthesize(s, sampling, speaker=speaker, seed=i)[0] for i, s in enumerate(sentences)]
    return sentences, out, tts.sample_rate


def test_multispeaker_voice_is_small_ema_only_half_precision_with_named_speakers():
    from inference.synthesizer import TorchSynthesizer

    assert VOICE.stat().st_size <= 30e6, f"{VOICE} is {VOICE.stat().st_size / 1e6:.1f} MB"
    ckpt = torch.load(VOICE, map_location="cpu", weights_only=True)
    assert "model" not in ckpt and "optimizer" not in ckpt, "a shipped voice holds EMA weights only"
    tts = TorchSynthesizer.from_checkpoint(VOICE)
    assert tts.speaker_names == SPEAKERS and tts.validate_speaker(None) == SPEAKERS.index("slt_hts")
    with pytest.raises(ValueError, match="known speakers: awb, flite_slt"):
        tts.validate_speaker("ked")


@pytest.mark.parametrize("speaker", CHECKED)
def test_each_speaker_reads_held_out_sentences_intelligibly(synthesized, speaker):
    sentences, audio, sr = synthesized
    transcriber = Transcriber()
    hyps = [transcriber.transcribe(wav, sr) for wav in audio[speaker]]
    wer = metrics.corpus_wer(sentences, hyps)
    print(f"{speaker}: WER {wer:.3f}: {hyps}")
    assert wer <= MAX_WER[speaker], f"{speaker} WER {wer:.3f} > {MAX_WER[speaker]}; transcripts: {hyps}"


def test_each_speaker_sounds_like_itself_not_like_the_others(synthesized):
    _, audio, sr = synthesized
    encoder = SpeakerEncoder()
    emb = {s: [encoder.embed(wav, sr) for wav in waves] for s, waves in audio.items()}
    emb.pop(BLEND)
    same = np.mean([encoder.similarity(a, b) for s in CHECKED for i, a in enumerate(emb[s])
                    for b in emb[s][i + 1:]])
    other = np.mean([encoder.similarity(a, b) for i, s in enumerate(CHECKED) for t in CHECKED[i + 1:]
                     for a in emb[s] for b in emb[t]])
    print(f"same voice {same:.3f}, different voices {other:.3f}")
    assert same - other >= MIN_VOICE_MARGIN, f"same voice {same:.3f} vs different voices {other:.3f}"


def test_a_half_and_half_blend_sits_between_its_parents(synthesized):
    """The 50/50 blend of awb and slt_hts is closer to each parent (the centroid of the model's own readings
    of it) than the other parent is."""
    from evaluation.speaker_similarity import unit

    _, audio, sr = synthesized
    encoder = SpeakerEncoder()
    emb = {s: [encoder.embed(wav, sr) for wav in audio[s]] for s in ("awb", "slt_hts", BLEND)}
    centroid = {s: unit(np.sum(emb[s], axis=0)) for s in ("awb", "slt_hts")}

    def similarity(s, parent):
        return float(np.mean([encoder.similarity(e, centroid[parent]) for e in emb[s]]))
    blend = {p: similarity(BLEND, p) for p in centroid}
    other = {"awb": similarity("slt_hts", "awb"), "slt_hts": similarity("awb", "slt_hts")}
    print(f"blend to awb {blend['awb']:.3f} (slt_hts: {other['awb']:.3f}), to slt_hts {blend['slt_hts']:.3f} "
          f"(awb: {other['slt_hts']:.3f})")
    assert blend["awb"] > other["awb"] and blend["slt_hts"] > other["slt_hts"], (blend, other)
