"""ONNX export and the torch-free runtime: graph parity with torch on real inputs, whole-utterance parity,
no torch on the runtime path, int8 graphs, the CLI, and the demo voice's intelligibility through ONNX."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

try:
    from fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401  (pytest fixture)
except ImportError:  # tests/ imported as a package
    from tests.fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401

from inference import export_onnx  # noqa: E402
import text  # noqa: E402
from mel_processing import mel_from_config  # noqa: E402
from runtime.onnx_synthesizer import OnnxSynthesizer, OnnxVoiceError  # noqa: E402
from sampling import SamplingConfig  # noqa: E402
from inference.synthesizer import TorchSynthesizer  # noqa: E402
from training.voice_file import load_voice  # noqa: E402

SENTENCE = "Printing, in the only sense with which we are concerned."
CLIP = ROOT / "tests" / "data" / "wavs" / "LJ001-0001.wav"


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny"
    assert export_onnx.main([str(tiny_checkpoint), str(out), "--int8", "--steps", "2"]) == 0
    return out


def test_folder_holds_three_graphs_and_the_runtime_json(exported):
    names = {p.name for p in exported.iterdir()}
    assert {"encoder.onnx", "velocity.onnx", "vocoder.onnx", "velocity_int8.onnx", "vocoder_int8.onnx",
            "voice.json"} <= names
    info = json.loads((exported / "voice.json").read_text())
    assert info["symbols"] == list(text.symbols) and info["sample_rate"] == 22050 and info["hop_length"] == 256
    assert info["sampling"]["steps"] == 2 and info["text_cleaners"] == ["english_cleaners2"]


def test_each_graph_matches_torch_on_real_inputs(tiny_checkpoint, exported):
    model, hps = load_voice(tiny_checkpoint)
    onnx = OnnxSynthesizer(exported)
    ids = text.text_to_ids(SENTENCE, hps.data)
    ids_t, lengths = torch.tensor([ids]), torch.tensor([len(ids)])
    h, mu, logw = onnx.sessions["encoder"].run(None, {"ids": ids_t.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        h_t, mu_t, x_mask, _ = model.acoustic._encode(ids_t, lengths, None)
        logw_t = model.acoustic.duration_predictor(h_t, x_mask)
    for a, b in ((h, h_t), (mu, mu_t), (logw, logw_t)):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-4, rtol=0)

    wav, _ = sf.read(str(CLIP), dtype="float32")
    mel = mel_from_config(torch.from_numpy(wav[:256 * 120]).unsqueeze(0), hps.data)  # a real mel, 120 frames
    x = ((mel - hps.data.mel_mean) / hps.data.mel_std).float()
    cond = torch.randn(1, hps.model.hidden_channels + 80, mel.size(2))
    mask, t = torch.ones(1, 1, mel.size(2)), torch.tensor([0.3])
    v = onnx.sessions["velocity"].run(None, {"x": x.numpy(), "mask": mask.numpy(), "cond": cond.numpy(),
                                             "t": t.numpy()})[0]
    with torch.no_grad():
        v_t = model.acoustic.cfm.estimator(x, mask, cond, t)
    np.testing.assert_allclose(v, v_t.numpy(), atol=1e-4, rtol=0)
    audio = onnx.vocode(mel.numpy())
    with torch.no_grad():
        audio_t = model.generator(mel)[0][0, 0].numpy()
    assert audio.shape == audio_t.shape == (120 * 256,)
    np.testing.assert_allclose(audio, audio_t, atol=1e-4, rtol=0)


def test_whole_utterance_matches_torch_at_zero_temperature(tiny_checkpoint, exported):
    """Temperature 0 removes the only difference (numpy vs torch noise): same ODE, same result."""
    sampling = SamplingConfig(steps=3, method="midpoint", temperature=0.0)
    a, sr, info = OnnxSynthesizer(exported).synthesize(SENTENCE + " And a second one.", sampling)
    b, _, _ = TorchSynthesizer.from_checkpoint(tiny_checkpoint).synthesize(SENTENCE + " And a second one.", sampling)
    assert sr == 22050 and info["nfe"] == 6 and info["sentences"] == 2 and a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


def test_int8_graphs_run_and_stay_close(exported):
    """Catches int8=True loading an fp32 graph: the int8 velocity net and vocoder each differ from their fp32
    twins on the same input (measured: by 1 % of the output's peak), and the utterance stays close."""
    sampling = SamplingConfig(steps=2, temperature=0.0)
    fp32, int8 = OnnxSynthesizer(exported), OnnxSynthesizer(exported, int8=True)
    a, b = fp32.synthesize(SENTENCE, sampling)[0], int8.synthesize(SENTENCE, sampling)[0]
    assert a.shape == b.shape and np.corrcoef(a, b)[0, 1] > 0.99  # quantized, not broken (measured 0.9999)
    rng = np.random.default_rng(0)
    mel = fp32.mel(fp32.text_to_ids(SENTENCE), sampling, rng)[0]
    frames = mel.shape[-1]
    feeds = {"x": rng.standard_normal(mel.shape, dtype=np.float32), "mask": np.ones((1, 1, frames), np.float32),
             "cond": rng.standard_normal((1, fp32.info["cond_channels"], frames), dtype=np.float32),
             "t": np.array([0.3], np.float32)}
    for x, y in ((fp32.sessions["velocity"].run(None, feeds)[0], int8.sessions["velocity"].run(None, feeds)[0]),
                 (fp32.vocode(mel), int8.vocode(mel))):
        assert x.shape == y.shape and 1e-4 < np.abs(x - y).max() / np.abs(x).max() < 0.1


def test_bad_folder_is_a_clear_error(tmp_path, exported):
    with pytest.raises(OnnxVoiceError, match="no voice.json"):
        OnnxSynthesizer(tmp_path)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "voice.json").write_text((exported / "voice.json").read_text())
    with pytest.raises(OnnxVoiceError, match="encoder.onnx is missing"):
        OnnxSynthesizer(partial)


