"""The bad-input sweep of issue 37 outside the server: each test reproduces one defect of the tools (a file
written over, another run's data kept, a traceback instead of one line) and checks the one clear `error:` line
(status 2) and that nothing was written or changed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

try:
    from fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401  (pytest fixture)
    from test_bad_input import one_error_line, run, snapshot
except ImportError:  # tests/ imported as a package
    from tests.fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401
    from tests.test_bad_input import one_error_line, run, snapshot

from conftest import make_tiny_hps, write_mb_istft_vocoder  # noqa: E402

DATA_DIR = ROOT / "tests" / "data"


def error_lines(err: str) -> list:
    return [line for line in err.splitlines() if line.startswith("error:")]


def refused_in_process(main, argv, capsys, *needles: str) -> str:
    """main(argv) refused with status 2 (returned or raised, as argparse does) and one `error:` line."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(error_lines(err)) == 1, err
    for needle in needles:
        assert needle in error_lines(err)[0], err
    return error_lines(err)[0]


def other_voice(checkpoint: Path, out: Path) -> Path:
    """A copy of `checkpoint` with other weights: another voice of the same shape."""
    state = torch.load(checkpoint, weights_only=True)
    for key, value in state["ema"].items():
        if value.is_floating_point():
            state["ema"][key] = value + 0.01
    state["step"] = 99
    torch.save(state, out)
    return out


# -- widen_vocoder ----------------------------------------------------------------------------------


def test_widen_vocoder_refuses_to_replace_its_own_source(tmp_path, capsys):
    from training.widen_vocoder import main

    source = write_mb_istft_vocoder(tmp_path / "voc.pth")
    before = source.read_bytes()
    refused_in_process(main, [str(source), str(source), "--channels", "384"], capsys, "is one of the inputs")
    assert source.read_bytes() == before


@pytest.mark.parametrize("case, needle", [("353", "divisible by"), ("100000", "at most"), ("text", "not a checkpoint")])
def test_widen_vocoder_bad_width_or_source_is_one_line(tmp_path, capsys, case, needle):
    from training.widen_vocoder import main

    source = write_mb_istft_vocoder(tmp_path / "voc.pth")
    if case == "text":
        source = tmp_path / "notes.pth"
        source.write_text("not a vocoder\n")
    channels = "384" if case == "text" else case
    refused_in_process(main, [str(source), str(tmp_path / "wide.pth"), "--channels", channels], capsys, needle)
    assert not (tmp_path / "wide.pth").exists()


# -- export_onnx ------------------------------------------------------------------------------------


