"""The bad-input sweep: text, flags, checkpoints, datasets, configs and output paths a new user might give.

Each case asserts one clear `error: ...` line (no traceback) and that nothing was written or changed,
or, where the input is usable, that it is handled well (a warning, a note).
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

try:
    from fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401  (pytest fixture)
except ImportError:  # tests/ imported as a package
    from tests.fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401

import text  # noqa: E402
from training.checkpoint import CheckpointError  # noqa: E402
from inference.synthesizer import save_wav  # noqa: E402
from text.numbers import normalize_numbers  # noqa: E402
from training.voice_file import load_voice  # noqa: E402

DATA_DIR = ROOT / "tests" / "data"


def run(script: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run a root script (`name.py`) or a tool in a folder (`folder.module`, as `python -m`)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    command = [str(ROOT / script)] if script.endswith(".py") else ["-m", script]
    return subprocess.run([sys.executable, *command, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The process failed with exactly one `error:` line on stderr (no traceback) holding every needle."""
    assert proc.returncode == 2, proc.stdout + proc.stderr  # every tool: one `error:` line, status 2
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- text ------------------------------------------------------------------------------------------


def test_control_characters_are_replaced_not_truncating_the_clause():
    clean = ["english_cleaners2"]
    with pytest.warns(text.UnknownSymbolWarning, match="U\\+0000"):
        with_nul = text.clean_texts(["Take the red one\x00 and the blue one home."], clean)[0]
    plain = text.clean_texts(["Take the red one and the blue one home."], clean)[0]
    assert with_nul.split() == plain.split()  # before the fix everything after the NUL was lost
    with pytest.warns(text.UnknownSymbolWarning, match="U\\+001B"):
        assert "home" in text.clean_texts(["Go\x1b[0m home."], ["english_cleaners"])[0]


@pytest.mark.parametrize("raw, spoken", [
    ("Meet me at 3:45pm.", "three forty-five p m."), ("at 3:45 pm", "three forty-five p m"),
    ("at 7:00 a.m. sharp", "seven a m. sharp"), ("by 7pm", "seven p m"), ("the 10:30 train", "ten thirty"),
    ("at 7:45", "seven forty-five")])
def test_clock_times_with_am_pm(raw, spoken):
    assert spoken in normalize_numbers(raw)


# -- flags -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, needle", [
    (["--steps", "10000"], "cap of 1000"), (["--device", "tpu"], "device 'tpu'"),
    (["--length-scale", "0"], "duration scale"), (["--noise-scale", "-1"], "temperature")])
def test_bad_flags_fail_before_any_work(tmp_path, flags, needle):
    out = tmp_path / "out.wav"
    proc = run("inference_flow_matching.py", "--text", "Hello.", "--output", str(out), *flags)
    one_error_line(proc, needle)
    assert not out.exists()


def test_piper_style_aliases_reach_the_sampling_config():
    import inference_flow_matching as cli
    from sampling import from_args

    args = cli.build_parser().parse_args(["--text", "x", "--length-scale", "1.3", "--noise-scale", "0.5"])
    sampling = from_args(args)
    assert sampling.duration_scale == 1.3 and sampling.temperature == 0.5


# -- checkpoints -----------------------------------------------------------------------------------


def test_config_asking_for_a_huge_model_is_refused_before_building_it(tiny_checkpoint, tmp_path):
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["config"]["model"].update(flow_d_model=32768, flow_nhead=8, flow_dim_feedforward=131072,
                                    flow_num_layers=48)  # ~400 GB of fp32 weights if it were built
    huge = tmp_path / "huge.pth"
    torch.save(state, huge)
    with pytest.raises(CheckpointError, match="does not fit the model built from the config.*shape mismatch"):
        load_voice(huge)


