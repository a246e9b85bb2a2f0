"""Training: checkpoints, resume, DDP, mixed precision, non-finite skips, signals, LR schedule and EMA.

Runs the real training script on configs/tiny.json and the LJSpeech clips in tests/data (CPU, one
thread per process: the tiny model gains nothing from more and the CI machine is shared).
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training import checkpoint as ckpt  # noqa: E402
import config as config_lib  # noqa: E402
from training import distributed  # noqa: E402
import train_flow_matching as train  # noqa: E402
from training import train_utils  # noqa: E402
from training.ema import EMA  # noqa: E402
from training.lr_schedule import build_scheduler, warmup_exponential_factor  # noqa: E402

DATA = ROOT / "tests" / "data"


# ----------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _filelist(path: Path, clips) -> str:
    lines = [line for line in (DATA / "filelist.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    chosen = [line.split("|", 1) for line in lines if any(c in line.split("|")[0] for c in clips)]
    path.write_text("".join(f"{DATA / wav}|{rest}\n" for wav, rest in chosen), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    """configs/tiny.json pointed at tmp filelists of the test clips (train: 3 clips, val: 1)."""
    d = tmp_path_factory.mktemp("cfg")
    raw = json.loads((ROOT / "configs" / "tiny.json").read_text())
    raw["data"]["training_files"] = _filelist(d / "train.txt", ["LJ001-0002", "LJ001-0004", "LJ001-0001"])
    raw["data"]["validation_files"] = _filelist(d / "val.txt", ["LJ001-0002"])
    path = d / "tiny.json"
    path.write_text(json.dumps(raw))
    return path


def write_config(tmp_path: Path, base: Path, **train_overrides) -> Path:
    raw = json.loads(base.read_text())
    raw["train"].update(train_overrides)
    path = tmp_path / f"cfg_{len(list(tmp_path.glob('cfg_*.json')))}.json"
    path.write_text(json.dumps(raw))
    return path


def logged_losses(run_dir: Path):
    """{step: 'flow=... total=...'} from train.log (log_interval is 1 in tiny.json)."""
    out = {}
    for line in (run_dir / "train.log").read_text().splitlines():
        if " | " in line and " step " in line:
            step = int(line.split(" step ")[1].split()[0])
            out[step] = line.split(" | ")[1]
    return out


@pytest.fixture(scope="module")
def resumed_run(tiny_config, tmp_path_factory):
    """An uninterrupted 4-step run and a 2 + 2 step run of the same config (module scoped: reused)."""
    base = tmp_path_factory.mktemp("runs")
    torch.set_num_threads(1)
    straight, pieces = base / "straight", base / "pieces"
    assert train.main(["-c", str(tiny_config), "-m", str(straight), "--max-steps", "4"]) == 0
    assert train.main(["-c", str(tiny_config), "-m", str(pieces), "--max-steps", "2"]) == 0
    assert train.main(["-c", str(tiny_config), "-m", str(pieces), "--max-steps", "4"]) == 0
    return straight, pieces


def subprocess_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("MASTER_PORT", None)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    return env


# ----------------------------------------------------------------------------------------------------------
# building blocks


def test_lr_schedule_warmup_then_exponential_decay():
    assert warmup_exponential_factor(0, 4, 0.5) == pytest.approx(0.25)
    assert warmup_exponential_factor(3, 4, 0.5) == pytest.approx(1.0)
    assert warmup_exponential_factor(4, 4, 0.5) == pytest.approx(0.5)
    assert warmup_exponential_factor(6, 4, 0.5) == pytest.approx(0.125)
    assert warmup_exponential_factor(0, 0, 0.5) == pytest.approx(1.0)
    assert warmup_exponential_factor(2, 0, 0.5) == pytest.approx(0.25)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_scheduler(opt, warmup_steps=2, decay=0.9)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5, 1.0, 0.9, 0.81, 0.729])


def test_ema_follows_weights_with_warmup():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # warm-up decay min(0.9, 1/10) = 0.1 -> 0.9 of the way
    assert ema.module.weight.detach() == pytest.approx(torch.full((1, 2), 0.9))
    ema.num_updates = 1000  # past warm-up: decay 0.9 -> 0.9 * 0.9 + 0.1 * 1
    ema.update(model)
    assert ema.module.weight.detach() == pytest.approx(torch.full((1, 2), 0.91))
    assert not ema.module.weight.requires_grad


def test_checkpoint_save_load_prune_and_errors(tmp_path, caplog):
    for step in (1, 2, 9, 10):
        ckpt.save_checkpoint(tmp_path / f"G_{step}.pth", {"step": step, "w": torch.full((3,), float(step))})
    assert ckpt.latest_checkpoint(tmp_path).name == "G_10.pth"  # numeric, not lexicographic
    assert ckpt.load_checkpoint(tmp_path / "G_9.pth")["w"].tolist() == [9.0] * 3
    removed = ckpt.prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == ["G_1.pth", "G_2.pth"]
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["G_9.pth", "G_10.pth"]

    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.load_checkpoint(tmp_path / "G_5.pth")
    data = (tmp_path / "G_10.pth").read_bytes()
    (tmp_path / "G_10.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt"):
        ckpt.load_checkpoint(tmp_path / "G_10.pth")
    with pytest.raises(ckpt.CheckpointError, match="lacks required entries: model"):
        ckpt.load_checkpoint(tmp_path / "G_9.pth", required_keys=("model",))

    with caplog.at_level(logging.WARNING):
        point = ckpt.load_latest_valid(tmp_path)
    assert point.step == 9 and point.state["step"] == 9
    assert point.skipped and point.skipped[0][0].name == "G_10.pth"
    assert "G_10.pth" in caplog.text and "truncated or corrupt" in caplog.text

    (tmp_path / "G_9.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="Refusing to restart from step 0"):
        ckpt.load_latest_valid(tmp_path)
    assert ckpt.load_latest_valid(tmp_path / "empty") is None


def test_save_is_atomic_when_writing_fails(tmp_path):
    ckpt.save_checkpoint(tmp_path / "G_1.pth", {"step": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full (simulated)")

    with pytest.raises(RuntimeError, match="simulated"):
        ckpt.save_checkpoint(tmp_path / "G_1.pth", {"step": 2, "bad": Unpicklable()})
    assert ckpt.load_checkpoint(tmp_path / "G_1.pth")["step"] == 1  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["G_1.pth"]  # no temporary file left


def test_distributed_port_and_env_helpers(monkeypatch):
    port = distributed.find_free_port()
    assert 1024 <= port <= 65535
    monkeypatch.setenv("MASTER_PORT", "70000")
    with pytest.raises(ValueError, match="not a valid TCP port"):
        distributed.master_port_from_env()
    monkeypatch.setenv("MASTER_PORT", "29555")
    assert distributed.master_port_from_env() == 29555
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.torchrun_env() is None
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.torchrun_env() == (1, 2, 1)
    assert not distributed.will_spawn(cpu_processes=2)  # torchrun already started the processes


def test_bare_run_name_goes_under_logs():
    assert train_utils.resolve_run_dir("ljs") == Path("logs") / "ljs"
    assert train_utils.resolve_run_dir("runs/ljs") == Path("runs/ljs")


# ----------------------------------------------------------------------------------------------------------
# the training script


def test_few_steps_write_checkpoint_and_tensorboard(tiny_config, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = write_config(tmp_path, tiny_config, eval_interval=2)
    run = tmp_path / "run"
    assert train.main(["-c", str(cfg), "-m", str(run), "--max-steps", "2"]) == 0
    state = ckpt.load_checkpoint(run / "G_2.pth")
    assert state["step"] == 2 and state["n_vocab"] > 0
    assert set(state["optimizer"]) == {"acoustic", "vocoder"} and set(state["scheduler"]) == {"acoustic", "vocoder"}
    assert config_lib.from_dict(state["config"]).model.flow_d_model == 32
    assert state["ema"].keys() == state["model"].keys()
    assert any(not torch.equal(state["ema"][k], state["model"][k]) for k in state["model"])  # EMA is not a copy
    assert json.loads((run / "config.json").read_text())["model"]["flow_d_model"] == 32
    assert "saved" in (run / "train.log").read_text()

    events = EventAccumulator(str(run), size_guidance={"images": 0, "audio": 0, "scalars": 0}).Reload()
    tags = events.Tags()
    for tag in ("loss/flow", "loss/dur", "loss/prior", "loss/mel", "loss/stft", "loss/stft_sub", "lr/acoustic",
                "grad_norm/acoustic", "grad_norm/vocoder", "speed/frames_per_s", "val/flow"):
        assert tag in tags["scalars"], tag
    assert [e.step for e in events.Scalars("loss/flow")] == [1, 2]
    assert {"mel/0", "align/0"} <= set(tags["images"])
    assert {"gen/0", "vocoder/0", "gt/0"} <= set(tags["audio"])


def test_time_budget_stops_saves_and_counts_across_resumes(tiny_config, tmp_path):
    run = tmp_path / "run"
    cfg = write_config(tmp_path, tiny_config, max_minutes=1e-4)  # 6 ms: spent within the first step
    assert train.main(["-c", str(cfg), "-m", str(run)]) == 0
    assert sorted(p.name for p in run.glob("G_*.pth")) == ["G_1.pth"]
    spent = ckpt.load_checkpoint(run / "G_1.pth")["train_seconds"]
    assert spent > 0.006
    assert train.main(["-m", str(run)]) == 0  # budget already spent: no step, no new checkpoint
    assert sorted(p.name for p in run.glob("G_*.pth")) == ["G_1.pth"]
    assert train.main(["-m", str(run), "--max-minutes", "60", "--max-steps", "2"]) == 0
    assert ckpt.load_checkpoint(run / "G_2.pth")["train_seconds"] > spent
    assert "min of training" in (run / "train.log").read_text()
    with pytest.raises(config_lib.ConfigError, match="max_minutes must be positive"):
        config_lib.from_dict(json.loads(write_config(tmp_path, tiny_config, max_minutes=0).read_text()))


def test_resume_equals_uninterrupted_training(resumed_run):
    straight, pieces = resumed_run
    a, b = ckpt.load_checkpoint(straight / "G_4.pth"), ckpt.load_checkpoint(pieces / "G_4.pth")
    assert a["step"] == b["step"] == 4
    for key in ("model", "ema"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}.{name} differs after resuming"
    losses_a, losses_b = logged_losses(straight), logged_losses(pieces)
    assert losses_a[3] == losses_b[3] and losses_a[4] == losses_b[4]
    assert losses_a[3] != losses_a[4]
    assert "resumed from" in (pieces / "train.log").read_text()


def test_truncated_newest_checkpoint_falls_back_to_previous(resumed_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(resumed_run[1], run)
    newest = run / "G_4.pth"
    newest.write_bytes(newest.read_bytes()[:1000])
    assert train.main(["-m", str(run), "--max-steps", "3"]) == 0
    log = (run / "train.log").read_text()
    assert "cannot resume from step 4" in log and "truncated or corrupt" in log
    assert f"resumed from {run / 'G_2.pth'}: step 2" in log
    assert ckpt.load_checkpoint(run / "G_3.pth")["step"] == 3
    # Resuming from step 2 again reproduces the original step 3 exactly.
    assert logged_losses(run)[3] == logged_losses(resumed_run[0])[3]


def test_resume_takes_the_learning_rate_from_the_new_config(resumed_run, tiny_config, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(resumed_run[1], run)
    trainer = make_trainer(tiny_config, run, learning_rate=1e-4, warmup_steps=0, lr_decay=0.5)
    trainer.resume_or_init()
    assert trainer.step == 4
    groups = trainer.optimizers["acoustic"].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([1e-4 * 0.5 ** 4] * len(groups))
    vocoder_lr = json.loads(tiny_config.read_text())["train"]["vocoder_learning_rate"]
    assert trainer.optimizers["vocoder"].param_groups[0]["lr"] == pytest.approx(vocoder_lr * 0.5 ** 4)
    assert trainer.optimizers["acoustic"].state  # Adam moments still come from the checkpoint


def test_changed_model_shape_is_refused_with_the_key(resumed_run, tiny_config, tmp_path, capsys):
    raw = json.loads(tiny_config.read_text())
    raw["model"]["flow_d_model"] = 64
    other = tmp_path / "other.json"
    other.write_text(json.dumps(raw))
    run = tmp_path / "run"
    shutil.copytree(resumed_run[1], run)
    assert train.main(["-c", str(other), "-m", str(run)]) == 2
    err = capsys.readouterr().err
    assert "model.flow_d_model (32 in the run, 64 in the given config)" in err


def make_trainer(cfg_path: Path, run_dir: Path, **train_overrides) -> train.Trainer:
    hps = config_lib.load_config(cfg_path).replace(**train_overrides)
    run_dir.mkdir(parents=True, exist_ok=True)
    return train.Trainer(hps, run_dir, tensorboard=False)


def first_batch(trainer: train.Trainer) -> dict:
    return next(iter(trainer.train_loader(0)))


def step_with_nan_loss(trainer: train.Trainer, batch: dict):
    """One train_step whose acoustic flow loss is NaN (the skip path), without a hook in the trainer."""
    forward = trainer.acoustic_fwd
    trainer.acoustic_fwd = lambda *args: {**forward(*args), "loss_flow": torch.tensor(float("nan"))}
    try:
        return trainer.train_step(batch)
    finally:
        trainer.acoustic_fwd = forward


def test_nonfinite_loss_skips_the_update_and_is_logged(tiny_config, tmp_path, caplog):
    trainer = make_trainer(tiny_config, tmp_path / "run")
    batch = first_batch(trainer)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    ema_before = {k: v.clone() for k, v in trainer.ema.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger=train.LOGGER_NAME):
        result = step_with_nan_loss(trainer, batch)
    assert result.skipped and trainer.skipped_steps == 1
    assert "non-finite loss" in caplog.text and "update skipped" in caplog.text
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, v in trainer.ema.state_dict().items():
        assert torch.equal(v, ema_before[k]), k
    assert all(p.grad is None for p in trainer.model.parameters())
    assert all(s.last_epoch == 0 for s in trainer.schedulers.values())  # the LR schedule did not advance
    result = trainer.train_step(batch)  # training goes on normally
    assert not result.skipped and all(s.last_epoch == 1 for s in trainer.schedulers.values())
    assert any(not torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())


def test_bf16_autocast_step_runs_on_each_device(tiny_config, tmp_path, device):
    hps = config_lib.load_config(tiny_config).replace(bf16_run=True)
    trainer = train.Trainer(hps, tmp_path, distributed.DistContext(device=torch.device(device)), tensorboard=False)
    assert trainer.amp_dtype == torch.bfloat16 and trainer.scaler is None
    batch = first_batch(trainer)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.train_step(batch)
    assert not result.skipped
    assert all(torch.isfinite(torch.tensor(v)) for v in result.losses.values())
    changed = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("acoustic.") for k in changed) and any(k.startswith("generator.") for k in changed)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # fp32 master weights


def test_fp16_on_cpu_falls_back_to_bf16_with_warning(tiny_config, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger=train.LOGGER_NAME):
        trainer = make_trainer(tiny_config, tmp_path / "run", fp16_run=True)
    assert trainer.amp_dtype == torch.bfloat16 and trainer.scaler is None
    assert "fp16_run needs a CUDA device" in caplog.text


def test_fp16_grad_scaler_bookkeeping(tiny_config, tmp_path):
    """The CUDA fp16 path (GradScaler) driven on the CPU: overflow skips and lowers the scale, NaN loss skips."""
    trainer = make_trainer(tiny_config, tmp_path / "run")
    trainer.amp_dtype = torch.float16
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)  # certain to overflow in fp16
    batch = first_batch(trainer)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.train_step(batch)
    assert result.skipped and trainer.scaler.get_scale() == 2.0 ** 39
    assert all(torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())
    assert step_with_nan_loss(trainer, batch).skipped
    assert trainer.scaler.get_scale() == 2.0 ** 39  # a NaN loss is not an overflow: the scale stays
    trainer.scaler.update(new_scale=1.0)
    result = trainer.train_step(batch)
    assert not result.skipped and all(s.last_epoch == 1 for s in trainer.schedulers.values())
    assert any(not torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())


def test_vocoder_only_training_leaves_acoustic_untouched(tiny_config, tmp_path):
    trainer = make_trainer(tiny_config, tmp_path / "run", train_acoustic=False)
    assert set(trainer.optimizers) == {"vocoder"}
    before = {k: v.clone() for k, v in trainer.model.acoustic.state_dict().items()}
    result = trainer.train_step(first_batch(trainer))
    assert "flow" not in result.losses and "mel" in result.losses
    for k, v in trainer.model.acoustic.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_init_checkpoint_copies_selected_parts(resumed_run, tiny_config, tmp_path):
    source = ckpt.load_checkpoint(resumed_run[0] / "G_4.pth")
    trainer = make_trainer(tiny_config, tmp_path / "run", init_checkpoint=str(resumed_run[0] / "G_4.pth"),
                           init_parts=["acoustic"])
    trainer.resume_or_init()
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source["ema"].items() if k.startswith("acoustic."))
    assert not all(torch.equal(state[k], v) for k, v in source["ema"].items() if k.startswith("generator."))
    assert trainer.step == 0


def test_init_checkpoint_grows_inputs_and_keeps_the_configs_mel_statistics(resumed_run, tiny_config, tmp_path):
    """A prompt_context model started from one without: the velocity net's input projection keeps the
    source's columns and gets zeros for the context; mel_mean / mel_std come from the new config."""
    source = ckpt.load_checkpoint(resumed_run[0] / "G_4.pth")["ema"]
    trainer = make_trainer(tiny_config, tmp_path / "run", init_checkpoint=str(resumed_run[0] / "G_4.pth"),
                           init_parts=["acoustic"], prompt_context=True, mel_mean=-4.0)
    trainer.resume_or_init()
    key = next(k for k in source if k.endswith("estimator.in_proj.weight"))
    grown, old = trainer.model.state_dict()[key], source[key]
    assert grown.size(1) == old.size(1) + trainer.hps.data.n_mel_channels
    assert torch.equal(grown[:, :old.size(1)], old) and not grown[:, old.size(1):].any()
    assert trainer.model.acoustic.mel_mean.item() == -4.0