def test_export_onnx_refuses_another_voices_folder_and_never_lists_stale_graphs(tiny_checkpoint, tmp_path, capsys):
    from inference.export_onnx import main

    out = tmp_path / "onnx"
    assert main([str(tiny_checkpoint), str(out), "--int8"]) == 0
    before = snapshot(out)
    capsys.readouterr()
    other = other_voice(tiny_checkpoint, tmp_path / "other.pth")
    refused_in_process(main, [str(other), str(out)], capsys, "choose an empty folder")
    assert snapshot(out) == before  # the first voice's export is intact
    # The same voice again without --int8: its old int8 graphs go, and are not listed as written.
    assert main([str(tiny_checkpoint), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "int8" not in printed and not list(out.glob("*_int8.onnx")), printed
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine\n")
    refused_in_process(main, [str(tiny_checkpoint), str(tmp_path / "notes")], capsys, "choose an empty folder")
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["todo.txt"]


def test_export_onnx_refuses_guidance_for_a_voice_trained_without_it(tiny_checkpoint, tmp_path, capsys):
    from inference.export_onnx import main

    refused_in_process(main, [str(tiny_checkpoint), str(tmp_path / "onnx"), "--cfg-scale", "5"], capsys,
                       "trained without condition dropout")
    assert not (tmp_path / "onnx").exists()


# -- clone_voice ------------------------------------------------------------------------------------


def tiny_multi_speaker_base(path: Path) -> Path:
    """A tiny untrained three-speaker voice file to adapt."""
    from models import FlowMatchingSynthesizer
    import text

    hps = make_tiny_hps(n_speakers=3, gin_channels=8, speaker_names=["ann", "bob", "cy"],
                        speaker_conditioned_vocoder=False)
    torch.manual_seed(0)
    torch.save({"ema": FlowMatchingSynthesizer(len(text.symbols), hps).state_dict(), "config": hps.to_dict()}, path)
    return path


def dataset_copy(folder: Path) -> Path:
    """An LJSpeech-style folder (metadata.csv + wavs/) of two of the test clips under another name."""
    (folder / "wavs").mkdir(parents=True)
    lines = (DATA_DIR / "metadata.csv").read_text(encoding="utf-8").splitlines()[:2]
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for line in lines:
        shutil.copy(DATA_DIR / "wavs" / f"{line.split('|')[0]}.wav", folder / "wavs")
    return folder


QUICK_CLONE = ["--steps", "2", "--vocoder-steps", "0", "--adapt", "conditioning", "--device", "cpu"]


def test_clone_voice_refuses_the_run_folder_of_another_clone(tmp_path, capsys):
    from voices import clone_voice

    base = tiny_multi_speaker_base(tmp_path / "base.pth")
    run_dir = tmp_path / "run"
    assert clone_voice.main(["--dataset", str(DATA_DIR), "--base", str(base), "-m", str(run_dir), "--name", "dee",
                             *QUICK_CLONE]) == 0
    before = snapshot(run_dir)
    capsys.readouterr()
    other = dataset_copy(tmp_path / "eve")
    refused_in_process(clone_voice.main, ["--dataset", str(other), "--base", str(base), "-m", str(run_dir),
                                          *QUICK_CLONE], capsys, str(run_dir), "choose another -m")
    assert snapshot(run_dir) == before  # the earlier voice is not overwritten with another dataset's name
    # The same dataset and name resume it.
    assert clone_voice.main(["--dataset", str(DATA_DIR), "--base", str(base), "-m", str(run_dir), "--name", "dee",
                             *QUICK_CLONE]) == 0


def test_clone_voice_refuses_another_models_run_folder_before_writing(tiny_checkpoint, tmp_path, capsys):
    from voices import clone_voice

    base = tiny_multi_speaker_base(tmp_path / "base.pth")
    run_dir = tmp_path / "trained"
    run_dir.mkdir()
    shutil.copy(tiny_checkpoint, run_dir / tiny_checkpoint.name)
    shutil.copy(tiny_checkpoint.parent / "config.json", run_dir / "config.json")
    before = snapshot(run_dir)
    refused_in_process(clone_voice.main, ["--dataset", str(DATA_DIR), "--base", str(base), "-m", str(run_dir),
                                          *QUICK_CLONE], capsys, "choose another -m")
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("minutes", ["nan", "inf", "0", "-1"])
def test_clone_voice_refuses_minutes_that_are_not_a_positive_number(tmp_path, capsys, minutes):
    from voices import clone_voice

    refused_in_process(clone_voice.main, ["--dataset", str(DATA_DIR), "--base", str(tmp_path / "none.pth"),
                                          "-m", str(tmp_path / "run"), "--minutes", minutes], capsys, "--minutes")
    assert not (tmp_path / "run").exists()


def test_clone_voice_defaults_are_the_measured_recipe_on_the_shipped_voice():
    from training.voice_file import DEFAULT_VOICE
    from voices import clone_voice

    args = clone_voice.parse_args(["--dataset", "d", "-m", "m"])
    assert Path(args.base) == DEFAULT_VOICE  # no --base needed
    assert (args.adapt, args.steps, args.vocoder_steps, args.minutes) == ("acoustic", 600, 1800, 5.0)
    assert "python -m voices.clone_voice --dataset /data/my_voice -m logs/my_voice\n" in \
        (ROOT / "docs" / "voices.md").read_text(encoding="utf-8")


# -- the speaking command line -----------------------------------------------------------------------


def test_alignments_path_equal_to_the_output_is_refused(tiny_checkpoint, tmp_path):
    out = tmp_path / "a.wav"
    proc = run("inference_flow_matching.py", "--checkpoint", str(tiny_checkpoint), "--text", "Hello.",
               "--output", str(out), "--alignments", str(out))
    one_error_line(proc, "--alignments")
    assert not out.exists()


def test_unwritable_alignments_path_names_the_alignments_flag(tiny_checkpoint, tmp_path):
    proc = run("inference_flow_matching.py", "--checkpoint", str(tiny_checkpoint), "--text", "Hello.",
               "--output", str(tmp_path / "a.wav"), "--alignments", str(tmp_path / "no" / "such" / "a.json"))
    line = one_error_line(proc, "--alignments")
    assert "--output" not in line
    assert not (tmp_path / "a.wav").exists()


def test_random_bytes_on_stdin_are_refused_as_not_text(tmp_path):
    noise = bytes(range(256)) * 12  # 3072 bytes of every value: not UTF-8 text
    out = tmp_path / "babble.wav"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "inference_flow_matching.py"), "--text", "-", "--output",
                           str(out)], input=noise, capture_output=True, timeout=300, env=env)
    proc = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    one_error_line(proc, "does not look like text", "not UTF-8")
    assert not out.exists() and "warning" not in proc.stderr


