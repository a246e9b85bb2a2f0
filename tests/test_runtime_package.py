"""The torch-free runtime installs on its own: in a fresh virtual environment, `pip install .` (pyproject.toml +
distribution/build_runtime.py) brings no torch and no generic top-level module, and its `flowtts` command speaks with a folder that
`inference.export_onnx` wrote."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import soundfile as sf

try:
    from fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401  (pytest fixture)
except ImportError:  # tests/ imported as a package
    from tests.fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401

from inference import export_onnx  # noqa: E402

GENERIC_NAMES = {"text", "ode", "sampling", "audio", "atomic", "runtime", "pipeline", "streaming", "models", "config",
                 "commons", "cli"}


@pytest.fixture(scope="module")
def runtime_env(tmp_path_factory) -> Path:
    """A fresh venv (no system site-packages) with only the runtime package installed; -> its bin folder."""
    env = tmp_path_factory.mktemp("runtime_venv")
    venv.EnvBuilder(with_pip=True).create(env)
    bin_dir = env / "bin"
    proc = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(ROOT)], capture_output=True,
                          text=True, timeout=900, cwd=env, env={k: v for k, v in os.environ.items()
                                                                if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return bin_dir


def test_runtime_package_speaks_without_torch(runtime_env, tiny_checkpoint, tmp_path):
    voice = tmp_path / "voice"
    assert export_onnx.main([str(tiny_checkpoint), str(voice)]) == 0
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    listed = subprocess.run([str(runtime_env / "python"), "-m", "pip", "list", "--format", "json"],
                            capture_output=True, text=True, check=True, env=clean_env)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "flowtts-runtime" in names and "torch" not in names, sorted(names)
    site = subprocess.run([str(runtime_env / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, env=clean_env).stdout.strip()
    installed = {p.stem for p in Path(site).iterdir() if p.suffix in ("", ".py") and not p.name.startswith("_")}
    assert not installed & GENERIC_NAMES, installed & GENERIC_NAMES
    out = tmp_path / "hello.wav"
    proc = subprocess.run([str(runtime_env / "flowtts"), "--voice", str(voice), "--text", "Hello world. How are you?",
                           "--output", str(out), "--steps", "2"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=clean_env)
    assert proc.returncode == 0, proc.stderr
    audio, rate = sf.read(str(out))
    assert rate == 22050 and len(audio) > 0.5 * rate and abs(audio).max() > 0
    bad = subprocess.run([str(runtime_env / "flowtts"), "--voice", str(tmp_path / "missing"), "--text", "Hi."],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, env=clean_env)
    assert bad.returncode == 2 and [line for line in bad.stderr.splitlines() if line.startswith("error:")], bad.stderr
    assert "Traceback" not in bad.stderr
    # the same command also runs from this checkout, without installing anything
    here = subprocess.run([sys.executable, "-m", "runtime.cli", "--voice", str(voice), "--list-speakers"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert here.returncode == 0 and "single speaker" in here.stdout, here.stderr
