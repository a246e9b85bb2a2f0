"""A Trainer's state on disk: save G_<step>.pth / D_<step>.pth, resume from the newest loadable one, or
initialise parts from another run (train.init_checkpoint / init_parts).

Functions of a `train_flow_matching.Trainer` (its models, EMA, optimizers, schedulers, scaler, counters);
the file format and atomic writes are `checkpoint.py`'s.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from training.checkpoint import (CheckpointError, load_checkpoint, load_latest_valid, load_state_checked, prune_checkpoints,
                        save_checkpoint)
from config import GENERATOR_KEYS, ConfigError
from training.train_utils import capture_rng, restore_rng, seed_everything


def resume_or_init(trainer) -> None:
    """Continue from the newest loadable checkpoint in the run folder, else initialise (init_checkpoint)."""
    # The newest valid G_ alone decides the step: use_discriminator may have been toggled between runs,
    # so a missing or unreadable D_<step> only means a fresh discriminator, never an older G_.
    point = load_latest_valid(trainer.run_dir, "G_", "cpu", required_keys=("model", "step"), logger=trainer.log)
    if point is None:
        if trainer.hps.train.init_checkpoint:
            init_from(trainer, trainer.hps.train.init_checkpoint, trainer.hps.train.init_parts)
        seed_everything(trainer.hps.train.seed + trainer.ctx.rank)
        return
    s = point.state
    load_state_checked(trainer.model, s["model"], point.path)
    load_state_checked(trainer.ema.module, s.get("ema", s["model"]), point.path)
    trainer.ema.num_updates = int(s.get("ema_updates", s["step"]))
    load_optim(trainer, s, "G")
    if trainer.discriminator is not None:
        resume_discriminator(trainer, point.path.with_name(f"D_{point.step}.pth"))
    if trainer.scaler is not None and s.get("scaler"):
        trainer.scaler.load_state_dict(s["scaler"])
    apply_optimizer_config(trainer)
    trainer.step = int(s["step"])
    trainer.epoch = int(s.get("epoch", 0))
    trainer.batch_in_epoch = int(s.get("batch_in_epoch", 0))
    trainer.skipped_steps = int(s.get("skipped_steps", 0))
    trainer.train_seconds = float(s.get("train_seconds", 0.0))
    trainer.last_saved_step = trainer.step
    rng = s.get("rng") or []
    if len(rng) == trainer.ctx.world_size and s.get("world_size", 1) == trainer.ctx.world_size:
        restore_rng(rng[trainer.ctx.rank], trainer.device)
    else:
        trainer.log.warning("checkpoint was written by %d process(es), this run has %d: random streams and "
                            "the position in the epoch are re-derived, so the resume is not bit-exact",
                            s.get("world_size", 1), trainer.ctx.world_size)
        seed_everything(trainer.hps.train.seed + trainer.ctx.rank + trainer.step)
        if s.get("world_size", 1) != trainer.ctx.world_size:
            trainer.batch_in_epoch = 0
            trainer.epoch += 1
    trainer.log.info("resumed from %s: step %d, epoch %d (%d batches into it)", point.path, trainer.step,
                     trainer.epoch, trainer.batch_in_epoch)


def resume_discriminator(trainer, path: Path) -> None:
    """Load D_<step>.pth if it exists and loads; else keep the fresh discriminator, with a warning."""
    if not path.is_file():
        trainer.log.warning("no %s next to the generator checkpoint (was model.use_discriminator off?): "
                            "the discriminator starts from scratch", path.name)
        return
    try:
        d_state = load_checkpoint(path, "cpu", required_keys=("model",))
        load_state_checked(trainer.discriminator, d_state["model"], path)  # fails if discriminator_channels changed
    except CheckpointError as e:
        trainer.log.warning("%s Ignoring it: the discriminator starts from scratch", e)
        return
    load_optim(trainer, d_state, "D")


def apply_optimizer_config(trainer) -> None:
    """Learning rates, betas, eps and weight decay come from the config in force, not the checkpoint.

    Optimizer / scheduler state dicts carry the values of the run that saved them; without this a
    learning rate changed for a resumed run would silently be ignored. With an unchanged config the
    values are identical (exact resume).
    """
    t = trainer.hps.train
    base = t.base_learning_rates()
    for name, opt in trainer.optimizers.items():
        sched = trainer.schedulers[name]
        factor = sched.lr_lambdas[0](sched.last_epoch)
        for group in opt.param_groups:
            initial = base[name] * group.get("lr_scale", 1.0)
            group.update(initial_lr=initial, lr=initial * factor, betas=tuple(t.betas), eps=t.eps,
                         weight_decay=t.weight_decay if group.get("decay", True) else 0.0)
        sched.base_lrs = [g["initial_lr"] for g in opt.param_groups]
        sched._last_lr = [g["lr"] for g in opt.param_groups]


def load_optim(trainer, state: dict, which: str) -> None:
    names = ("discriminator",) if which == "D" else ("acoustic", "vocoder")
    optim, sched = state.get("optimizer") or {}, state.get("scheduler") or {}
    for name in names:
        if name not in trainer.optimizers:
            continue
        if name in optim:
            try:
                trainer.optimizers[name].load_state_dict(optim[name])
            except ValueError as e:  # torch: "loaded state dict has a different number of parameter groups"
                raise CheckpointError(f"the checkpoint's {name} optimizer does not fit this model ({e}): the code "
                                      f"or config changed which parameters train or at what rate; start a new run "
                                      f"folder with train.init_checkpoint set to the checkpoint") from None
            if name in sched:
                trainer.schedulers[name].load_state_dict(sched[name])
        else:
            trainer.log.warning("checkpoint has no optimizer state for the %s: it starts fresh (with warm-up)",
                                name)


# Buffers that data.* sets (the corpus's mel statistics): the new run's config decides them, not the source.
CONFIG_BUFFERS = (".mel_mean", ".mel_std")


def init_from(trainer, path: str, parts: Sequence[str]) -> None:
    """Initialise weights of `parts` (acoustic / vocoder / discriminator) from another run's checkpoint, an
    exported voice or a vocoder file (export_voice.py --vocoder-only, e.g. pretrained/vocoder.pth).

    The EMA weights of that checkpoint are used when present (they are the better weights); tensors
    whose shape differs (e.g. a new symbol set or speaker count) keep their fresh initialisation,
    with a warning listing them. A weight that only gained input channels (dim 1, e.g. the velocity net's
    input projection of a model that adds model.prompt_context) keeps the source's columns and zeros for
    the new ones, so the grown model computes what the source did while the new inputs are zero.
    """
    known = {"acoustic": "acoustic.", "vocoder": "generator.", "discriminator": None}
    bad = [p for p in parts if p not in known]
    if bad:
        raise ConfigError(f"train.init_parts has unknown part(s) {bad}; choose from {sorted(known)}")
    state = load_checkpoint(path, "cpu")
    source = state.get("ema") or state.get("model")
    if not isinstance(source, dict):
        raise CheckpointError(f"init_checkpoint {path} holds no weights (neither 'ema' nor 'model')")
    own = trainer.model.state_dict()
    loaded, mismatched = 0, []
    for part in parts:
        prefix = known[part]
        if prefix is None:
            continue
        for k, v in source.items():
            if k.startswith(prefix) and k in own and not k.endswith(CONFIG_BUFFERS):
                if own[k].shape == v.shape:
                    own[k] = v
                    loaded += 1
                elif gained_inputs(own[k], v):
                    own[k] = torch.cat([v.to(own[k].dtype), own[k].new_zeros(
                        own[k].size(0), own[k].size(1) - v.size(1), *own[k].shape[2:])], dim=1)
                    loaded += 1
                else:
                    mismatched.append(f"{k} {tuple(v.shape)} -> {tuple(own[k].shape)}")
    if "vocoder" in parts:  # a vocoder's weights without some of its parts (another vocoder type) speak wrongly
        mismatched += [f"{k} (absent)" for k in source if k.startswith(known["vocoder"]) and k not in own]
    vocoder_misfits = [m for m in mismatched if m.startswith(known["vocoder"])]
    if vocoder_misfits:
        raise CheckpointError(f"init_checkpoint {path}: its vocoder has other shapes than this config's "
                              f"({vocoder_misfits[0]}); set the run's generator keys to that file's: "
                              f"{_generator_keys(state.get('config'))}")
    trainer.model.load_state_dict(own)
    if "discriminator" in parts and trainer.discriminator is not None:
        d_path = Path(path).with_name(Path(path).name.replace("G_", "D_", 1))
        if d_path.is_file():
            load_state_checked(trainer.discriminator, load_checkpoint(d_path, "cpu")["model"], d_path)
        else:
            trainer.log.warning("init_parts includes 'discriminator' but %s does not exist", d_path)
    if mismatched:
        trainer.log.warning("init_checkpoint: %d tensor(s) with other shapes keep their fresh init: %s",
                            len(mismatched), "; ".join(mismatched[:5]))
    if loaded == 0 and any(known[p] for p in parts):
        raise CheckpointError(f"init_checkpoint {path} has no weights for parts {list(parts)}")
    trainer.ema.copy_from(trainer.model)
    trainer.log.info("initialised %s from %s (%d tensors)", ", ".join(parts), path, loaded)


def _generator_keys(config: Optional[dict]) -> str:
    """The width and shape keys of the vocoder in a checkpoint's config dict, as `key=value` text."""
    model = (config or {}).get("model", {})
    keys = GENERATOR_KEYS + ("gin_channels", "speaker_conditioned_vocoder")
    return ", ".join(f"model.{k}={model[k]}" for k in keys if k in model) or "(the file holds no config)"


