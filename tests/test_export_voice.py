"""export_voice.py: an EMA-only, half-precision voice file that synthesizes like its training checkpoint."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

try:
    from fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401  (pytest fixture)
except ImportError:  # tests/ imported as a package
    from tests.fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401

sys.path.insert(0, str(ROOT / "benchmarks"))
from learning_curve import wall_seconds_at_steps  # noqa: E402

from inference import export_voice  # noqa: E402
from training.checkpoint import CheckpointError  # noqa: E402
from sampling import SamplingConfig  # noqa: E402
from inference.synthesizer import TorchSynthesizer  # noqa: E402

SENTENCE = "Printing, in the only sense with which we are concerned."


def synthesize(path, **kwargs) -> np.ndarray:
    wav, _, _ = TorchSynthesizer.from_checkpoint(path, **kwargs).synthesize(SENTENCE, sampling=SamplingConfig(steps=4),
                                                                       seed=3)
    return wav


@pytest.mark.parametrize("half", [True, False])
def test_export_keeps_ema_weights_only_and_sounds_the_same(tiny_checkpoint, tmp_path, half):
    out = tmp_path / "voice.pth"
    assert export_voice.main([str(tiny_checkpoint), str(out)] + (["--half"] if half else [])) == 0
    voice = torch.load(out, weights_only=True)
    assert "model" not in voice and "optimizer" not in voice
    assert out.stat().st_size < tiny_checkpoint.stat().st_size / (6 if half else 3)
    param_dtypes = {v.dtype for k, v in voice["ema"].items() if k.endswith(".weight")}
    assert param_dtypes == {torch.float16 if half else torch.float32}
    assert voice["ema"]["acoustic.mel_mean"].dtype == torch.float32  # buffers (mel statistics) stay exact
    reference, exported = synthesize(tiny_checkpoint), synthesize(out)
    assert exported.shape == reference.shape
    tolerance = 1e-3 if half else 1e-6
    assert np.abs(exported - reference).max() <= tolerance * max(1.0, np.abs(reference).max())


def test_exported_voice_refuses_raw_weights(tiny_checkpoint, tmp_path):
    out = tmp_path / "voice.pth"
    export_voice.export_voice(tiny_checkpoint, out)
    with pytest.raises(CheckpointError, match="only EMA weights"):
        TorchSynthesizer.from_checkpoint(out, use_ema=False)


def test_export_refuses_bad_input(tiny_checkpoint, tmp_path, capsys):
    assert export_voice.main([str(tmp_path / "missing.pth"), str(tmp_path / "v.pth")]) == 2
    assert "not found" in capsys.readouterr().err
    assert export_voice.main([str(tiny_checkpoint), str(tiny_checkpoint)]) == 2
    assert "overwrite" in capsys.readouterr().err
    no_ema = tmp_path / "no_ema.pth"
    state = torch.load(tiny_checkpoint, weights_only=True)
    del state["ema"]
    torch.save(state, no_ema)
    assert export_voice.main([str(no_ema), str(tmp_path / "v.pth")]) == 2
    assert "no EMA weights" in capsys.readouterr().err
    assert not (tmp_path / "v.pth").exists()


def test_learning_curve_counts_only_time_the_trainer_ran():
    log = "\n".join([
        "2026-01-01 10:00:00 INFO run folder logs/x | 1 process(es) on cpu | amp off",
        "2026-01-01 10:01:00 INFO step 10 epoch 0 | flow=1.0",
        "2026-01-01 10:02:00 INFO saved logs/x/G_20.pth",
        "2026-01-01 12:00:00 INFO run folder logs/x | 1 process(es) on cpu | amp off",  # 2 h gap between runs
        "2026-01-01 12:00:30 INFO step 30 epoch 0 | flow=0.9",
        "2026-01-01 12:01:00 INFO stopped at step 35; run the same command to resume",
    ])
    assert wall_seconds_at_steps(log) == {10: 60.0, 20: 120.0, 30: 150.0, 35: 180.0}


def test_vocoder_only_export_is_a_shared_vocoder(tiny_checkpoint, tmp_path):
    """--vocoder-only: generator weights alone; voice.load_vocoder reads it, a new voice starts from it."""
    import train_flow_matching as train
    from training.voice_file import load_vocoder, load_voice

    out = tmp_path / "vocoder.pth"
    assert export_voice.main([str(tiny_checkpoint), str(out), "--half", "--vocoder-only"]) == 0
    state = torch.load(out, weights_only=True)
    assert state["parts"] == ["vocoder"] and all(k.startswith("generator.") for k in state["ema"])
    generator, hps = load_vocoder(out)
    full, _ = load_voice(tiny_checkpoint)
    mel = torch.randn(1, 80, 30) - 5.0
    with torch.no_grad():
        torch.testing.assert_close(generator(mel)[0], full.generator(mel)[0], atol=2e-3, rtol=0)
    with pytest.raises(CheckpointError, match="is a vocoder file"):
        TorchSynthesizer.from_checkpoint(out)

    new_voice = hps.replace(init_checkpoint=str(out), init_parts=["vocoder"], train_vocoder=False)
    trainer = train.Trainer(new_voice, tmp_path / "run", tensorboard=False, load_data=False)
    trainer.resume_or_init()
    assert set(trainer.optimizers) == {"acoustic"}  # the shared vocoder is not trained
    for k, v in state["ema"].items():
        assert torch.equal(trainer.model.state_dict()[k], v.float()), k


def test_export_can_take_its_vocoder_from_another_file(tiny_checkpoint, tmp_path, capsys):
    """--vocoder FILE: a voice trained beside a frozen shared vocoder ships with a newer one."""
    from conftest import make_tiny_hps

    import text
    from models import FlowMatchingSynthesizer
    from training.voice_file import read_voice

    hps = make_tiny_hps()
    torch.manual_seed(1)
    other = FlowMatchingSynthesizer(len(text.symbols), hps)
    newer = tmp_path / "newer_vocoder.pth"
    torch.save({"ema": other.state_dict(), "config": hps.to_dict(), "step": 77}, newer)
    out = tmp_path / "voice.pth"
    assert export_voice.main([str(tiny_checkpoint), str(out), "--vocoder", str(newer)]) == 0
    weights = read_voice(out).weights
    original = read_voice(tiny_checkpoint).weights
    for k, v in other.state_dict().items():
        expected = v if k.startswith("generator.") else original[k]
        assert torch.equal(weights[k], expected), k
    assert torch.load(out, weights_only=True)["metadata"]["vocoder"] == {"file": "newer_vocoder.pth", "step": 77}

    # a wider vocoder (another generator shape) brings its shape keys into the voice's config
    wider = make_tiny_hps(upsample_initial_channel=2 * hps.model.upsample_initial_channel)
    wide_generator = FlowMatchingSynthesizer(len(text.symbols), wider)
    torch.save({"ema": wide_generator.state_dict(), "config": wider.to_dict()}, tmp_path / "wider.pth")
    assert export_voice.main([str(tiny_checkpoint), str(out), "--vocoder", str(tmp_path / "wider.pth")]) == 0
    state = read_voice(out)
    assert state.hps.model.upsample_initial_channel == wider.model.upsample_initial_channel
    assert torch.equal(state.weights["generator.conv_pre.bias"], wide_generator.state_dict()["generator.conv_pre.bias"])
    assert torch.equal(state.weights["acoustic.cfm.estimator.out_proj.weight"],
                       original["acoustic.cfm.estimator.out_proj.weight"])

    wide = make_tiny_hps(n_mel_channels=64)
    torch.save({"ema": FlowMatchingSynthesizer(len(text.symbols), wide).state_dict(), "config": wide.to_dict()},
               tmp_path / "wide.pth")
    assert export_voice.main([str(tiny_checkpoint), str(tmp_path / "x.pth"), "--vocoder",
                              str(tmp_path / "wide.pth")]) == 2
    assert "other mel features (n_mel_channels)" in capsys.readouterr().err


def test_export_sets_the_voices_measured_default_sampling(tiny_checkpoint, tmp_path, capsys):
    """--default-steps / --default-method: what the voice file tells every path to sample with."""
    from inference.synthesizer import TorchSynthesizer

    shipped, out = tmp_path / "shipped.pth", tmp_path / "voice.pth"
    export_voice.export_voice(tiny_checkpoint, shipped, metadata={"cloned_from": {"dataset": "x"}})
    assert export_voice.main([str(shipped), str(out), "--default-steps", "2", "--default-method", "midpoint"]) == 0
    sampling = TorchSynthesizer.from_checkpoint(out).default_sampling
    assert (sampling.steps, sampling.method) == (2, "midpoint")
    assert torch.load(out, weights_only=True)["metadata"] == {"cloned_from": {"dataset": "x"}}  # kept
    assert export_voice.main([str(tiny_checkpoint), str(tmp_path / "bad.pth"), "--default-method", "rk4"]) == 2
    assert "unknown ODE method 'rk4'" in capsys.readouterr().err and not (tmp_path / "bad.pth").exists()
    marked = tmp_path / "bf16.pth"
    assert export_voice.main([str(out), str(marked), "--vocoder-bf16"]) == 0  # measured: vocode in bf16 where fast
    assert TorchSynthesizer.from_checkpoint(marked).hps.model.vocoder_bf16
    assert not TorchSynthesizer.from_checkpoint(out).hps.model.vocoder_bf16
