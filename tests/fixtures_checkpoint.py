"""A real (tiny) training checkpoint for the inference tests.

`train_tiny_checkpoint` runs `train_flow_matching.py` with configs/tiny.json on the tests/data clips for
a couple of steps, exactly as a user would, and returns the G_<step>.pth it wrote. The `tiny_checkpoint`
fixture caches it in pytest's session temp folder, so every test module that imports the fixture
shares one training run.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "tests" / "data"
TRAIN_STEPS = 2


def train_tiny_checkpoint(workdir: Path, steps: int = TRAIN_STEPS, timeout: float = 600) -> Path:
    """Train configs/tiny.json on tests/data for `steps` steps in `workdir`; returns G_<steps>.pth."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((ROOT / "configs" / "tiny.json").read_text())
    filelist = str(DATA_DIR / "filelist.txt")  # absolute: the test may run from any folder
    cfg["data"]["training_files"] = cfg["data"]["validation_files"] = filelist
    cfg["train"]["max_steps"] = steps
    cfg_path = workdir / "tiny.json"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    run_dir = workdir / "run"
    proc = subprocess.run([sys.executable, str(ROOT / "train_flow_matching.py"), "-c", str(cfg_path),
                           "-m", str(run_dir), "--device", "cpu"],
                          cwd=workdir, capture_output=True, text=True, timeout=timeout)
    ckpt = run_dir / f"G_{steps}.pth"
    if proc.returncode != 0 or not ckpt.is_file():
        raise RuntimeError(f"tiny training failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return ckpt


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """Path of a G_<step>.pth from a real tiny training run (trained once per test session)."""
    workdir = tmp_path_factory.getbasetemp() / "tiny_checkpoint"
    ckpt = workdir / "run" / f"G_{TRAIN_STEPS}.pth"
    if ckpt.is_file():  # another module already trained it in this session
        return ckpt
    return train_tiny_checkpoint(workdir)
