"""Streaming: chunks equal the whole-utterance output, the first long sentence is split at its clauses,
and the CLI reads stdin and writes raw PCM to stdout as it speaks."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

try:
    from fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401  (pytest fixture)
except ImportError:  # tests/ imported as a package
    from tests.fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401

from runtime import streaming  # noqa: E402
from sampling import SamplingConfig  # noqa: E402
from inference.synthesizer import TorchSynthesizer  # noqa: E402

PARAGRAPH = ("Hello there. Printing, in the only sense with which we are at present concerned, differs from "
             "most if not from all the arts and crafts represented in the Exhibition. Good night.")
TOLERANCE = 1e-4  # joined chunks vs whole utterance (measured: ~1e-5 on the demo voice)


@pytest.fixture(scope="module")
def tts(tiny_checkpoint):
    return TorchSynthesizer.from_checkpoint(tiny_checkpoint)


def test_windows_cover_every_frame_once_with_context():
    for n in (1, 5, 24, 25, 100, 333):
        windows = streaming.vocoder_windows(n)
        assert [w[0] for w in windows][0] == 0 and windows[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))  # contiguous, no overlap
        assert windows[0][1] - windows[0][0] <= streaming.FIRST_CHUNK_FRAMES
        for start, end, left, right in windows:
            assert left == max(0, start - streaming.CONTEXT_FRAMES) and right == min(n, end + streaming.CONTEXT_FRAMES)


def test_stream_equals_whole_utterance(tts):
    sampling = SamplingConfig(steps=3)
    whole, sr, info = tts.synthesize(PARAGRAPH, sampling, seed=5)
    stats = {}
    chunks = list(tts.stream(PARAGRAPH, sampling, seed=5, stats=stats))
    assert len(chunks) > 3  # sentences and vocoder chunks, not one piece
    joined = np.concatenate(chunks)
    assert joined.shape == whole.shape
    assert np.abs(joined - whole).max() < TOLERANCE
    assert stats["sentences"] == info["sentences"] == 3 and stats["nfe"] == 3
    assert stats["audio_seconds"] == pytest.approx(len(whole) / sr)


def test_first_long_sentence_is_split_at_clauses():
    sentences = ["Printing, in the only sense with which we are at present concerned, differs from most.", "Two."]
    assert streaming.split_first_clause(sentences) == [
        "Printing,", "in the only sense with which we are at present concerned,", "differs from most.", "Two."]
    assert streaming.split_first_clause(["Short one, really.", "Next."]) == ["Short one, really.", "Next."]


def test_quick_start_gives_a_shorter_first_chunk(tts):
    """Catches quick start doing nothing: its first chunk is strictly shorter than the plain stream's."""
    text = "Oh, printing in the only sense with which we are at present concerned differs from most. Good night."
    sampling = SamplingConfig(steps=2)
    quick = next(iter(tts.stream(text, sampling)))  # "Oh," alone: fewer frames than a first vocoder chunk
    plain = next(iter(tts.stream(text, sampling, quick_start=False)))
    assert 0 < len(quick) < len(plain) <= streaming.FIRST_CHUNK_FRAMES * tts.hop_length
    with pytest.raises(ValueError, match="empty"):
        tts.stream("   ")


def run_cli(*args, stdin=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "inference_flow_matching.py"), *args], input=stdin,
                          capture_output=True, timeout=300, env=env)


def test_cli_stdin_to_raw_pcm_on_stdout(tiny_checkpoint, tmp_path):
    text = "Hello there. Good night."
    proc = run_cli("--checkpoint", str(tiny_checkpoint), "--text", "-", "--output", "-", "--steps", "3",
                   "--seed", "5", stdin=text.encode())
    assert proc.returncode == 0, proc.stderr.decode()
    pcm = np.frombuffer(proc.stdout, dtype="<i2").astype(np.float32) / 32767
    wav = tmp_path / "same.wav"
    proc = run_cli("--checkpoint", str(tiny_checkpoint), "--text", text, "--output", str(wav), "--steps", "3",
                   "--seed", "5")
    assert proc.returncode == 0, proc.stderr.decode()
    audio, sr = sf.read(str(wav), dtype="float32")
    assert sr == 22050 and len(pcm) == len(audio)  # short first sentence: the same audio both ways
    assert np.abs(pcm - audio).max() <= 2.0 / 32767
    assert b"NFE 10" in run_cli("--checkpoint", str(tiny_checkpoint), "--text", "Hi.", "--output", "-").stderr
    bad = run_cli("--checkpoint", str(tiny_checkpoint), "--text-file", str(wav), "--output", "-")
    assert bad.returncode == 2 and b"goes with --text" in bad.stderr