def test_init_checkpoint_refuses_a_vocoder_of_another_width(resumed_run, tiny_config, tmp_path):
    """A vocoder whose tensors do not fit (e.g. a widened shared vocoder and an old config) would train
    from a fresh initialisation unnoticed: refused, naming the width to set."""
    source = ckpt.load_checkpoint(resumed_run[0] / "G_4.pth")
    width = source["config"]["model"]["upsample_initial_channel"]
    trainer = make_trainer(tiny_config, tmp_path / "run", init_checkpoint=str(resumed_run[0] / "G_4.pth"),
                           init_parts=["vocoder"], upsample_initial_channel=width * 2)
    with pytest.raises(ckpt.CheckpointError, match=f"model.upsample_initial_channel={width}"):
        trainer.resume_or_init()


def test_init_checkpoint_refuses_a_vocoder_of_another_type(tiny_config, tmp_path):
    """A source-filter vocoder's weights cannot fill an MB-iSTFT generator: refused, naming the key to set."""
    source_filter = make_trainer(tiny_config, tmp_path / "sf", vocoder="source_filter", source_filter_channels=32,
                                 source_filter_layers=1)
    source_filter.save()
    trainer = make_trainer(tiny_config, tmp_path / "run", init_checkpoint=str(tmp_path / "sf" / "G_0.pth"),
                           init_parts=["vocoder"])
    with pytest.raises(ckpt.CheckpointError, match="model.vocoder=source_filter"):
        trainer.resume_or_init()