def test_text_mostly_of_control_characters_is_refused():
    from runtime.pipeline import check_is_text

    with pytest.raises(ValueError, match="does not look like text"):
        check_is_text("".join(chr(c) for c in range(1, 32)) * 20 + "hello")
    with pytest.raises(ValueError, match="does not look like text"):
        check_is_text("Hello \udcff\udcfe\udc80 there \udcc3\udc28 ok \udcff\udcff\udcff\udcff\udcff\udcff")
    check_is_text("Plain text, tab\tand one NUL\x00 are fine. Ünïcödé and 中文 too.")


def test_unknown_characters_give_one_warning_not_one_per_sentence(tiny_checkpoint, tmp_path):
    words = " ".join(["Hello \u2603 there."] * 12)  # a snowman (no spoken form) in each of 12 sentences
    proc = run("inference_flow_matching.py", "--checkpoint", str(tiny_checkpoint), "--text", words,
               "--output", str(tmp_path / "a.wav"), "--steps", "1")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "U+2603" in warnings[0] and "12 times" in warnings[0], proc.stderr


# -- teacher_forced_mels ----------------------------------------------------------------------------


def test_teacher_forced_mels_refuses_a_folder_written_by_another_model(tiny_checkpoint, tmp_path, capsys):
    from training import teacher_forced_mels

    filelist = tmp_path / "one.txt"
    filelist.write_text((DATA_DIR / "filelist.txt").read_text().splitlines()[0].replace(
        "wavs/", f"{DATA_DIR}/wavs/") + "\n")
    out = tmp_path / "mels"
    assert teacher_forced_mels.main(["-m", str(tiny_checkpoint), "--out-dir", str(out), "--filelist", str(filelist),
                                     "--steps", "1"]) == 0
    before = snapshot(out)
    capsys.readouterr()
    other = other_voice(tiny_checkpoint, tmp_path / "other.pth")
    refused_in_process(teacher_forced_mels.main, ["-m", str(other), "--out-dir", str(out), "--filelist",
                                                  str(filelist), "--steps", "1"], capsys, "another model")
    assert snapshot(out) == before


