"""evaluate.py end to end on the real tests/data clips: reference-only scoring and a tiny checkpoint."""
from __future__ import annotations

import json
import math

import pytest
import soundfile as sf
import torch

from evaluation import evaluate, metrics
import text
from training.checkpoint import save_checkpoint
from conftest import make_tiny_hps
from models import FlowMatchingSynthesizer

SUMMARY_SYNTH = ("wer_synth", "wer_synth_mean", "wer_ref", "wer_ref_mean", "mcd_mean", "abs_log_dur_ratio_mean",
                 "log_dur_ratio_mean", "rtf", "rtf_model", "synth_audio_seconds", "ref_audio_seconds")
ROW_SYNTH = ("wer_synth", "wer_ref", "mcd", "log_dur", "rtf", "rtf_model", "synth_seconds", "ref_seconds",
             "compute_seconds", "model_seconds")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """An untrained tiny model saved in the training checkpoint format (G_<step>.pth dict)."""
    torch.manual_seed(0)
    hps = make_tiny_hps()
    model = FlowMatchingSynthesizer(len(text.symbols), hps)
    state = model.state_dict()
    path = tmp_path_factory.mktemp("ckpt") / "G_0.pth"
    save_checkpoint(path, {"model": state, "ema": state, "step": 0, "epoch": 0,
                           "config": hps.to_dict(), "n_vocab": len(text.symbols)})
    return path


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_end_to_end_with_tiny_checkpoint(tiny_ckpt, lj_metadata, tmp_path, capsys):
    """Catches a score computed on the wrong audio or text: every row's WER, MCD, duration ratio and RTF are
    recomputed from the saved WAV, the recording and the transcripts."""
    out, audio_dir = tmp_path / "report.json", tmp_path / "wavs"
    rc = evaluate.main(["--checkpoint", str(tiny_ckpt), "--filelist", str(lj_metadata), "--limit", "2",
                        "--steps", "2", "--temperature", "0.5", "--output", str(out), "--save-audio", str(audio_dir)])
    assert rc == 0
    report = json.loads(out.read_text())
    s = report["summary"]
    assert s["utterances"] == s["scored"] == 2 and s["failed"] == 0
    for key in SUMMARY_SYNTH:
        assert _finite(s[key]), (key, s[key])
    assert s["nfe"] == 2 and s["rtf"] >= s["rtf_model"] > 0 and s["mcd_mean"] > 0
    rows = report["utterances"]
    assert [r["id"] for r in rows] == ["LJ001-0001", "LJ001-0002"]
    for r in rows:
        for key in ROW_SYNTH:
            assert _finite(r[key]), (r["id"], key, r[key])
        assert r["wer_synth"] == metrics.wer(r["text"], r["synth_hyp"]) and r["words"] > 0
        assert r["wer_ref"] == metrics.wer(r["text"], r["ref_hyp"])
        assert r["rtf"] == pytest.approx(r["compute_seconds"] / r["synth_seconds"])
        synth, sr = sf.read(str(audio_dir / f"{r['id']}.wav"), dtype="float32")
        ref, ref_sr = sf.read(str(lj_metadata.parent / "wavs" / f"{r['id']}.wav"), dtype="float32")
        assert sr == 22050 and len(synth) / sr == pytest.approx(r["synth_seconds"], abs=1e-6)
        assert ref_sr == 22050 and len(ref) / ref_sr == pytest.approx(r["ref_seconds"], abs=1e-6)
        speech = metrics.speech_seconds(synth, sr) / metrics.speech_seconds(ref, ref_sr)
        assert r["log_dur"] == pytest.approx(math.log(speech), abs=1e-4)  # the saved WAV is 16-bit
        assert r["mcd"] == pytest.approx(metrics.mcd_dtw(ref, ref_sr, synth, sr), abs=1e-3)
        assert r["mcd"] > 2.0 > metrics.mcd_dtw(ref, ref_sr, ref, ref_sr)  # noise from an untrained model
    # the corpus WER weighs utterances by their words
    words = [r["words"] for r in rows]
    assert s["wer_ref"] == pytest.approx(sum(r["wer_ref"] * w for r, w in zip(rows, words)) / sum(words))
    settings = report["settings"]
    assert settings["steps"] == 2 and settings["method"] == "euler" and settings["sway_coef"] == -1.0
    assert settings["temperature"] == 0.5
    assert settings["hardware"]["torch_threads"] == 1 and settings["vocoder_included"] is True
    table = capsys.readouterr().out
    assert "LJ001-0002" in table and "ALL" in table


def test_ground_truth_only_needs_no_checkpoint(lj_metadata, tmp_path):
    out = tmp_path / "gt.json"
    assert evaluate.main(["--filelist", str(lj_metadata), "--limit", "2", "--ground-truth-only",
                          "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    s = report["summary"]
    assert s["scored"] == 2 and "wer_synth" not in s
    assert 0.0 <= s["wer_ref"] <= 0.35  # measured 0.10 (3 errors in 29 words)
    assert all("synth_hyp" not in r for r in report["utterances"])


def test_clear_errors(lj_filelist, lj_metadata, tmp_path, capsys):
    # a preprocessed filelist holds phonemes, not words: refuse it with a hint
    assert evaluate.main(["--filelist", str(lj_filelist), "--ground-truth-only"]) == 2
    assert "phonemized" in capsys.readouterr().err
    assert evaluate.main(["--filelist", str(lj_metadata)]) == 2
    assert "--checkpoint is required" in capsys.readouterr().err
    assert evaluate.main(["--filelist", str(lj_metadata), "--checkpoint", str(tmp_path / "missing.pth")]) == 2
    assert "missing.pth" in capsys.readouterr().err
    assert evaluate.main(["--filelist", str(lj_metadata), "--checkpoint", "x.pth", "--temperature", "-1"]) == 2
    assert "temperature" in capsys.readouterr().err
    assert evaluate.main(["--filelist", str(tmp_path / "nope.csv"), "--ground-truth-only"]) == 2
    assert "not found" in capsys.readouterr().err


def test_failed_utterance_is_reported_not_fatal(lj_metadata, tmp_path):
    """A missing wav is reported in its row; the other utterances are still scored."""
    lines = lj_metadata.read_text().splitlines()[:2]
    (tmp_path / "wavs").mkdir()
    (tmp_path / "wavs" / "LJ001-0002.wav").write_bytes((lj_metadata.parent / "wavs" / "LJ001-0002.wav").read_bytes())
    meta = tmp_path / "metadata.csv"
    meta.write_text("\n".join(lines) + "\n")  # LJ001-0001.wav is not in tmp_path/wavs
    out = tmp_path / "r.json"
    assert evaluate.main(["--filelist", str(meta), "--ground-truth-only", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["summary"]["scored"] == 1 and report["summary"]["failed"] == 1
    assert "not found" in report["utterances"][0]["error"]