class SmallDiscriminator(torch.nn.Module):
    """Stand-in with the Discriminator interface for the bookkeeping tests (the real one at its default 1024
    channels, 58M parameters, takes ~10 s a step here; test_real_discriminator_learns_in_a_training_step
    runs a 16-channel real one)."""

    def __init__(self, hps):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 4, 9, stride=4)
        self.out = torch.nn.Conv1d(4, 1, 3)

    def forward(self, y, y_hat):
        def run(x):
            f = torch.nn.functional.leaky_relu(self.conv(x), 0.1)
            return self.out(f).flatten(1), [f]
        (sr, fr), (sg, fg) = run(y), run(y_hat)
        return [sr], [sg], [fr], [fg]


def test_discriminator_has_its_own_optimizer_and_checkpoint(tiny_config, tmp_path, monkeypatch):
    from training import discriminators
    monkeypatch.setattr(discriminators, "Discriminator", SmallDiscriminator)
    hps = config_lib.load_config(tiny_config).replace(use_discriminator=True)
    trainer = train.Trainer(hps, tmp_path, tensorboard=False)
    before = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    result = trainer.train_step(first_batch(trainer))
    assert {"disc", "gen", "fm", "mel"} <= set(result.losses) and "discriminator" in result.grad_norms
    assert all(not torch.equal(v, before[k]) for k, v in trainer.discriminator.state_dict().items())
    trainer.step = 1
    trainer.save()
    d_state = ckpt.load_checkpoint(tmp_path / "D_1.pth")
    assert set(d_state["optimizer"]) == {"discriminator"}
    assert "discriminator" not in ckpt.load_checkpoint(tmp_path / "G_1.pth")["optimizer"]

    again = train.Trainer(hps, tmp_path, tensorboard=False)
    again.resume_or_init()
    assert again.step == 1
    for k, v in trainer.discriminator.state_dict().items():
        assert torch.equal(v, again.discriminator.state_dict()[k]), k
    assert again.optimizers["discriminator"].state_dict()["state"]  # Adam moments restored


