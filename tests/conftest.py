"""Shared fixtures: the real LJ Speech clips in tests/data and a tiny, valid HParams.

tests/data holds LJ001-0001..0004 (public domain, see tests/data/ATTRIBUTION.md):
  metadata.csv  LJSpeech format (id|text|normalized), wavs/ next to it
  filelist.txt  VITS `wavs/<id>.wav|<english_cleaners2 phonemes>` (paths relative to tests/data)
"""
import contextlib
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # plain `pytest` (not `python -m pytest`) does not add the project root
    sys.path.insert(0, str(ROOT))

from config import HParams, load_config  # noqa: E402

DATA_DIR = ROOT / "tests" / "data"
TINY_CONFIG = ROOT / "configs" / "tiny.json"
LJ_IDS = ("LJ001-0001", "LJ001-0002", "LJ001-0003", "LJ001-0004")


def make_tiny_hps(**overrides) -> HParams:
    """configs/tiny.json (the one tiny config: default audio settings, a model small enough for CPU tests)
    with `overrides`: config keys of any section, e.g. flow_d_model=32 or max_audio_seconds=5.0."""
    return load_config(TINY_CONFIG).replace(**overrides)


def write_mb_istft_vocoder(path: Path, seed: int = 0, **overrides) -> Path:
    """A vocoder-only file (as export_voice --vocoder-only writes) of a tiny MB-iSTFT generator with random
    weights: the shipped vocoder is the source-filter one, so MB-iSTFT tools (widen_vocoder, the harmonic
    source) are tested on this. `overrides`: config keys."""
    from models import MultiBandISTFTGenerator

    hps = make_tiny_hps(**overrides)
    torch.manual_seed(seed)
    generator = MultiBandISTFTGenerator(hps)
    torch.save({"ema": {f"generator.{k}": v for k, v in generator.state_dict().items()}, "config": hps.to_dict(),
                "step": 0, "parts": ["vocoder"]}, path)
    return path


def wake_velocity_net(estimator) -> None:
    """Give an untrained velocity net non-zero output layers (they start at zero, so v = 0 whatever the
    input, and guidance or conditioning would change nothing)."""
    for layer in (estimator.mod_out, estimator.out_proj):
        torch.nn.init.normal_(layer.weight, std=0.1)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with `n` torch CPU threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def one_thread():
    """Every test on one torch thread: the tensors are small, so one thread is faster and immune to other
    processes competing for the cores. (Module-scoped fixtures start before it; wrap their work in
    `torch_threads(1)`.)"""
    with torch_threads(1):
        yield


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                              reason="needs a CUDA GPU"))])
def device(request) -> str:
    """Each device a test's code path runs on: "cpu" always, "cuda" where a GPU is present."""
    return request.param


@pytest.fixture
def tiny_hps() -> HParams:
    """The tiny HParams (frozen: tests make changed copies with .replace)."""
    return make_tiny_hps()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def lj_wavs() -> list:
    """Paths of the four real clips (22050 Hz mono), in id order."""
    return [DATA_DIR / "wavs" / f"{i}.wav" for i in LJ_IDS]


@pytest.fixture(scope="session")
def lj_metadata() -> Path:
    return DATA_DIR / "metadata.csv"


@pytest.fixture(scope="session")
def lj_filelist() -> Path:
    return DATA_DIR / "filelist.txt"
