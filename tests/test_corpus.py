"""The synthetic sentence list (corpus/make_sentences.py) and the Festival corpus builder (build_corpus.py)."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from voices import build_corpus
from conftest import ROOT
from evaluation.metrics import normalize_for_wer

CORPUS = ROOT / "voices" / "corpus"


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_sentences", CORPUS / "make_sentences.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows():
    return build_corpus.read_sentences(CORPUS / "sentences.txt")


def test_committed_sentences_are_what_the_generator_makes():
    gen = _load_generator()
    lines, test_ids = gen.make_lines()
    assert (CORPUS / "sentences.txt").read_text().splitlines() == lines
    assert (CORPUS / "test_ids.txt").read_text().split() == test_ids


def test_sentence_list_is_varied(rows):
    texts = [t for _, t in rows]
    words = [len(t.split()) for t in texts]
    assert len(rows) >= 2000 and len({t.lower() for t in texts}) == len(texts)
    assert sum(2 <= n <= 4 for n in words) >= 100 and sum(n >= 25 for n in words) >= 100
    assert sum(t.endswith(("?", '?"')) for t in texts) >= 100 and sum("!" in t for t in texts) >= 100
    for pattern in (r"\$\d", r"\d%", r"\d:\d\d", r"\d(st|nd|rd|th)\b", r"\b(January|May|October) \d", r"\d,\d{3}"):
        assert sum(bool(re.search(pattern, t)) for t in texts) >= 10, pattern
    for t in texts:  # every sentence says something and ends like a sentence
        assert normalize_for_wer(t) and t[-1] in '.!?"', t


def test_held_out_split(rows):
    ids = [i for i, _ in rows]
    test_ids = (CORPUS / "test_ids.txt").read_text().split()
    assert len(test_ids) == 100 and len(set(test_ids)) == 100 and set(test_ids) <= set(ids)
    assert all(int(i[3:]) % 30 == 0 for i in test_ids)


def test_read_sentences_rejects_bad_lines(tmp_path):
    bad = tmp_path / "s.txt"
    bad.write_text("a|Hello.\na|Again.\n")
    with pytest.raises(ValueError, match="duplicate id 'a'"):
        build_corpus.read_sentences(bad)
    bad.write_text("no separator here\n")
    with pytest.raises(ValueError, match=":1: expected 'id|text'"):
        build_corpus.read_sentences(bad)


def test_festival_script_escapes_quotes(tmp_path):
    script = build_corpus.festival_script("v", [('He said "hi" \\ bye.', tmp_path / "a.wav")])
    assert script.splitlines()[0] == "(voice_v)"
    assert '(Utterance Text "He said \\"hi\\" \\\\ bye.")' in script


def test_trim_light_keeps_padding():
    sr = 22050
    tone = 0.5 * np.sin(np.arange(sr) * 2 * np.pi * 220 / sr).astype(np.float32)
    wav = np.concatenate([np.zeros(sr), tone, np.zeros(sr)]).astype(np.float32)
    out = build_corpus.trim_light(wav, sr, top_db=40, pad_s=0.1)
    assert abs(len(out) - (sr + 2 * int(0.1 * sr))) <= 2 * int(0.01 * sr)


def test_valid_wav(tmp_path):
    good, wrong_rate = tmp_path / "g.wav", tmp_path / "r.wav"
    sf.write(str(good), np.zeros(2205, np.float32), 22050, subtype="PCM_16")
    sf.write(str(wrong_rate), np.zeros(1600, np.float32), 16000, subtype="PCM_16")
    (tmp_path / "t.wav").write_bytes(b"RIFF")
    assert build_corpus.valid_wav(good) == pytest.approx(0.1)
    assert build_corpus.valid_wav(wrong_rate) is None and build_corpus.valid_wav(tmp_path / "t.wav") is None
    assert build_corpus.valid_wav(tmp_path / "missing.wav") is None


@pytest.mark.skipif(shutil.which("festival") is None or build_corpus.check_voice(build_corpus.DEFAULT_VOICE),
                    reason="needs festival + festvox-us-slt-hts (apt-get install -y festival festvox-us-slt-hts)")
def test_build_small_corpus_and_resume(tmp_path):
    sentences = tmp_path / "s.txt"
    sentences.write_text('x1|It cost $5 on May 3.\nx2|"Hello," she said.\nx3|...\n')
    (tmp_path / "test_ids.txt").write_text("x2\n")
    out = tmp_path / "ds"
    summary = build_corpus.build(sentences, out, jobs=1, test_ids=tmp_path / "test_ids.txt", log=lambda m: None)
    assert summary["written"] == 2 and summary["failed"] == 1 and "x3" in summary["failures"]
    assert (out / "metadata.csv").read_text().splitlines() == [
        "x1|It cost $5 on May 3.|It cost five dollars on May third.", 'x2|"Hello," she said.|"Hello," she said.']
    assert (out / "metadata_test.csv").read_text().startswith("x2|")
    info = sf.info(str(out / "wavs" / "x1.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16") and info.duration > 0.5
    again = build_corpus.build(sentences, out, jobs=1, log=lambda m: None)
    assert again["skipped_existing"] == 2 and again["synthesized_now"] == 0


def test_missing_festival_message_says_how_to_install(monkeypatch):
    monkeypatch.setattr(build_corpus.shutil, "which", lambda name: None)
    assert "apt-get update && apt-get install -y festival festvox-us-slt-hts" in build_corpus.check_voice("x")


@pytest.mark.skipif(shutil.which("festival") is None, reason="needs festival")
def test_cli_explains_how_to_install_a_missing_voice(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "voices.build_corpus", "--voice", "no_such_voice",
                           "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    assert "no_such_voice" in proc.stderr and "apt-get install -y festival festvox-us-slt-hts" in proc.stderr


def test_test_only_builds_the_held_out_sentences_beyond_the_limit():
    rows = [(f"s{i}", f"Sentence {i}.") for i in range(10)]
    assert build_corpus.sentences_to_build(rows, {"s2", "s8"}, 5, test_only=False) == rows[:5]
    assert build_corpus.sentences_to_build(rows, {"s2", "s8"}, None, test_only=True) == [rows[2], rows[8]]
    with pytest.raises(SystemExit):  # nothing to build: said, not an empty corpus
        build_corpus.main(["--test-only", "--test-ids", "/nonexistent/ids.txt"])


def test_short_voice_names_resolve_to_engines():
    assert build_corpus.resolve_voice("awb") == "flite:awb"
    assert build_corpus.resolve_voice("kal") == "kal_diphone"
    assert build_corpus.resolve_voice("cmu_us_slt_arctic_hts") == "cmu_us_slt_arctic_hts"
    assert build_corpus.resolve_voice("ita_pc") == "pc_diphone"


def test_a_missing_festival_voice_names_its_package(monkeypatch):
    monkeypatch.setattr(build_corpus.shutil, "which", lambda name: None)
    assert "apt-get install -y festival festvox-itapc16k" in build_corpus.check_voice("pc_diphone")
    for engine in build_corpus.ALL_VOICES.values():
        assert engine.startswith(build_corpus.FLITE_PREFIX) or engine in build_corpus.FESTIVAL_PACKAGES


def test_missing_flite_message_says_how_to_install(monkeypatch):
    monkeypatch.setattr(build_corpus.shutil, "which", lambda name: None)
    assert "apt-get install -y flite" in build_corpus.check_voice("flite:awb")


@pytest.mark.skipif(shutil.which("flite") is None, reason="needs flite (apt-get install -y flite)")
def test_build_with_flite_voice(tmp_path):
    sentences = tmp_path / "s.txt"
    sentences.write_text("f1|-5 degrees at 7:45 tonight.\nf2|Nobody answered.\n")
    out = tmp_path / "ds"
    summary = build_corpus.build(sentences, out, jobs=1, test_ids=None, voice="flite:awb", log=lambda m: None)
    assert summary["written"] == 2 and summary["failed"] == 0
    info = sf.info(str(out / "wavs" / "f1.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16") and info.duration > 0.5
    assert "no voice 'nope'" in build_corpus.check_voice("flite:nope")


@pytest.mark.skipif(shutil.which("flite") is None, reason="needs flite (apt-get install -y flite)")
def test_setf_reads_the_same_sentence_higher(tmp_path):
    """--setf passes flite's intonation features: int_f0_target_mean raises the pitch (measured by pyin)."""
    from evaluation.prosody import measure

    sentences = tmp_path / "s.txt"
    sentences.write_text("p1|Where did Clara leave the sewing box?\n")
    pitch = {}
    for name, setf in (("plain", ()), ("high", ("int_f0_target_mean=200",))):
        build_corpus.build(sentences, tmp_path / name, jobs=1, test_ids=None, voice="flite:awb", log=lambda m: None,
                           setf=setf)
        pitch[name] = measure(*sf.read(str(tmp_path / name / "wavs" / "p1.wav"))).f0_median_st
    assert pitch["high"] - pitch["plain"] > 3.0
    assert json.loads((tmp_path / "high" / "build_info.json").read_text())["setf"] == ["int_f0_target_mean=200"]
    assert build_corpus.main(["--sentences", str(sentences), "--out-dir", str(tmp_path / "x"), "--voice", "slt_hts",
                              "--setf", "int_f0_target_mean=200"]) == 2
    assert build_corpus.main(["--sentences", str(sentences), "--out-dir", str(tmp_path / "x"), "--voice", "awb",
                              "--setf", "no value"]) == 2