def test_real_discriminator_learns_in_a_training_step(tiny_config, tmp_path):
    """Catches the real Discriminator (not the stand-in above) not learning in train_step: every weight of a
    16-channel one (58k parameters) moves, and every loss is finite."""
    from training.discriminators import Discriminator
    hps = config_lib.load_config(tiny_config).replace(use_discriminator=True, discriminator_channels=16,
                                                      train_acoustic=False)
    trainer = train.Trainer(hps, tmp_path, tensorboard=False)
    assert type(trainer.discriminator) is Discriminator
    before = {k: v.clone() for k, v in trainer.discriminator.named_parameters()}
    result = trainer.train_step(first_batch(trainer))
    assert not result.skipped and {"disc", "gen", "fm", "mel"} <= set(result.losses)
    assert all(math.isfinite(v) for v in [*result.losses.values(), *result.grad_norms.values()]), result
    assert not [k for k, v in trainer.discriminator.named_parameters() if torch.equal(v, before[k])]


def test_adversarial_weight_scales_the_generators_lsgan_term(tiny_config, tmp_path, monkeypatch):
    from training import discriminators
    monkeypatch.setattr(discriminators, "Discriminator", SmallDiscriminator)
    hps = config_lib.load_config(tiny_config).replace(use_discriminator=True, train_acoustic=False)
    full = train.Trainer(hps, tmp_path / "full", tensorboard=False)
    soft = train.Trainer(hps.replace(c_gen=0.25), tmp_path / "soft", tensorboard=False)
    gen_full = full.train_step(first_batch(full)).losses["gen"]
    gen_soft = soft.train_step(first_batch(soft)).losses["gen"]
    assert gen_full > 0 and abs(gen_soft / gen_full - 0.25) < 1e-3


