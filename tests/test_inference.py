"""Inference: the TorchSynthesizer API and the inference_flow_matching.py command line.

The command line is driven by subprocess, as a user runs it, against a checkpoint from a real tiny
training run (tests/fixtures_checkpoint.py). Oracles: output length == predicted frames * hop; a long
text == its sentences synthesized alone joined with fixed pauses; a batch == its items one by one;
every bad input ends with one `error:` line, a non-zero exit and no output file.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

try:
    from fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401  (pytest fixture)
except ImportError:  # tests/ imported as a package
    from tests.fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from inference import synthesizer as synthesize  # noqa: E402
import text  # noqa: E402
from config import ConfigError  # noqa: E402
from sampling import SamplingConfig  # noqa: E402
from inference.synthesizer import (  # noqa: E402
    TorchSynthesizer,
    check_output_path,
    join_with_pauses,
    save_wav,
    split_sentences,
)

CLI = ROOT / "inference_flow_matching.py"
SENTENCE = "Printing, in the only sense with which we are at present concerned."
PARAGRAPH = ("Printing, in the only sense with which we are at present concerned, differs from most arts. "
             "It was invented in the fifteenth century! Was it really? The Chinese took impressions from "
             "wood blocks; they did so for centuries.")


def run_cli(*args: str, cwd: Path = ROOT, script: Path = CLI, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def read_wav(path: Path):
    info = sf.info(str(path))
    audio, sr = sf.read(str(path), dtype="float32")
    return audio, sr, info


# ----------------------------------------------------------------------------------------------------
# Pure helpers (no model)
# ----------------------------------------------------------------------------------------------------

def test_split_sentences_at_punctuation():
    assert split_sentences("Hello world. How are you? Fine! One; two: three.") == [
        "Hello world.", "How are you?", "Fine!", "One;", "two:", "three."]


def test_split_sentences_keeps_abbreviations_initials_and_decimals_together():
    assert split_sentences("Mr. Smith paid 3.50 dollars. J. R. Tolkien wrote it.") == [
        "Mr. Smith paid 3.50 dollars.", "J. R. Tolkien wrote it."]


def test_split_sentences_drops_only_unspeakable_fragments():
    assert split_sentences("Hello ... !!! world.") == ["Hello ...", "world."]
    assert split_sentences("!!! ???") == []
    assert split_sentences("   ") == []


def test_split_long_comma_run_loses_no_word():
    text = ", ".join(f"word{i}" for i in range(120)) + "."
    pieces = split_sentences(text, max_chars=100)
    assert len(pieces) > 1
    assert all(len(p) <= 100 for p in pieces)
    assert " ".join(pieces).split() == text.split()  # nothing truncated, order kept


def test_split_long_sentence_without_commas_at_spaces():
    text = " ".join(["alpha"] * 100)
    pieces = split_sentences(text, max_chars=80)
    assert all(len(p) <= 80 for p in pieces) and " ".join(pieces) == text


def test_join_with_pauses_lengths():
    waves = [np.ones(100, np.float32), np.ones(50, np.float32), np.ones(7, np.float32)]
    out = join_with_pauses(waves, 1000, pause_seconds=0.2)
    assert len(out) == 157 + 2 * 200
    assert np.all(out[100:300] == 0) and np.all(out[350:550] == 0)


def test_save_wav_writes_pcm16(tmp_path):
    audio = np.sin(np.linspace(0, 100, 4000)).astype(np.float32) * 0.5
    save_wav(tmp_path / "a.wav", audio, 16000)
    back, sr, info = read_wav(tmp_path / "a.wav")
    assert (sr, info.subtype, info.channels, len(back)) == (16000, "PCM_16", 1, 4000)
    assert np.abs(back - audio).max() < 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]


def test_save_wav_failure_leaves_no_file(tmp_path, monkeypatch):
    def broken_write(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sf.SoundFile, "write", broken_write)  # the header is already out: a partial file
    with pytest.raises(OSError):
        save_wav(tmp_path / "a.wav", np.zeros(100, np.float32), 16000)
    assert list(tmp_path.iterdir()) == []  # neither a half-written target nor a stray temp file


def test_check_output_path(tmp_path):
    assert check_output_path(tmp_path / "x.wav") == tmp_path / "x.wav"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "x.wav")
    with pytest.raises(IsADirectoryError):
        check_output_path(tmp_path)
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError):
        check_output_path(tmp_path / "f" / "x.wav")
    assert list(tmp_path.iterdir()) == [tmp_path / "f"]  # the write probe cleaned up after itself


def test_an_output_equal_to_another_output_is_refused_before_either_exists(tmp_path):
    """`--alignments a.wav --output a.wav` once wrote JSON into the WAV: two outputs naming one new file."""
    with pytest.raises(ValueError, match="one of the inputs or outputs"):
        check_output_path(tmp_path / "a.wav", inputs=[tmp_path / "sub" / ".." / "a.wav"])
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0), "positive integer"), (dict(steps=-2), "positive integer"),
    (dict(steps=2.5), "positive integer"), (dict(steps=10000), "cap of 1000"),
    (dict(method="rk4"), "unknown ODE method"),
    (dict(sway_coef=-2.0), "sway"), (dict(sway_coef=1.5), "sway"), (dict(sway_coef=float("nan")), "sway"),
    (dict(duration_scale=0.0), "duration scale"), (dict(temperature=-1.0), "temperature")])
def test_sampling_config_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingConfig(**kwargs)


# ----------------------------------------------------------------------------------------------------
# API on a real tiny checkpoint
# ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tts(tiny_checkpoint) -> TorchSynthesizer:
    return TorchSynthesizer.from_checkpoint(tiny_checkpoint)


def expected_samples(tts: TorchSynthesizer, sentence: str, duration_scale: float = 1.0) -> int:
    """Oracle: frames from the duration predictor for this sentence alone, times hop."""
    (ids,) = tts.prepare(sentence)
    x = torch.tensor([ids], device=tts.device)
    acoustic = tts.model.acoustic
    with torch.no_grad():
        h, _, x_mask, g = acoustic._encode(x, torch.tensor([len(ids)], device=tts.device), None)
        frames = int(acoustic.predict_durations(h, x_mask, g, duration_scale).sum())
    return frames * tts.hop_length


def test_api_sentence_length_and_info(tts, tiny_checkpoint, device):
    tts = tts if device == "cpu" else TorchSynthesizer.from_checkpoint(tiny_checkpoint, device=device)
    audio, sr, info = tts.synthesize(SENTENCE, sampling=SamplingConfig(steps=4))
    assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
    assert sr == tts.hps.data.sampling_rate == 22050
    assert len(audio) == expected_samples(tts, SENTENCE)
    assert info["nfe"] == 4 and info["sentences"] == 1
    assert info["audio_seconds"] == pytest.approx(len(audio) / sr)
    assert info["rtf"] == pytest.approx((info["acoustic_seconds"] + info["vocoder_seconds"]) / info["audio_seconds"])
    _, _, info_mid = tts.synthesize(SENTENCE, sampling=SamplingConfig(steps=4, method="midpoint"))
    assert info_mid["nfe"] == 8


def test_api_duration_scale_stretches(tts):
    base = expected_samples(tts, SENTENCE)
    audio, _, _ = tts.synthesize(SENTENCE, sampling=SamplingConfig(steps=2, duration_scale=2.0))
    assert len(audio) == expected_samples(tts, SENTENCE, 2.0)
    n_tokens = len(tts.prepare(SENTENCE)[0])
    # round(2w) lies within one frame of 2 round(w) per token (both at least 1)
    assert abs(len(audio) - 2 * base) <= n_tokens * tts.hop_length


def test_api_paragraph_is_sentences_joined_with_pauses(tts):
    sentences = split_sentences(PARAGRAPH)
    assert len(sentences) == 5
    audio, sr, info = tts.synthesize(PARAGRAPH, sampling=SamplingConfig(steps=3))
    parts = [expected_samples(tts, s) for s in sentences]
    pause = int(round(synthesize.SENTENCE_PAUSE_SECONDS * sr))
    assert len(audio) == sum(parts) + pause * (len(parts) - 1)
    assert info["sentences"] == 5
    start = parts[0]
    assert np.all(audio[start:start + pause] == 0)


def test_api_batch_equals_one_by_one(tts):
    """Padding invariance: sentences in one padded batch sound exactly as synthesized one at a time."""
    batched, _, _ = tts.synthesize(PARAGRAPH, sampling=SamplingConfig(steps=2), seed=7)
    one = TorchSynthesizer(tts.model, tts.hps, tts.n_vocab, batch_size=1)
    single, _, _ = one.synthesize(PARAGRAPH, sampling=SamplingConfig(steps=2), seed=7)
    assert batched.shape == single.shape
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_api_seed_reproducible(tts):
    a, _, _ = tts.synthesize(SENTENCE, sampling=SamplingConfig(steps=2), seed=3)
    b, _, _ = tts.synthesize(SENTENCE, sampling=SamplingConfig(steps=2), seed=3)
    c, _, _ = tts.synthesize(SENTENCE, sampling=SamplingConfig(steps=2), seed=4)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


@pytest.mark.parametrize("text", ["", "   \n", "!!! ???", "\U0001F600\U0001F389"])
def test_api_rejects_unspeakable(tts, text):
    with pytest.raises(ValueError, match="empty|nothing"):
        tts.synthesize(text)


def test_api_single_speaker_rejects_speaker_id(tts):
    with pytest.raises(ValueError, match="single speaker"):
        tts.synthesize(SENTENCE, speaker=3)


def test_api_multi_speaker(tiny_checkpoint):
    """Speaker ids reach both models; out-of-range ids are refused before any work."""
    import config as config_lib
    from models import FlowMatchingSynthesizer

    raw = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)["config"]
    raw["data"]["n_speakers"], raw["model"]["gin_channels"] = 3, 8
    hps = config_lib.from_dict(raw)
    torch.manual_seed(0)
    model = FlowMatchingSynthesizer(len(text.symbols), hps)
    with torch.no_grad():
        model.acoustic.emb_g.weight.mul_(10)  # make the speakers clearly different
    multi = TorchSynthesizer(model.eval(), hps, len(text.symbols))
    a, _, _ = multi.synthesize(SENTENCE, sampling=SamplingConfig(steps=2), speaker=0)
    b, _, _ = multi.synthesize(SENTENCE, sampling=SamplingConfig(steps=2), speaker=2)
    c, _, _ = multi.synthesize(SENTENCE, sampling=SamplingConfig(steps=2))  # default speaker 0
    np.testing.assert_array_equal(a, c)
    assert a.shape != b.shape or np.abs(a - b).max() > 1e-4
    for bad in (3, -1, 1.5):
        with pytest.raises(ValueError, match="speaker"):
            multi.synthesize(SENTENCE, speaker=bad)


def test_speaker_names(tiny_checkpoint, tmp_path):
    """Names stored in the config: speaker="b" is speaker 1; unknown names list the known ones; the CLI
    lists them and takes a name."""
    import config as config_lib
    from models import FlowMatchingSynthesizer

    raw = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)["config"]
    raw["data"].update(n_speakers=3, speaker_names=["awb", "slt", "kal"])
    raw["model"]["gin_channels"] = 8
    hps = config_lib.from_dict(raw)
    torch.manual_seed(0)
    model = FlowMatchingSynthesizer(len(text.symbols), hps)
    multi = TorchSynthesizer(model.eval(), hps, len(text.symbols))
    by_name, _, _ = multi.synthesize(SENTENCE, SamplingConfig(steps=2), speaker="slt")
    by_id, _, _ = multi.synthesize(SENTENCE, SamplingConfig(steps=2), speaker=1)
    np.testing.assert_array_equal(by_name, by_id)
    with pytest.raises(ValueError, match="unknown speaker 'ked'; known speakers: awb, slt, kal"):
        multi.synthesize(SENTENCE, speaker="ked")
    with pytest.raises(config_lib.ConfigError, match="distinct names"):
        config_lib.from_dict({**raw, "data": {**raw["data"], "speaker_names": ["a", "a", "b"]}})
    voice = tmp_path / "multi.pth"
    torch.save({"model": model.state_dict(), "config": hps.to_dict(), "n_vocab": len(text.symbols)}, voice)
    proc = run_cli("--checkpoint", str(voice), "--list-speakers")
    assert proc.returncode == 0 and proc.stdout.splitlines()[:3] == ["0\tawb\t(default)", "1\tslt", "2\tkal"], \
        proc.stderr
    proc = run_cli("--checkpoint", str(voice), "--text", "Hi.", "--speaker", "kal", "--steps", "1",
                   "--output", str(tmp_path / "kal.wav"))
    assert proc.returncode == 0 and (tmp_path / "kal.wav").is_file(), proc.stderr
    proc = run_cli("--checkpoint", str(voice), "--text", "Hi.", "--speaker", "nobody", "--output", str(tmp_path / "x.wav"))
    assert proc.returncode == 2 and "known speakers: awb, slt, kal" in proc.stderr and not (tmp_path / "x.wav").exists()


def test_api_raw_weights_differ_from_ema(tiny_checkpoint, tts):
    raw = TorchSynthesizer.from_checkpoint(tiny_checkpoint, use_ema=False)
    a, _, _ = tts.synthesize(SENTENCE, sampling=SamplingConfig(steps=2))
    b, _, _ = raw.synthesize(SENTENCE, sampling=SamplingConfig(steps=2))
    assert a.shape != b.shape or np.abs(a - b).max() > 1e-6


def _config_with(tiny_checkpoint, tmp_path, section, key, value) -> Path:
    cfg = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)["config"]
    cfg[section][key] = value
    path = tmp_path / f"{key}.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.mark.parametrize("section, key, value, field", [
    ("data", "n_mel_channels", 64, "n_mel_channels"), ("data", "sampling_rate", 16000, "sampling_rate")])
def test_api_config_must_fit_checkpoint(tiny_checkpoint, tmp_path, section, key, value, field):
    path = _config_with(tiny_checkpoint, tmp_path, section, key, value)
    with pytest.raises(ConfigError, match=field):
        TorchSynthesizer.from_checkpoint(tiny_checkpoint, config=path)
    # the checkpoint's own config, given explicitly, fits
    own = _config_with(tiny_checkpoint, tmp_path, "train", "batch_size", 3)
    assert TorchSynthesizer.from_checkpoint(tiny_checkpoint, config=own).sample_rate == 22050


# ----------------------------------------------------------------------------------------------------
# Command line: successful runs
# ----------------------------------------------------------------------------------------------------

def test_cli_sentence(tiny_checkpoint, tts, tmp_path):
    out = tmp_path / "hello.wav"
    proc = run_cli("--checkpoint", str(tiny_checkpoint), "--text", SENTENCE, "--output", str(out), "--steps", "3",
                   "--seed", "5", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    audio, sr, info = read_wav(out)
    assert (sr, info.subtype, info.channels) == (22050, "PCM_16", 1)
    assert len(audio) == expected_samples(tts, SENTENCE)
    api, _, _ = tts.synthesize(SENTENCE, sampling=SamplingConfig(steps=3), seed=5)  # the CLI is the API plus a file
    np.testing.assert_allclose(audio, np.clip(api, -1, 1), atol=3.0 / 32768)
    for word in ("NFE 3", "RTF", "acoustic", "vocoder", "threads 1"):
        assert word in proc.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["hello.wav"]  # no temp file left next to it


def test_cli_text_file(tiny_checkpoint, tts, tmp_path):
    lines = ["Hello world.", "", "The Chinese took impressions from wood blocks.", "Short."]
    text_file = tmp_path / "lines.txt"
    text_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out_dir = tmp_path / "out" / "nested"  # --output-dir is created
    proc = run_cli("--checkpoint", str(tiny_checkpoint), "--text-file", str(text_file), "--output-dir",
                   str(out_dir), "--steps", "2")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["0001.wav", "0003.wav", "0004.wav"]  # line numbers
    for n in (1, 3, 4):
        audio, sr, _ = read_wav(out_dir / f"{n:04d}.wav")
        assert sr == 22050 and len(audio) == expected_samples(tts, lines[n - 1])


def test_cli_paragraph(tiny_checkpoint, tts, tmp_path):
    out = tmp_path / "long.wav"
    proc = run_cli("--checkpoint", str(tiny_checkpoint), "--text", PARAGRAPH, "--output", str(out), "--steps", "2")
    assert proc.returncode == 0, proc.stderr
    audio, sr, _ = read_wav(out)
    parts = [expected_samples(tts, s) for s in split_sentences(PARAGRAPH)]
    assert len(parts) == 5
    assert len(audio) == sum(parts) + 4 * int(round(0.2 * sr))
    assert "5 sentence(s)" in proc.stdout


def test_cli_unknown_characters_warn_and_continue(tiny_checkpoint, tts, tmp_path):
    out = tmp_path / "u.wav"
    proc = run_cli("--checkpoint", str(tiny_checkpoint), "--text", "Hello \u2603 world.", "--output", str(out),
                   "--steps", "2", "--method", "midpoint", "--sway-coef", "0")
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stderr and "\u2603" in proc.stderr and "Traceback" not in proc.stderr
    assert "NFE 4" in proc.stdout  # midpoint: two evaluations per step
    audio, _, _ = read_wav(out)
    assert len(audio) == expected_samples(tts, "Hello world.")


# ----------------------------------------------------------------------------------------------------
# Command line: bad input. Each case is its own process, as a user runs it (two at a time, to save
# time); rarer mistakes go through main(argv) in-process.
# ----------------------------------------------------------------------------------------------------

def _bad_inputs(ckpt: Path, work: Path) -> dict:
    """Files for the bad-input cases; returns named paths."""
    paths = {"out": work / "out.wav", "garbage": work / "garbage.pth", "bigvocab": work / "bigvocab.pth",
             "own": work / "own.json", "mels": work / "mels.json", "rate": work / "rate.json",
             "lines": work / "lines.txt", "nodemo": work / "nodemo" / "speak.py"}
    paths["garbage"].write_bytes(b"not a checkpoint at all" * 10)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    cfg = state["config"]
    paths["own"].write_text(json.dumps(cfg))
    for name, key, value in (("mels", "n_mel_channels", 64), ("rate", "sampling_rate", 16000)):
        changed = json.loads(json.dumps(cfg))
        changed["data"][key] = value
        paths[name].write_text(json.dumps(changed))
    for key in ("model", "ema"):  # a model trained with 5 more symbols than this code has
        emb = state[key]["acoustic.encoder.emb.weight"]
        state[key]["acoustic.encoder.emb.weight"] = torch.cat([emb, emb[:5]])
    state["n_vocab"] += 5
    torch.save(state, paths["bigvocab"])
    paths["lines"].write_text("Hello there.\n!!! ???\n", encoding="utf-8")
    paths["nodemo"].parent.mkdir()
    paths["nodemo"].write_text(  # the CLI in a checkout whose default pretrained/multispeaker.pth is missing
        "import sys\nfrom pathlib import Path\nfrom training import voice_file\n"
        "voice_file.DEFAULT_VOICE = Path(__file__).parent / 'pretrained' / 'multispeaker.pth'\n"
        "import inference_flow_matching\nsys.exit(inference_flow_matching.main())\n")
    return paths


def _subprocess_cases(ckpt: Path, p: dict, work: Path) -> dict:
    """name -> (argv, words the single error line must contain, paths that must not appear)."""
    ck, o, out = ["--checkpoint", str(ckpt)], ["--output", str(p["out"])], p["out"]
    if os.geteuid() != 0:
        readonly = work / "readonly"
        readonly.mkdir()
        readonly.chmod(0o555)
    else:  # root ignores directory permissions; /sys refuses new files even to root
        readonly = Path("/sys")
    return {
        "empty text": (ck + ["--text", ""] + o, ["empty"], [out]),
        "whitespace text": (ck + ["--text", "  \t "] + o, ["empty"], [out]),
        "punctuation only": (ck + ["--text", "!!! ???"] + o, ["nothing speakable"], [out]),
        "emoji only": (ck + ["--text", "\U0001F600 \U0001F389"] + o, ["nothing speakable"], [out]),
        "missing checkpoint": (["--checkpoint", str(work / "nope.pth"), "--text", "Hi."] + o,
                               ["not found", "nope.pth"], [out]),
        "unreadable checkpoint": (["--checkpoint", str(p["garbage"]), "--text", "Hi."] + o, ["corrupt"], [out]),
        "no default checkpoint": (["--text", "Hi."] + o, ["--checkpoint", "multispeaker.pth", "train"], [out]),
        "vocabulary mismatch": (["--checkpoint", str(p["bigvocab"]), "--config", str(p["own"]), "--text", "Hi."] + o,
                                ["vocabulary size", "216", "211"], [out]),
        "n_mels mismatch": (ck + ["--config", str(p["mels"]), "--text", "Hi."] + o,
                            ["n_mel_channels", "64", "80"], [out]),
        "sample rate mismatch": (ck + ["--config", str(p["rate"]), "--text", "Hi."] + o,
                                 ["sampling_rate", "16000", "22050"], [out]),
        "zero steps": (ck + ["--text", "Hi.", "--steps", "0"] + o, ["steps", "positive"], [out]),
        "negative steps": (ck + ["--text", "Hi.", "--steps", "-4"] + o, ["steps", "positive"], [out]),
        "unknown method": (ck + ["--text", "Hi.", "--method", "rk4"] + o, ["rk4", "euler", "midpoint"], [out]),
        "folding sway": (ck + ["--text", "Hi.", "--sway-coef", "-2"] + o, ["sway", "monotonic"], [out]),
        "output dir missing": (ck + ["--text", "Hi.", "--output", str(work / "no" / "x.wav")],
                               ["does not exist"], [work / "no"]),
        "output dir read-only": (ck + ["--text", "Hi.", "--output", str(readonly / "x.wav")],
                                 ["cannot write"], [readonly / "x.wav"]),
    }


SUBPROCESS_CASES = ["empty text", "whitespace text", "punctuation only", "emoji only", "missing checkpoint",
                    "unreadable checkpoint", "no default checkpoint", "vocabulary mismatch", "n_mels mismatch",
                    "sample rate mismatch", "zero steps", "negative steps", "unknown method", "folding sway",
                    "output dir missing", "output dir read-only"]


@pytest.fixture(scope="module")
def bad_env(tiny_checkpoint, tmp_path_factory):
    work = tmp_path_factory.mktemp("bad_input")
    paths = _bad_inputs(tiny_checkpoint, work)
    yield work, paths
    if (work / "readonly").exists():
        (work / "readonly").chmod(0o755)


@pytest.fixture(scope="module")
def bad_results(tiny_checkpoint, bad_env):
    work, paths = bad_env
    cases = _subprocess_cases(tiny_checkpoint, paths, work)
    assert sorted(cases) == sorted(SUBPROCESS_CASES)

    def one(item):
        name, (argv, _, _) = item
        script = paths["nodemo"] if name == "no default checkpoint" else CLI
        return name, run_cli(*argv, cwd=work, script=script)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(pool.map(one, cases.items()))
    return work, cases, results


def _assert_one_error(returncode: int, stderr: str, words) -> None:
    assert returncode != 0
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for word in words:
        assert word in errors[0], errors[0]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_cli_bad_input(bad_results, name):
    work, cases, results = bad_results
    _, words, absent = cases[name]
    proc = results[name]
    _assert_one_error(proc.returncode, proc.stderr, words)
    for path in absent:
        assert not path.exists(), f"{path} was written"
    assert not [p for p in work.iterdir() if p.suffix in (".tmp", ".wav")], "half-written output left behind"


@pytest.mark.parametrize("name, argv, words", [
    ("no text", [], ["--text"]),
    ("checkpoint is a folder", ["--checkpoint", "{work}", "--text", "Hi."], ["not found"]),
    ("missing config", ["--config", "{work}/none.json", "--text", "Hi."], ["config file not found"]),
    ("output is a folder", ["--text", "Hi.", "--output", "{work}"], ["directory"]),
    ("bad line in text file", ["--text-file", "{lines}", "--output-dir", "{work}/tf"], ["line 2", "nothing speakable"]),
    ("speaker on single-speaker model", ["--text", "Hi.", "--speaker", "2"], ["single speaker"]),
    ("cuda without gpu", ["--text", "Hi.", "--device", "cuda"], ["CUDA"]),
    ("zero threads", ["--text", "Hi.", "--threads", "0"], ["threads"]),
    ("negative guidance", ["--text", "Hi.", "--cfg-scale", "-1"], ["guidance scale"]),
    ("reference without its words", ["--text", "Hi.", "--ref-audio", "{work}/ref.wav"], ["--ref-text"]),
    ("reference on a voice without prompting", ["--text", "Hi.", "--ref-audio", "{clip}", "--ref-text", "Hello."],
     ["prompt context"]),
])
def test_cli_main_rare_mistakes(tiny_checkpoint, bad_env, capsys, name, argv, words):
    if name == "cuda without gpu" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    import inference_flow_matching

    work, paths = bad_env
    argv = [a.format(work=work, lines=paths["lines"], clip=ROOT / "tests" / "data" / "wavs" / "LJ001-0001.wav")
            for a in argv]
    if "--checkpoint" not in argv:
        argv = ["--checkpoint", str(tiny_checkpoint)] + argv
    out = work / "rare.wav"
    if "--output" not in argv and "--text-file" not in argv:
        argv += ["--output", str(out)]
    threads = torch.get_num_threads()
    try:
        code = inference_flow_matching.main(argv)
    finally:
        torch.set_num_threads(threads)
    _assert_one_error(code, capsys.readouterr().err, words)
    assert not out.exists() and not (work / "tf").exists()


# ----------------------------------------------------------------------------------------------------
# test_flow_matching.py (self-check + speed table script)
# ----------------------------------------------------------------------------------------------------

def test_speed_table_states_its_setup_and_every_row(tiny_checkpoint, capsys):
    """Catches a wrong NFE, ms/NFE or RTF column in test_flow_matching.py's speed table, timed on the tiny
    checkpoint at 5/10/20 steps (--no-checks: its self-checks are modules of this suite)."""
    import test_flow_matching as script

    assert script.main(["--checkpoint", str(tiny_checkpoint), "--no-checks", "--runs", "1", "--threads", "1",
                        "--audio-seconds", "1.0"]) == 0
    out = capsys.readouterr().out
    for stated in ("hardware:", "1 threads", "dtype fp32", "EMA weights", "warm-up", "median of 1 runs",
                   "vocoder included", "1.00 s (86 frames"):
        assert stated in out, stated
    assert "Running" not in out
    rows = {(r[1], int(r[0])): r for r in map(str.split, out.splitlines()) if len(r) == 10 and r[0].isdigit()}
    assert {key: int(r[2]) for key, r in rows.items()} == {  # the NFE column
        ("euler", 5): 5, ("euler", 10): 10, ("euler", 20): 20, ("midpoint", 5): 10, ("midpoint", 10): 20,
        ("midpoint", 20): 40}
    seconds = 86 * 256 / 22050
    for r in rows.values():
        nfe, (ms, ac, voc, total, rtf_ac, rtf_voc, rtf) = int(r[2]), map(float, r[3:])
        assert ac > 0 and voc > 0 and total == pytest.approx(ac + voc, abs=2e-3)  # one run: the median is it
        assert ms == pytest.approx(1000 * ac / nfe, abs=1)
        for part, ratio in ((ac, rtf_ac), (voc, rtf_voc), (total, rtf)):
            assert ratio == pytest.approx(part / seconds, rel=0.02, abs=2e-3)


def test_self_checks_gate_the_speed_table(monkeypatch, capsys, tmp_path):
    """Catches a failing self-check that does not fail test_flow_matching.py: exit 1, the failed modules
    named, no speed table; and run_checks reads pytest's exit status."""
    import test_flow_matching as script

    run_checks, ran = script.run_checks, []
    monkeypatch.setattr(script, "run_checks", lambda modules: ran.append(modules) or len(ran) == 1)
    assert script.main(["--config", str(ROOT / "configs" / "tiny.json"), "--steps", "1"]) == 1
    out, err = capsys.readouterr()
    assert ran == [modules for _, modules in script.CHECK_SUITES] and all((ROOT / m).is_file() for ms in ran for m in ms)
    assert "All Flow Matching core tests passed!" in out and "Speed" not in out
    assert "checks FAILED in tests/test_synthesizer.py, tests/test_vocoder.py" in err
    (tmp_path / "test_passes.py").write_text("def test_one():\n    assert True\n")
    (tmp_path / "test_fails.py").write_text("def test_one():\n    assert False\n")
    assert run_checks([str(tmp_path / "test_passes.py")]) is True
    assert run_checks([str(tmp_path / "test_fails.py")]) is False
