"""The Python API example in docs/inference.md runs as written (with the test checkpoint's path).

The example is the first ```python block after the `<!-- api-example -->` marker. Its line
`CHECKPOINT = "..."` is replaced by the path of a checkpoint from a real tiny training run; the code is
then executed in a temporary folder and its results are checked.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import soundfile as sf

try:
    from fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401  (pytest fixture)
except ImportError:  # tests/ imported as a package
    from tests.fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401

MARKER = "<!-- api-example -->"
CHECKPOINT_LINE = re.compile(r"^CHECKPOINT\s*=.*$", re.MULTILINE)


def extract_api_example(markdown: str) -> str:
    """The first fenced ```python block after MARKER."""
    at = markdown.find(MARKER)
    if at < 0:
        raise AssertionError(f"docs/inference.md has no {MARKER} marker before the Python API example")
    match = re.search(r"```python\n(.*?)```", markdown[at:], re.DOTALL)
    if match is None:
        raise AssertionError(f"no ```python block after {MARKER} in docs/inference.md")
    return match.group(1)


def with_checkpoint(code: str, path: Path) -> str:
    """Point the example's `CHECKPOINT = ...` line at `path`."""
    if len(CHECKPOINT_LINE.findall(code)) != 1:
        raise AssertionError("the API example must set the checkpoint path in exactly one line "
                             "`CHECKPOINT = \"...\"`")
    return CHECKPOINT_LINE.sub(lambda _: f"CHECKPOINT = {str(path)!r}", code)


def test_extract_and_substitute():
    md = f"intro\n```python\nnot this\n```\n{MARKER}\n```python\nCHECKPOINT = 'x.pth'\nprint(CHECKPOINT)\n```\n"
    code = extract_api_example(md)
    assert code == "CHECKPOINT = 'x.pth'\nprint(CHECKPOINT)\n"
    assert with_checkpoint(code, Path("/a/b.pth")).startswith("CHECKPOINT = '/a/b.pth'\n")
    with pytest.raises(AssertionError, match="marker"):
        extract_api_example("no marker here")


def test_readme_api_example_runs(tiny_checkpoint, tmp_path, monkeypatch):
    code = extract_api_example((ROOT / "docs" / "inference.md").read_text(encoding="utf-8"))
    for needed in ("load_voice(", "model.infer(", "SamplingConfig(steps=20", "sway_coef=-1.0", "method='euler'",
                   "TorchSynthesizer.from_checkpoint"):
        assert needed in code, f"docs API example lacks {needed!r}"
    code = with_checkpoint(code, tiny_checkpoint)
    monkeypatch.chdir(tmp_path)  # files the example writes land here
    monkeypatch.syspath_prepend(str(ROOT))
    namespace = {"__name__": "__readme_example__"}
    exec(compile(code, "docs/inference.md <!-- api-example -->", "exec"), namespace)

    hps, mel, waveform = namespace["hps"], namespace["mel"], namespace["waveform"]
    assert waveform.ndim == 1 and len(waveform) == mel.shape[-1] * hps.data.hop_length
    assert mel.shape[1] == hps.data.n_mel_channels
    wav, sample_rate, info = namespace["wav"], namespace["sample_rate"], namespace["info"]
    assert sample_rate == hps.data.sampling_rate
    assert info["nfe"] == 10 and info["sentences"] == 2
    written = list(tmp_path.glob("*.wav"))
    assert len(written) == 1
    data, sr = sf.read(str(written[0]), dtype="float32")
    assert sr == sample_rate and len(data) == len(wav) and sf.info(str(written[0])).subtype == "PCM_16"