def test_unsafe_pickle_is_refused_in_one_line(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    unsafe = tmp_path / "unsafe.pth"
    unsafe.write_bytes(pickle.dumps({"model": Payload()}))
    proc = run("inference.export_voice", str(unsafe), str(tmp_path / "voice.pth"))
    one_error_line(proc, "unsafe", str(unsafe))
    assert "pwned" not in proc.stdout and not (tmp_path / "voice.pth").exists()
    proc = run("inference_flow_matching.py", "--checkpoint", str(unsafe), "--text", "Hi.",
               "--output", str(tmp_path / "o.wav"))
    one_error_line(proc, "unsafe")


def test_resume_from_only_a_truncated_checkpoint_is_refused_cleanly(tiny_checkpoint, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(tiny_checkpoint.parent / "config.json", run_dir / "config.json")
    (run_dir / "G_7.pth").write_bytes(tiny_checkpoint.read_bytes()[:5000])
    proc = run("train_flow_matching.py", "-m", str(run_dir))
    one_error_line(proc, "Refusing to restart from step 0")
    assert not list(run_dir.glob("events.out.tfevents*"))  # no stray TensorBoard file for a refused run
    assert (run_dir / "G_7.pth").stat().st_size == 5000
    assert "Traceback" in (run_dir / "train.log").read_text()  # the details are kept for a bug report


# -- datasets and configs --------------------------------------------------------------------------


def test_preprocess_refuses_to_overwrite_its_input_filelist(tmp_path):
    filelist = tmp_path / "train.txt"
    shutil.copy(DATA_DIR / "filelist.txt", filelist)
    before = filelist.read_bytes()
    proc = run("preprocess.py", "--filelists", str(filelist), "--out-dir", str(tmp_path), cwd=DATA_DIR)
    assert proc.returncode != 0 and "would overwrite the input" in proc.stderr and "Traceback" not in proc.stderr
    assert filelist.read_bytes() == before and not (tmp_path / "val.txt").exists()


def test_preprocess_notes_a_heavily_clipped_clip(tmp_path):
    import preprocess
    from config import HParams

    wav, sr = sf.read(str(DATA_DIR / "wavs" / "LJ001-0001.wav"), dtype="float32")
    loud = np.clip(wav * 40, -1, 1)
    path = tmp_path / "loud.wav"
    sf.write(str(path), loud, sr, subtype="FLOAT")
    entry = preprocess.Entry(preprocess.Utterance(str(path), "text"))
    assert preprocess.check_audio(entry, HParams().data) is not None  # kept ...
    assert any(note.startswith("clipped:") and "% of samples at full scale" in note for note in entry.notes)


def test_train_run_folder_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    proc = run("train_flow_matching.py", "-c", str(ROOT / "configs" / "tiny.json"), "-m", str(tmp_path / "afile"))
    one_error_line(proc, "is a file, not a run folder")
    assert (tmp_path / "afile").read_text() == "not a folder"


# -- output paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["checkpoint", "config", "text_file"])
def test_inference_never_writes_over_an_input(tiny_checkpoint, tmp_path, target):
    ckpt = tmp_path / "G_2.pth"
    shutil.copy(tiny_checkpoint, ckpt)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(torch.load(ckpt, weights_only=True)["config"]))
    lines = tmp_path / "0001.wav"  # a text file whose name is the first output's name
    lines.write_text("Hello there.\n")
    before = snapshot(tmp_path)
    output = {"checkpoint": ["--text", "Hello.", "--output", str(ckpt)],
              "config": ["--text", "Hello.", "--output", str(config)],
              "text_file": ["--text-file", str(lines), "--output-dir", str(tmp_path)]}[target]
    proc = run("inference_flow_matching.py", "--checkpoint", str(ckpt), "--config", str(config), *output)
    one_error_line(proc, "is one of the inputs")
    assert snapshot(tmp_path) == before


def test_evaluate_checks_its_report_path_before_the_run(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    proc = run("evaluation.evaluate", "--filelist", str(DATA_DIR / "metadata.csv"), "--ground-truth-only",
               "--output", str(blocker / "report.json"))
    one_error_line(proc)
    assert "[1/" not in proc.stdout  # failed before transcribing anything


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_wav_permissions_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        save_wav(tmp_path / "a.wav", np.zeros(100, np.float32), 22050)
    finally:
        os.umask(old)
    assert (tmp_path / "a.wav").stat().st_mode & 0o777 == mode


def test_no_warning_for_plain_text():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text.clean_texts(["Plain text, tab\tand newline\n are fine."], ["english_cleaners"])
