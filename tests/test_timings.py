"""Word and phoneme timings: monotonic, covering the audio, one entry per word of the text."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

try:
    from fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401  (pytest fixture)
except ImportError:  # tests/ imported as a package
    from tests.fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401

from runtime import word_timings as timings  # noqa: E402
from sampling import SamplingConfig  # noqa: E402
from inference.synthesizer import TorchSynthesizer  # noqa: E402

TEXT = "The repair bill came to $5,340, which was more than we expected. Please call Stella from the store!"


def check(t: dict, text: str, audio_seconds: float) -> None:
    words, phonemes = t["words"], t["phonemes"]
    assert [w["word"] for w in words] == text.split()  # one entry per word of the text, in order
    for items in (words, phonemes):
        assert all(0 <= x["start"] <= x["end"] <= audio_seconds + 1e-6 for x in items)
        assert all(a["end"] <= b["start"] + 1e-6 for a, b in zip(items, items[1:]))  # monotonic, no overlap
    assert phonemes[0]["start"] == 0.0 and phonemes[-1]["end"] > audio_seconds - 0.3  # covers the audio
    assert all(w["end"] > w["start"] for w in words)


@pytest.fixture(scope="module")
def tts(tiny_checkpoint):
    return TorchSynthesizer.from_checkpoint(tiny_checkpoint)


def test_api_timings(tts):
    audio, sr, info = tts.synthesize(TEXT, SamplingConfig(steps=2), timings=True)
    check(info["timings"], TEXT, len(audio) / sr)


def test_token_frames_give_blanks_to_the_next_character():
    assert timings.token_frames([1, 2, 3, 4, 5], 2, add_blank=True) == [(0.0, 3.0), (3.0, 10.0)]
    assert timings.token_frames([2, 3], 2, add_blank=False) == [(0.0, 2.0), (2.0, 5.0)]


def test_merged_phoneme_words_are_shared():
    """espeak writes 'from the' as one word: the alignment gives both words a share of it."""
    groups = timings._align([4, 6, 5], [4, 4, 2, 5])  # second phoneme word covers two normalized words
    assert groups == [[0], [1, 2], [3]]


def test_cli_alignments(tiny_checkpoint, tmp_path):
    out, align = tmp_path / "o.wav", tmp_path / "a.json"
    proc = subprocess.run([sys.executable, str(ROOT / "inference_flow_matching.py"), "--checkpoint",
                           str(tiny_checkpoint), "--text", TEXT, "--output", str(out), "--alignments", str(align),
                           "--steps", "2"], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(align.read_text())
    check(report, TEXT, report["audio_seconds"])
    assert "alignments: 18 words" in proc.stdout