def test_cli_onnx_path_never_imports_torch(exported, tmp_path):
    out = tmp_path / "o.wav"
    code = ("import runpy, sys\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            f"sys.argv = ['inference_flow_matching.py', '--onnx', {str(exported)!r}, '--text', {SENTENCE!r}, "
            f"'--output', {str(out)!r}, '--threads', '1']\n"
            f"try:\n    runpy.run_path({str(ROOT / 'inference_flow_matching.py')!r}, run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    assert "NO-TORCH" in proc.stdout and "NFE 2 per sentence (2 euler steps)" in proc.stdout
    info = sf.info(str(out))
    assert info.samplerate == 22050 and info.frames > 0
    proc = subprocess.run([sys.executable, str(ROOT / "inference_flow_matching.py"), "--onnx", str(exported),
                           "--checkpoint", "x.pth", "--text", "Hi."], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "drop --checkpoint" in proc.stderr


def test_demo_voice_through_onnx_is_intelligible(tmp_path):
    """Whole utterances through the exported demo voice: WER within 1.5x of the measured 0.158 (51 words)."""
    from evaluation.asr import Transcriber
    from evaluation.metrics import corpus_wer
    from test_demo_voice import held_out_sentences

    demo = ROOT / "pretrained" / "demo_voice.pth"
    if not demo.is_file():
        pytest.skip("no demo voice")
    assert export_onnx.main([str(demo), str(tmp_path / "demo")]) == 0
    tts = OnnxSynthesizer(tmp_path / "demo", threads=1)
    sentences = held_out_sentences(6)  # never trained on
    transcriber = Transcriber()
    hyps = [transcriber.transcribe(tts.synthesize(s, seed=0)[0], tts.sample_rate) for s in sentences]
    assert corpus_wer(sentences, hyps) <= 0.24, hyps


def test_bench_e2e_runs_and_reports_every_column(exported, tiny_checkpoint, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_e2e.py"), "--voice", str(tiny_checkpoint),
                           "--onnx", str(exported), "--nfe", "1", "--threads", "1", "--runtimes", "onnx-fp32",
                           "onnx-int8", "--sentences", "1", "--runs", "1", "--output", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert [r["runtime"] for r in rows] == ["onnx-fp32", "onnx-int8"]
    assert all(r["rtf"]["1"] > 0 and r["cold_start_s"] > 0 and r["peak_rss_mb"] > 10 for r in rows)
    assert "| onnx-int8 | 1 |" in proc.stdout


def test_vocoding_in_parallel_pieces_gives_the_same_samples(exported):
    sampling = SamplingConfig(steps=2, temperature=0.0)
    one, _, _ = OnnxSynthesizer(exported, threads=1).synthesize(SENTENCE, sampling)
    two, _, _ = OnnxSynthesizer(exported, threads=2).synthesize(SENTENCE, sampling)
    assert one.shape == two.shape and np.abs(one - two).max() < 1e-4


def test_guided_multi_speaker_voice_with_a_shared_vocoder_matches_torch(tmp_path):
    """A voice of the multispeaker recipe (prompt context, speaker-free vocoder, guidance): the runtime pads
    the empty mel context, guides in one batched call and feeds the vocoder no speaker, as torch does."""
    from conftest import make_tiny_hps, wake_velocity_net

    from models import FlowMatchingSynthesizer

    hps = make_tiny_hps(n_speakers=2, gin_channels=8, speaker_names=["ann", "bob"], prompt_context=True,
                        speaker_conditioned_vocoder=False, cfg_scale=1.5)
    torch.manual_seed(0)
    model = FlowMatchingSynthesizer(len(text.symbols), hps)
    wake_velocity_net(model.acoustic.cfm.estimator)  # not v = 0, so guidance shows
    voice = tmp_path / "multi.pth"
    torch.save({"ema": model.state_dict(), "config": hps.to_dict(), "step": 1}, voice)
    out = tmp_path / "onnx"
    assert export_onnx.main([str(voice), str(out)]) == 0
    onnx = OnnxSynthesizer(out)
    assert onnx.default_sampling.cfg_scale == 1.5 and onnx.speaker_names == ["ann", "bob"]
    assert onnx.default_sampling == TorchSynthesizer.from_checkpoint(voice).default_sampling  # the voice's own
    torch_tts = TorchSynthesizer.from_checkpoint(voice)
    for scale in (0.0, 1.5):
        sampling = SamplingConfig(steps=2, temperature=0.0, cfg_scale=scale)
        a, _, _ = onnx.synthesize(SENTENCE, sampling, speaker="bob")
        b, _, _ = torch_tts.synthesize(SENTENCE, sampling, speaker="bob")
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


def test_prosody_conditioned_voice_takes_its_edits_as_an_encoder_input_and_matches_torch(tmp_path):
    """The encoder graph takes prosody_edit (pitch shift, range, energy) and gives the edited text condition;
    a plain voice's export has no such input and its runtime refuses edits as torch does."""
    from conftest import make_tiny_hps, wake_velocity_net

    from models import FlowMatchingSynthesizer

    hps = make_tiny_hps(n_speakers=2, gin_channels=8, speaker_names=["ann", "bob"], prosody_conditioning=True)
    torch.manual_seed(0)
    model = FlowMatchingSynthesizer(len(text.symbols), hps)
    wake_velocity_net(model.acoustic.cfm.estimator)
    torch.nn.init.normal_(model.acoustic.prosody_embed.conv.weight, std=0.05)  # zero-initialised: make edits show
    voice = tmp_path / "prosody.pth"
    torch.save({"ema": model.state_dict(), "config": hps.to_dict(), "step": 1}, voice)
    out = tmp_path / "onnx"
    assert export_onnx.main([str(voice), str(out)]) == 0
    onnx, torch_tts = OnnxSynthesizer(out), TorchSynthesizer.from_checkpoint(voice)
    assert onnx.realises_prosody and torch_tts.realises_prosody
    plain = SamplingConfig(steps=2, temperature=0.0)
    reference, _, _ = onnx.synthesize(SENTENCE, plain, speaker="ann(1)+bob(1)")
    for edit in (dict(pitch_shift=3.0), dict(pitch_range=0.4, energy_db=-5.0)):
        a, _, _ = onnx.synthesize(SENTENCE, plain.replace(**edit), speaker="ann(1)+bob(1)")
        b, _, _ = torch_tts.synthesize(SENTENCE, plain.replace(**edit), speaker="ann(1)+bob(1)")
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
        assert a.shape == reference.shape and not np.allclose(a, reference, atol=1e-3)


def test_a_plain_voice_export_refuses_prosody_edits(exported):
    tts = OnnxSynthesizer(exported)
    assert not tts.realises_prosody
    with pytest.raises(ValueError, match="prosody conditioning"):
        tts.synthesize(SENTENCE, SamplingConfig(steps=2, pitch_shift=2.0))


def test_source_filter_voice_exports_its_pitch_graph_and_matches_torch_whole_in_pieces_and_streamed(tmp_path):
    """model.vocoder "source_filter": pitch.onnx gives the whole clip's pitch, the runtime computes the pulses'
    phase and the noise of each window (excitation.py), so torch, the runtime, its parallel pieces and its
    stream give the same samples."""
    from conftest import make_tiny_hps

    from models import FlowMatchingSynthesizer

    hps = make_tiny_hps(vocoder="source_filter", source_filter_channels=32, source_filter_layers=2)
    torch.manual_seed(0)
    model = FlowMatchingSynthesizer(len(text.symbols), hps)
    voice = tmp_path / "sf.pth"
    torch.save({"ema": model.state_dict(), "config": hps.to_dict(), "step": 1}, voice)
    out = tmp_path / "onnx"
    assert export_onnx.main([str(voice), str(out)]) == 0
    assert (out / "pitch.onnx").is_file() and json.loads((out / "voice.json").read_text())["vocoder"] == "source_filter"
    sampling = SamplingConfig(steps=2, temperature=0.0)
    a, _, _ = OnnxSynthesizer(out, threads=1).synthesize(SENTENCE, sampling)
    pieces, _, _ = OnnxSynthesizer(out, threads=3).synthesize(SENTENCE, sampling)
    streamed = np.concatenate([chunk for chunk in OnnxSynthesizer(out).stream(SENTENCE, sampling)])
    b, _, _ = TorchSynthesizer.from_checkpoint(voice).synthesize(SENTENCE, sampling)
    assert np.abs(a).max() > 1e-3
    for other in (pieces, streamed, b):
        assert other.shape == a.shape
        np.testing.assert_allclose(other, a, atol=1e-3 * np.abs(a).max(), rtol=0)  # a wrong phase or noise: ~1x
    (out / "pitch.onnx").unlink()
    with pytest.raises(OnnxVoiceError, match="pitch.onnx is missing"):
        OnnxSynthesizer(out)