def test_teacher_forced_mels_skips_a_transcript_too_long_for_its_clip(tiny_checkpoint, tmp_path, capsys):
    from training import teacher_forced_mels

    lines = (DATA_DIR / "filelist.txt").read_text().splitlines()
    wav0, text0 = lines[0].split("|", 1)
    wav1 = lines[1].split("|", 1)[0]
    filelist = tmp_path / "two.txt"
    filelist.write_text(f"{DATA_DIR / wav0}|{text0}\n{DATA_DIR / wav1}|{' '.join([text0] * 40)}\n")
    out = tmp_path / "mels"
    assert teacher_forced_mels.main(["-m", str(tiny_checkpoint), "--out-dir", str(out), "--filelist", str(filelist),
                                     "--steps", "1"]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.glob("*.npy")) == [Path(wav0).stem + ".npy"]
    assert "LJ001-0002" in captured.err and "mel frames" in captured.err, captured


def test_teacher_forced_mels_batch_size_zero_is_one_line(tiny_checkpoint, tmp_path, capsys):
    from training import teacher_forced_mels

    refused_in_process(teacher_forced_mels.main, ["-m", str(tiny_checkpoint), "--out-dir", str(tmp_path / "m"),
                                                  "--batch-size", "0"], capsys, "--batch-size")
    assert not (tmp_path / "m").exists()


# -- build_voices -----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", ["0", "-1"])
def test_build_voices_refuses_a_non_positive_ljspeech_test_count(tmp_path, capsys, count):
    from voices import build_voices

    voices = tmp_path / "voices"
    voices.mkdir()
    refused_in_process(build_voices.main, ["--voices-dir", str(voices), "--out-dir", str(tmp_path / "out"),
                                           "--held-out", "x", "--ljspeech", str(DATA_DIR), "--ljspeech-test", count],
                       capsys, "--ljspeech-test")
    assert not (tmp_path / "out").exists()


# -- ONNX voice folders -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    from inference.export_onnx import main

    out = tmp_path_factory.mktemp("onnx") / "tiny"
    assert main([str(tiny_checkpoint), str(out)]) == 0
    return out


def _break(folder: Path, case: str) -> str:
    """Damage one file of an export folder; returns the damaged file's name."""
    info = json.loads((folder / "voice.json").read_text())
    if case == "truncated graph":
        path = folder / "velocity.onnx"
        path.write_bytes(path.read_bytes()[:3000])
    elif case == "empty graph":
        (folder / "vocoder.onnx").write_bytes(b"")
        return "vocoder.onnx"
    elif case == "list json":
        (folder / "voice.json").write_text(json.dumps([info]))
    elif case == "no mel_mean":
        del info["mel_mean"]
        (folder / "voice.json").write_text(json.dumps(info))
    elif case == "negative sample rate":
        info["sample_rate"] = -5
        (folder / "voice.json").write_text(json.dumps(info))
    elif case == "invalid json":
        (folder / "voice.json").write_text("{not json")
    return "velocity.onnx" if case == "truncated graph" else "voice.json"


BROKEN = ["truncated graph", "empty graph", "list json", "no mel_mean", "negative sample rate", "invalid json"]


@pytest.mark.parametrize("case", BROKEN)
def test_broken_onnx_folder_is_one_error_naming_the_file(exported, tmp_path, case):
    from runtime.onnx_synthesizer import OnnxSynthesizer, OnnxVoiceError

    folder = tmp_path / "voice"
    shutil.copytree(exported, folder)
    name = _break(folder, case)
    with pytest.raises(OnnxVoiceError) as caught:
        OnnxSynthesizer(folder)
    assert str(folder / name) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("case", ["truncated graph", "no mel_mean"])
def test_flowtts_with_a_broken_onnx_folder_is_one_line(exported, tmp_path, case):
    folder = tmp_path / "voice"
    shutil.copytree(exported, folder)
    name = _break(folder, case)
    proc = run("runtime.cli", "--voice", str(folder), "--text", "Hello.", "--output", str(tmp_path / "o.wav"))
    one_error_line(proc, str(folder / name))
    proc = run("inference_flow_matching.py", "--onnx", str(folder), "--text", "Hello.", "--output",
               str(tmp_path / "o.wav"))
    one_error_line(proc, str(folder / name))
    assert not (tmp_path / "o.wav").exists()