def test_discriminator_learning_rate_defaults_to_the_vocoders(tiny_config, tmp_path, monkeypatch):
    from training import discriminators
    monkeypatch.setattr(discriminators, "Discriminator", SmallDiscriminator)
    hps = config_lib.load_config(tiny_config).replace(use_discriminator=True, warmup_steps=0)

    def base_rate(trainer, name):
        return trainer.optimizers[name].param_groups[0]["initial_lr"]

    same = train.Trainer(hps, tmp_path / "a", tensorboard=False)
    assert base_rate(same, "discriminator") == base_rate(same, "vocoder") == hps.train.vocoder_learning_rate
    own = train.Trainer(hps.replace(discriminator_learning_rate=3e-4), tmp_path / "b", tensorboard=False)
    assert base_rate(own, "discriminator") == 3e-4
    assert base_rate(own, "vocoder") == hps.train.vocoder_learning_rate


# ----------------------------------------------------------------------------------------------------------
# separate processes: DDP and signals


def test_two_gloo_processes_keep_identical_parameters(tiny_config, tmp_path):
    run = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, str(ROOT / "train_flow_matching.py"), "-c", str(tiny_config), "-m",
                           str(run), "--cpu-processes", "2", "--max-steps", "2"], cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run / "train.log").read_text()
    assert "2 process(es) on cpu (gloo)" in log
    assert "max parameter difference across 2 ranks = 0" in log
    state = ckpt.load_checkpoint(run / "G_2.pth")
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    # Each rank drew different random numbers (noise, crops): the replicas' streams are not copies.
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])


