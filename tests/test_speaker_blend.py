"""Voice blending: the two spellings, the weights the model gets, the embedding mix in torch and the same audio
through the ONNX runtime, the command line."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import ROOT, make_tiny_hps, wake_velocity_net
import text
from inference import export_onnx
from inference.synthesizer import TorchSynthesizer
from models import FlowMatchingSynthesizer
from runtime.onnx_synthesizer import OnnxSynthesizer
from runtime.speaker_blend import is_blend, parse_blend
from sampling import SamplingConfig

SENTENCE = "Printing, in the only sense with which we are concerned."
ZERO_NOISE = SamplingConfig(steps=2, temperature=0.0)


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    """A tiny three-speaker voice file (ann, bob, cy) whose speakers change the audio."""
    hps = make_tiny_hps(n_speakers=3, gin_channels=8, speaker_names=["ann", "bob", "cy"])
    torch.manual_seed(0)
    model = FlowMatchingSynthesizer(len(text.symbols), hps)
    wake_velocity_net(model.acoustic.cfm.estimator)
    path = tmp_path_factory.mktemp("blend") / "three.pth"
    torch.save({"ema": model.state_dict(), "config": hps.to_dict(), "step": 1}, path)
    return path


@pytest.mark.parametrize("spec, parts", [
    ("awb:0.7,slt_hts:0.3", [("awb", 0.7), ("slt_hts", 0.3)]),
    ("awb(7)+slt_hts(3)", [("awb", 7.0), ("slt_hts", 3.0)]),
    (" awb ( 2 ) + kal ", [("awb", 2.0), ("kal", 1.0)]),
    ("awb+slt_hts", [("awb", 1.0), ("slt_hts", 1.0)]),
    ("awb:1", [("awb", 1.0)]),
    ("multi:ann(1)+multi:bob(1)", [("multi:ann", 1.0), ("multi:bob", 1.0)]),  # a server's FILE:SPEAKER names
])
def test_both_spellings_read(spec, parts):
    assert is_blend(spec) and parse_blend(spec) == parts


@pytest.mark.parametrize("spec, needle", [
    ("awb(0)+kal(1)", "weight '0'"), ("awb:-1,kal:2", "weight '-1'"), ("awb:nan,kal:1", "weight 'nan'"),
    ("awb:x", "weight 'x'"), ("awb(1)+", "at ''"), ("awb,kal", "at 'awb'"), ("awb+awb", "names 'awb' twice"),
    ("awb(2)", "names one speaker"), ("awb(1)+kal(2", "cannot read"),
])
def test_a_malformed_blend_says_how_to_write_one(spec, needle):
    with pytest.raises(ValueError, match="blend") as e:
        parse_blend(spec)
    assert needle in str(e.value)


def test_plain_names_are_not_blends():
    assert not any(is_blend(s) for s in ("awb", "slt_hts", 3, None))


def test_weights_are_one_hot_for_a_speaker_and_normalised_for_a_blend(voice):
    tts = TorchSynthesizer.from_checkpoint(voice)
    assert tts.speaker_weights("bob").tolist() == [0, 1, 0] and tts.speaker_weights(None).tolist() == [1, 0, 0]
    np.testing.assert_allclose(tts.speaker_weights("ann(3)+cy(1)"), [0.75, 0, 0.25])
    np.testing.assert_allclose(tts.speaker_weights("0:1,2:1"), [0.5, 0, 0.5])  # ids as in --speaker
    for bad, needle in (("ann(1)+dee(1)", "in the speaker blend 'ann(1)+dee(1)': unknown speaker 'dee'; known "
                                          "speakers: ann, bob, cy"), ("ann:0.5+bob:0.5", "unknown speaker 'ann:0.5'")):
        with pytest.raises(ValueError) as e:
            tts.synthesize(SENTENCE, speaker=bad)
        assert needle in str(e.value)


def test_a_blend_mixes_the_speaker_embeddings_everywhere_a_speaker_conditions(voice):
    tts = TorchSynthesizer.from_checkpoint(voice)
    acoustic = tts.model.acoustic
    table = acoustic.emb_g.weight
    mixed = acoustic._speaker(torch.tensor([[0.25, 0.0, 0.75]]))
    torch.testing.assert_close(mixed[0, :, 0], 0.25 * table[0] + 0.75 * table[2])
    ann, _, _ = tts.synthesize(SENTENCE, ZERO_NOISE, speaker="ann")
    assert np.array_equal(tts.synthesize(SENTENCE, ZERO_NOISE, speaker="ann:1")[0], ann)  # weight 1 is the speaker
    cy, _, _ = tts.synthesize(SENTENCE, ZERO_NOISE, speaker="cy")
    half, _, _ = tts.synthesize(SENTENCE, ZERO_NOISE, speaker="ann(1)+cy(1)")
    n = min(len(ann), len(cy), len(half))
    assert len(half) != len(ann) or not np.allclose(half[:n], ann[:n], atol=1e-3)
    assert len(half) != len(cy) or not np.allclose(half[:n], cy[:n], atol=1e-3)
    streamed = np.concatenate(list(tts.stream(SENTENCE, ZERO_NOISE, speaker="ann(1)+cy(1)", quick_start=False)))
    np.testing.assert_allclose(streamed, half, atol=1e-5)


def test_the_onnx_runtime_blends_as_torch_does(voice, tmp_path):
    out = tmp_path / "onnx"
    assert export_onnx.main([str(voice), str(out)]) == 0
    onnx, torch_tts = OnnxSynthesizer(out), TorchSynthesizer.from_checkpoint(voice)
    for speaker in ("bob", "ann(1)+cy(3)"):
        a, _, _ = onnx.synthesize(SENTENCE, ZERO_NOISE, speaker=speaker)
        b, _, _ = torch_tts.synthesize(SENTENCE, ZERO_NOISE, speaker=speaker)
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


def test_the_command_line_speaks_a_blend(voice, tmp_path):
    wav = tmp_path / "blend.wav"
    run = [sys.executable, str(ROOT / "inference_flow_matching.py"), "--checkpoint", str(voice), "--text", SENTENCE,
           "--steps", "2"]
    proc = subprocess.run(run + ["--speaker", "ann:0.5,cy:0.5", "--output", str(wav)], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert sf.info(str(wav)).frames > 0
    proc = subprocess.run(run + ["--speaker", "ann:0.5,dee:0.5", "--output", str(tmp_path / "no.wav")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and "unknown speaker 'dee'" in proc.stderr and not (tmp_path / "no.wav").exists()