def gained_inputs(own: torch.Tensor, source: torch.Tensor) -> bool:
    """True when `own` is `source` with more input channels (dim 1) and every other dim equal."""
    return (own.dim() == source.dim() >= 2 and own.size(1) > source.size(1)
            and own.shape[:1] + own.shape[2:] == source.shape[:1] + source.shape[2:])


def save(trainer) -> Optional[Path]:
    """Write G_<step>.pth (and D_<step>.pth) on rank 0; every rank must call it (RNG states are gathered)."""
    rng = capture_rng(trainer.device)
    if trainer.ctx.distributed:
        gathered = [None] * trainer.ctx.world_size
        torch.distributed.all_gather_object(gathered, rng)
        rng_all = gathered
    else:
        rng_all = [rng]
    trainer.last_saved_step = trainer.step
    if not trainer.ctx.is_main:
        return None
    t = trainer.hps.train
    g_names = [k for k in trainer.optimizers if k != "discriminator"]
    state = dict(model=trainer.model.state_dict(), ema=trainer.ema.state_dict(), ema_updates=trainer.ema.num_updates,
                 optimizer={k: trainer.optimizers[k].state_dict() for k in g_names},
                 scheduler={k: trainer.schedulers[k].state_dict() for k in g_names},
                 scaler=trainer.scaler.state_dict() if trainer.scaler is not None else None,
                 step=trainer.step, epoch=trainer.epoch, batch_in_epoch=trainer.batch_in_epoch,
                 skipped_steps=trainer.skipped_steps, train_seconds=trainer.elapsed_seconds(),
                 world_size=trainer.ctx.world_size, rng=rng_all,
                 config=trainer.hps.to_dict(), n_vocab=trainer.n_vocab)
    if trainer.discriminator is not None:
        # D first: G_<step>.pth appearing is what marks the step as complete.
        save_checkpoint(trainer.run_dir / f"D_{trainer.step}.pth", dict(
            model=trainer.discriminator.state_dict(), step=trainer.step,
            optimizer={"discriminator": trainer.optimizers["discriminator"].state_dict()},
            scheduler={"discriminator": trainer.schedulers["discriminator"].state_dict()}))
    path = save_checkpoint(trainer.run_dir / f"G_{trainer.step}.pth", state)
    prune_checkpoints(trainer.run_dir, t.keep_ckpts, "G_")
    prune_checkpoints(trainer.run_dir, t.keep_ckpts, "D_")
    trainer.log.info("saved %s", path)
    return path