def test_a_data_worker_signalled_while_starting_survives():
    """SIGTERM to a worker just forked, before torch runs its worker_init_fn (torch's own SIGTERM handler
    kills it then): start_data_workers holds the signal until the worker ignores it, so the epoch loads."""
    loader = torch.utils.data.DataLoader(list(range(8)), batch_size=2, num_workers=2, timeout=30,
                                         worker_init_fn=train_utils.ignore_stop_signals)
    batches = train_utils.start_data_workers(loader)
    for worker in batches._workers:
        os.kill(worker.pid, signal.SIGTERM)
    assert torch.cat(list(batches)).tolist() == list(range(8))


@pytest.mark.parametrize("to_group", [False, True], ids=["trainer", "process-group"])
def test_sigterm_writes_a_checkpoint_before_exiting(tiny_config, tmp_path, to_group):
    """to_group: SIGTERM to the trainer and its data worker at once (pkill -f, systemd): still a clean save."""
    cfg = write_config(tmp_path, tiny_config, eval_interval=100000, max_steps=100000, num_workers=int(to_group))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train_flow_matching.py"), "-c", str(cfg), "-m", str(run)],
                            cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=to_group)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            log = run / "train.log"
            if log.is_file() and " step 2 " in log.read_text():
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert not list(run.glob("G_*.pth"))  # nothing saved yet: the checkpoint must come from the signal
        if to_group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    saved = ckpt.latest_checkpoint(run)
    state = ckpt.load_checkpoint(saved, required_keys=("model", "ema", "optimizer"))
    assert state["step"] >= 2 and saved.name == f"G_{state['step']}.pth"
    log = (run / "train.log").read_text()
    assert "received SIGTERM" in log and "stopped at step" in log


# ----------------------------------------------------------------------------------------------------------
# review fixes: short batches, toggled discriminator, skipped-step bookkeeping, run-folder config


def test_vocoder_segment_longer_than_the_batch_is_zero_padded(tiny_config, tmp_path):
    """segment_size (2048 samples = 8 frames) exceeds every clip: the wav is padded like the mel, no crash."""
    trainer = make_trainer(tiny_config, tmp_path / "run", train_acoustic=False)
    batch = first_batch(trainer)
    hop = trainer.hps.data.hop_length
    frames = 4
    short = dict(batch, mel=batch["mel"][..., :frames].clone(), wav=batch["wav"][..., :frames * hop].clone(),
                 mel_lengths=batch["mel_lengths"].clamp(max=frames),
                 wav_lengths=batch["wav_lengths"].clamp(max=frames * hop))
    assert trainer.hps.train.segment_size > frames * hop
    before = {k: v.clone() for k, v in trainer.model.generator.state_dict().items()}
    result = trainer.train_step(short)
    assert not result.skipped and all(torch.isfinite(torch.tensor(v)) for v in result.losses.values())
    assert any(not torch.equal(v, before[k]) for k, v in trainer.model.generator.state_dict().items())


def test_rand_slice_mel_and_wav_keeps_crops_aligned():
    import commons
    hop, frames = 4, 6
    # wav sample i of frame j holds j, so a crop's audio must repeat its mel frames' index.
    mel = torch.arange(frames, dtype=torch.float).view(1, 1, -1).repeat(2, 3, 1)
    wav = torch.arange(frames, dtype=torch.float).repeat_interleave(hop).view(1, 1, -1).repeat(2, 1, 1)
    for seg in (3, 10):  # shorter and longer than the clips
        g = torch.Generator().manual_seed(0)
        mel_seg, wav_seg, starts = commons.rand_slice_mel_and_wav(mel, wav, torch.tensor([6, 5]), seg, hop, g)
        assert mel_seg.shape == (2, 3, seg) and wav_seg.shape == (2, 1, seg * hop)
        assert torch.equal(wav_seg[:, 0], mel_seg[:, 0].repeat_interleave(hop, dim=1))
    assert torch.equal(starts, torch.zeros(2, dtype=torch.long))


def test_resume_after_toggling_the_discriminator(tiny_config, tmp_path, monkeypatch, caplog):
    """G_ alone decides the resume step; D_<step> is optional (fresh discriminator, with a warning)."""
    from training import discriminators
    monkeypatch.setattr(discriminators, "Discriminator", SmallDiscriminator)
    hps = config_lib.load_config(tiny_config).replace(use_discriminator=True)
    with_d = train.Trainer(hps, tmp_path, tensorboard=False, load_data=False)
    with_d.step = 1
    with_d.save()  # G_1 + D_1
    hps_off = config_lib.load_config(tiny_config)
    without_d = train.Trainer(hps_off, tmp_path, tensorboard=False, load_data=False)
    without_d.resume_or_init()
    without_d.step = 2
    without_d.save()  # G_2 only
    assert (tmp_path / "D_1.pth").is_file() and not (tmp_path / "D_2.pth").exists()

    again = train.Trainer(hps, tmp_path, tensorboard=False, load_data=False)
    with caplog.at_level(logging.WARNING, logger=train.LOGGER_NAME):
        again.resume_or_init()
    assert again.step == 2  # not the older G_1 that has a D_1 next to it
    assert "no D_2.pth" in caplog.text and "starts from scratch" in caplog.text
    assert not again.optimizers["discriminator"].state_dict()["state"]

    (tmp_path / "D_2.pth").write_bytes(b"corrupt")
    caplog.clear()
    again = train.Trainer(hps, tmp_path, tensorboard=False, load_data=False)
    with caplog.at_level(logging.WARNING, logger=train.LOGGER_NAME):
        again.resume_or_init()
    assert again.step == 2 and "starts from scratch" in caplog.text


def test_skipped_discriminator_step_marks_the_result_skipped(tiny_config, tmp_path, monkeypatch):
    from training import discriminators
    import losses
    monkeypatch.setattr(discriminators, "Discriminator", SmallDiscriminator)
    real_loss = losses.discriminator_loss

    def nan_loss(real, fake):
        loss, *rest = real_loss(real, fake)
        return (loss * float("nan"), *rest)

    monkeypatch.setattr(losses, "discriminator_loss", nan_loss)
    hps = config_lib.load_config(tiny_config).replace(use_discriminator=True, train_acoustic=False)
    trainer = train.Trainer(hps, tmp_path, tensorboard=False)
    d_before = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    result = trainer.train_step(first_batch(trainer))
    assert result.skipped and result.skipped_parts == ["discriminator"]
    assert trainer.skipped_steps == 1  # one step, counted once
    assert all(torch.equal(v, d_before[k]) for k, v in trainer.discriminator.state_dict().items())
    assert trainer.schedulers["discriminator"].last_epoch == 0
    assert trainer.schedulers["vocoder"].last_epoch == 1  # the generator still trained
    meter = train.Meter()
    meter.add(result, 1.0)
    assert meter.skipped == 1 and not any(k == "loss/disc" for k in meter.means())


def test_bad_config_does_not_touch_the_run_folder(tiny_config, tmp_path, capsys):
    raw = json.loads(tiny_config.read_text())
    raw["model"]["upsample_initial_channel"] = 30  # not divisible by 2 ** len(upsample_rates)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    run = tmp_path / "run"
    assert train.main(["-c", str(bad), "-m", str(run)]) == 2
    assert "upsample_initial_channel" in capsys.readouterr().err
    assert not (run / "config.json").exists()


def test_config_json_without_checkpoints_takes_the_new_config(tiny_config, tmp_path):
    """A folder whose start failed (config.json, no checkpoint) accepts another model config."""
    run = tmp_path / "run"
    run.mkdir()
    raw = json.loads(tiny_config.read_text())
    raw["model"]["flow_d_model"] = 64
    (run / "config.json").write_text(json.dumps(raw))
    hps, run_dir, notes = train.prepare_run(train.parse_args(["-c", str(tiny_config), "-m", str(run),
                                                              "--max-steps", "3"]))
    assert hps.model.flow_d_model == 32 and hps.train.max_steps == 3
    assert json.loads((run / "config.json").read_text())["model"]["flow_d_model"] == 32
    assert any("no checkpoints" in n for n in notes)


def test_resume_with_a_narrower_discriminator_starts_it_afresh(tiny_config, tmp_path, caplog):
    """discriminator_channels may change between runs of one folder: the generator resumes, D starts over."""
    hps = config_lib.load_config(tiny_config).replace(use_discriminator=True, discriminator_channels=32)
    first = train.Trainer(hps, tmp_path, tensorboard=False, load_data=False)
    first.step = 1
    first.save()
    again = train.Trainer(hps.replace(discriminator_channels=16), tmp_path, tensorboard=False, load_data=False)
    with caplog.at_level(logging.WARNING, logger=train.LOGGER_NAME):
        again.resume_or_init()
    assert again.step == 1 and "starts from scratch" in caplog.text
    assert not again.optimizers["discriminator"].state_dict()["state"]


def test_prosody_conditioned_training_step_learns_the_embedding_at_its_own_rate(tiny_config, tmp_path):
    """A prosody voice's step: the loader gives frame prosody, the loudness augmentation runs, the predictor has a
    loss, and the zero-initialised embedding moves (its parameters sit in a group at 10x the learning rate)."""
    trainer = make_trainer(tiny_config, tmp_path / "run", prosody_conditioning=True, gain_augment_db=6.0)
    embed = trainer.model.acoustic.prosody_embed
    groups = trainer.optimizers["acoustic"].param_groups
    scaled = [g for g in groups if any(p is embed.conv.weight for p in g["params"])]
    assert scaled and scaled[0]["lr_scale"] == 10.0
    batch = first_batch(trainer)
    assert batch["prosody"].shape == (batch["mel"].size(0), 3, batch["mel"].size(2))
    result = trainer.train_step(batch)
    assert not result.skipped and result.losses["prosody"] > 0
    assert embed.conv.weight.abs().sum() > 0 and embed.template_gain.abs().sum() > 0
