"""Train the flow-matching acoustic model and the MB-iSTFT vocoder in one run.

    python train_flow_matching.py -c configs/flow_matching.json -m ljspeech   # run folder logs/ljspeech
    python train_flow_matching.py -m ljspeech                                 # resume with the saved config
    torchrun --nproc_per_node 4 train_flow_matching.py -c ... -m ...          # or let it use all GPUs itself
    python train_flow_matching.py -c configs/tiny.json -m t --cpu-processes 2 # 2 gloo processes on CPU

Run folder: config.json (the config in force), train.log, TensorBoard events, G_<step>.pth (model,
EMA weights, optimizers, schedulers, RNG states, step/epoch/position, config, n_vocab) and D_<step>.pth
(discriminator) when model.use_discriminator is on. Saves are atomic; the newest train.keep_ckpts are
kept. Running the same -m again resumes exactly where the newest loadable checkpoint left off.

Resume and config changes: if the run folder has checkpoints and -c gives another config, keys that
define the model (every model.* key except flow_dropout and use_discriminator, and the data keys that
define features and text: see MODEL_DATA_KEYS) must be equal, else ConfigError naming them; other keys
(learning rate, batch size, file lists, max_steps, ...) may change, the differences are logged and the
new config is written to config.json. A folder with a config.json but no checkpoint takes the new config.

Per step: the acoustic model's flow + duration + prior losses on whole utterances, and the vocoder on
random ground-truth (mel, audio) segments (mel L1 * c_mel + multi-resolution STFT on the full band and
the sub-bands * c_stft, plus LSGAN * c_gen + feature matching * c_fm with the optional discriminator). A step
with a non-finite loss is skipped (no update) and logged. SIGINT / SIGTERM finish the current step,
write a checkpoint and exit (a second SIGINT aborts at once).
"""
from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

import commons
from training import distributed as dist_lib
import text as text_lib
from training import train_eval
from training import train_state
from training.checkpoint import CheckpointError
from config import ConfigError, HParams
from data_utils import DistributedBucketSampler, TextMelCollate, TextMelLoader, length_boundaries
from training.distributed import DistContext
from training.ema import EMA
from flow_matching import ConditionDropout, GuidanceTeacher
from training.lr_schedule import build_scheduler
from models import FlowMatchingSynthesizer
from pitch import pitch_loss
from training.train_eval import EVAL_ITEMS
from training.train_utils import (LOGGER_NAME, Meter, StepResult, StopRequest, close_logging, ignore_stop_signals,
                         param_groups, prepare_run, resolve_amp, seed_everything, setup_logging,
                         start_data_workers, to_device)

USER_ERRORS = (ConfigError, CheckpointError, FileNotFoundError, ValueError)
MAX_CONSECUTIVE_SKIPS = 50  # non-finite steps in a row before training stops as diverged


# ----------------------------------------------------------------------------------------------------------
# Command line (run folder and config handling: train_utils.prepare_run)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", help="JSON config (optional when resuming: the run's config.json is used)")
    p.add_argument("-m", "--model", required=True,
                   help="run folder; a bare NAME means logs/NAME (same folder = resume)")
    p.add_argument("--cpu-processes", type=int, default=None, metavar="N",
                   help="train with N gloo processes on the CPU (data parallel without GPUs)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: every visible GPU if any, else the CPU")
    p.add_argument("--max-steps", type=int, default=None,
                   help="override train.max_steps (stop after this many steps in total)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="override train.max_minutes (stop after this much training wall time in total)")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------------------
# Trainer


class Trainer:
    """Models, optimizers, data and the training loop of one process.

    `train_step(batch)` is one update and can be called directly (tests, benchmarks); `fit()` runs the
    loop with logging, evaluation, checkpoints and stop signals.
    """

    def __init__(self, hps: HParams, run_dir: Path, ctx: DistContext = DistContext(),
                 logger: Optional[logging.Logger] = None, tensorboard: bool = True, load_data: bool = True):
        self.hps = hps
        self.run_dir = Path(run_dir)
        self.ctx = ctx
        self.device = ctx.device
        self.log = logger or logging.getLogger(LOGGER_NAME)
        t, m = hps.train, hps.model
        self.amp_dtype = resolve_amp(t, self.device, self.log)
        self.n_vocab = len(text_lib.symbols)

        seed_everything(t.seed)  # identical initial weights on every rank
        self.model = FlowMatchingSynthesizer(self.n_vocab, hps).to(self.device)
        self.use_discriminator = m.use_discriminator and t.train_vocoder
        self.discriminator = None
        if self.use_discriminator:
            from training.discriminators import Discriminator
            self.discriminator = Discriminator(hps).to(self.device)
        self.condition_dropout = ConditionDropout(t.cond_drop_rate, t.speaker_drop_rate, t.prompt_rate)
        self.model.acoustic.requires_grad_(t.train_acoustic)
        self.model.generator.requires_grad_(t.train_vocoder)
        self.guidance_teacher = self._guidance_teacher() if t.guidance_distill_scale > 0 else None
        if t.trainable or self.guidance_teacher is not None:
            freeze_all_but(self.model, t.trainable or ["acoustic.cfm."])
        self.ema = EMA(self.model, t.ema_decay)

        self.optimizers: Dict[str, torch.optim.Optimizer] = {}
        rates = t.base_learning_rates()
        if t.train_acoustic:
            self.optimizers["acoustic"] = self._adamw(self.model.acoustic, rates["acoustic"])
        if t.train_vocoder:
            self.optimizers["vocoder"] = self._adamw(self.model.generator, rates["vocoder"])
        if self.discriminator is not None:
            self.optimizers["discriminator"] = self._adamw(self.discriminator, rates["discriminator"])
        self.schedulers = {k: build_scheduler(o, t.warmup_steps, t.lr_decay) for k, o in self.optimizers.items()}
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.recon_loss = None
        if t.train_vocoder:
            from losses import VocoderReconstructionLoss
            self.recon_loss = VocoderReconstructionLoss(hps).to(self.device)

        # DDP replicas: one wrapper per trained part, so each forward is an ordinary call.
        self.acoustic_fwd = self._wrap(self.model.acoustic) if t.train_acoustic else self.model.acoustic
        self.generator_fwd = self._wrap(self.model.generator) if t.train_vocoder else self.model.generator
        self.disc_fwd = self._wrap(self.discriminator) if self.discriminator is not None else None

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0  # batches of `epoch` already trained on (exact mid-epoch resume)
        self.skipped_steps = 0
        self.consecutive_skips = 0
        self.train_seconds = 0.0  # training wall time of earlier runs of this folder (from the checkpoint)
        self._fit_start: Optional[float] = None
        self._out_of_time = False
        self._unscaled = False  # GradScaler.unscale_ ran in this step (update() is then due)
        self.last_saved_step: Optional[int] = None
        self.stop = StopRequest(self.log)
        self.writer = None  # opened by fit(), after a resume succeeded: a refused run leaves no events file
        self._tensorboard = tensorboard and ctx.is_main
        self.train_set = self.sampler = self.collate = None
        self._val_batch = None
        if load_data:
            self._build_data()

    # -- construction -----------------------------------------------------------------------------------

    def _guidance_teacher(self) -> GuidanceTeacher:
        """The frozen guided velocity net of train.init_checkpoint (re-read on resume: the student's own
        weights move away from it). Built with this run's config, so a teacher of another shape is refused."""
        from config import guidance_refusal
        from training.voice_file import load_voice, read_voice

        path = self.hps.train.init_checkpoint
        refusal = guidance_refusal(read_voice(path, use_ema=True).hps)  # its own config: can it guide at all?
        if refusal:
            raise ConfigError(f"train.init_checkpoint {path} cannot teach guidance ({refusal}); distill from a "
                              f"voice trained with condition dropout (train.cond_drop_rate > 0)")
        teacher, _ = load_voice(path, self.device, config=self.hps)
        return GuidanceTeacher(teacher.acoustic.cfm, self.hps.train.guidance_distill_scale)

    def _adamw(self, module: torch.nn.Module, lr: float) -> torch.optim.AdamW:
        t = self.hps.train
        groups = [dict(group, lr=lr * group["lr_scale"]) for group in param_groups(module, t.weight_decay)]
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(t.betas), eps=t.eps)

    def _wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if not self.ctx.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(module, device_ids=ids)

    def _build_data(self) -> None:
        t = self.hps.train
        self.collate = TextMelCollate()
        self.train_set = TextMelLoader(self.hps.data.training_files, self.hps)
        self.sampler = DistributedBucketSampler(
            self.train_set, t.batch_size, length_boundaries(self.train_set.lengths),
            num_replicas=self.ctx.world_size, rank=self.ctx.rank,
            shuffle=True, seed=t.seed, max_frames_per_batch=t.max_frames_per_batch)

    def train_loader(self, epoch: int, skip: int = 0) -> torch.utils.data.DataLoader:
        """Batches of `epoch` for this rank, without the first `skip` (already trained on)."""
        self.sampler.set_epoch(epoch)
        batches = list(self.sampler)[skip:]
        # A private generator: creating the loader must not consume the global RNG (exact resume).
        g = torch.Generator().manual_seed(self.hps.train.seed + epoch)
        workers = self.hps.train.num_workers
        return torch.utils.data.DataLoader(self.train_set, batch_sampler=batches, collate_fn=self.collate,
                                           num_workers=workers, pin_memory=self.device.type == "cuda",
                                           generator=g, persistent_workers=False, worker_init_fn=ignore_stop_signals)

    def validation_batch(self) -> Optional[dict]:
        """The first EVAL_ITEMS validation clips as one batch (cached); None without a validation set."""
        if self._val_batch is None:
            path = self.hps.data.validation_files
            if not path or not Path(path).is_file():
                self.log.warning("validation file list %r not found: evaluation is skipped", path)
                self._val_batch = {}
            else:
                # Evaluation scores copy synthesis of the recordings' own mels: no generated vocoder mels needed.
                val_set = TextMelLoader(path, self.hps.replace(vocoder_mel_dir=None))
                items = [val_set[i] for i in range(min(EVAL_ITEMS, len(val_set)))]
                self._val_batch = self.collate(items) if items else {}
        return self._val_batch or None

    # -- checkpoints (train_state.py) and evaluation (train_eval.py) -------------------------------------

    def resume_or_init(self) -> None:
        """Continue from the newest loadable checkpoint in the run folder, else initialise (init_checkpoint)."""
        train_state.resume_or_init(self)

    def save(self) -> Optional[Path]:
        """Write G_<step>.pth (and D_<step>.pth) on rank 0; every rank must call it."""
        return train_state.save(self)

    def evaluate(self) -> Dict[str, float]:
        return train_eval.evaluate(self)
    # -- one step ----------------------------------------------------------------------------------------

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _clip(self, name: str, module: torch.nn.Module) -> float:
        """Gradient norm of one part; clipped to train.grad_clip for the acoustic model only.

        The vocoder and discriminator follow HiFi-GAN practice (no clipping): their mel-L1 * 45
        gradients are routinely in the hundreds, and clipping them to 1 would just rescale every step.
        """
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizers[name])
            self._unscaled = True
        params = [p for p in module.parameters() if p.grad is not None]
        clip = self.hps.train.grad_clip if name == "acoustic" else 0.0
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        return float(norm)

    def _optimizer_step(self, name: str) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizers[name])
        else:
            self.optimizers[name].step()
        self.schedulers[name].step()

    def _nonfinite(self, value: torch.Tensor) -> bool:
        """True on every rank if the value is non-finite on any rank (ranks must agree before backward)."""
        return dist_lib.any_true(not bool(torch.isfinite(value.detach()).all()), self.ctx)

    def _skip(self, what: str, losses: Dict[str, float], result: StepResult, parts: Sequence[str]) -> None:
        """Drop the gradients of `parts`, mark the step skipped (counted once per step in train_step), log."""
        for name in parts:
            self.optimizers[name].zero_grad(set_to_none=True)
        result.skipped = True
        result.skipped_parts.extend(parts)
        if self.scaler is not None and what.endswith("gradient norm"):
            # An fp16 overflow: GradScaler lowers the loss scale in update(); expected early in training.
            self.log.info("step %d: fp16 gradient overflow in the %s; update skipped, loss scale lowered",
                          self.step + 1, what)
            return
        self.log.warning("step %d: non-finite %s (%s); update skipped for the %s (%d earlier steps skipped)",
                         self.step + 1, what, ", ".join(f"{k}={v:.4g}" for k, v in losses.items()),
                         " and ".join(parts), self.skipped_steps)

    def train_step(self, batch: dict) -> StepResult:
        """One update of every trained part on `batch` (a TextMelCollate dict).

        A non-finite loss or gradient norm skips the update of that part (no optimizer, scheduler or EMA
        step) and is logged; the result is then marked skipped (skipped_parts names the parts) and the step
        counts once in skipped_steps, also when only the discriminator was skipped.
        """
        self._unscaled = False
        try:
            result = self._train_step(batch)
            self.skipped_steps += int(result.skipped)
            return result
        finally:
            if self._unscaled:
                self.scaler.update()  # once per step after any unscale_, also when a part was skipped

    def _train_step(self, batch: dict) -> StepResult:
        t, d = self.hps.train, self.hps.data
        self.model.train()
        if self.discriminator is not None:
            self.discriminator.train()
        batch = to_device(batch, self.device)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        result = StepResult(frames=int(batch["mel_lengths"].sum()))
        terms: Dict[str, torch.Tensor] = {}
        speakers = batch.get("speakers") if d.n_speakers > 1 else None

        with self.autocast():
            if t.train_acoustic:
                gain_db = None
                if batch.get("prosody") is not None and t.gain_augment_db > 0:
                    gain_db = (torch.rand(batch["mel"].size(0), device=self.device) * 2 - 1) * t.gain_augment_db
                out = self.acoustic_fwd(batch["text"], batch["text_lengths"], batch["mel"], batch["mel_lengths"],
                                        speakers, batch.get("durations"), t.max_mel_frames, self.condition_dropout,
                                        self.guidance_teacher, batch.get("prosody"), gain_db)
                terms.update(flow=out["loss_flow"], dur=out["loss_dur"], prior=out["loss_prior"])
                if self.model.acoustic.prosody_predictor is not None:
                    terms["prosody"] = out["loss_prosody"]
            if t.train_vocoder:
                seg_frames = t.segment_size // d.hop_length
                vocoder_mel = batch.get("vocoder_mel", batch["mel"])  # generated mels when data.vocoder_mel_dir
                mel_seg, wav_seg, _ = commons.rand_slice_mel_and_wav(vocoder_mel, batch["wav"], batch["mel_lengths"],
                                                                     seg_frames, d.hop_length)
                g = self.model.speaker_condition(batch["speakers"]) if d.n_speakers > 1 else None
                audio_hat, sub_hat, raw_pitch = self.generator_fwd(mel_seg, g, return_pitch=True)
                if raw_pitch is not None:
                    terms["pitch"] = pitch_loss(raw_pitch, wav_seg, d) * t.c_pitch

        adversarial = self.discriminator is not None and self.step >= t.discriminator_start_step
        if t.train_vocoder and adversarial:
            result.grad_norms.update(self._discriminator_step(wav_seg, audio_hat, result))
        if t.train_vocoder:
            terms.update(self._vocoder_losses(wav_seg, audio_hat, sub_hat, adversarial))

        loss = sum(v.float() for k, v in terms.items() if not k.startswith("_"))
        result.losses.update({k: float(v.detach()) for k, v in terms.items() if not k.startswith("_")})
        result.losses["total"] = float(loss.detach())
        g_parts = [n for n in ("acoustic", "vocoder") if n in self.optimizers]
        if self._nonfinite(loss):
            self._skip("loss", result.losses, result, g_parts)
            return result

        self._backward(loss)
        modules = {"acoustic": self.model.acoustic, "vocoder": self.model.generator}
        norms = {name: self._clip(name, modules[name]) for name in g_parts}
        result.grad_norms.update(norms)
        if not all(math.isfinite(v) for v in norms.values()):
            self._skip("gradient norm", norms, result, g_parts)
            return result
        for name in g_parts:
            self._optimizer_step(name)
        self.ema.update(self.model)
        return result

    def _discriminator_step(self, wav_seg, audio_hat, result: StepResult) -> Dict[str, float]:
        from losses import discriminator_loss
        with self.autocast():
            real_outs, fake_outs, _, _ = self.disc_fwd(wav_seg, audio_hat.detach())
        loss_d = discriminator_loss(real_outs, fake_outs)[0]
        result.losses["disc"] = float(loss_d.detach())
        if self._nonfinite(loss_d):
            self._skip("discriminator loss", {"disc": result.losses["disc"]}, result, ["discriminator"])
            return {}
        self._backward(loss_d)
        norm = self._clip("discriminator", self.discriminator)
        if not math.isfinite(norm):
            self._skip("discriminator gradient norm", {"disc": norm}, result, ["discriminator"])
            return {}
        self._optimizer_step("discriminator")
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        return {"discriminator": norm}

    def _vocoder_losses(self, wav_seg, audio_hat, sub_hat, adversarial: bool) -> Dict[str, torch.Tensor]:
        """Reconstruction (and, if `adversarial`, GAN) losses of the generator on one batch of segments, weighted."""
        t = self.hps.train
        rec = self.recon_loss(audio_hat, sub_hat, wav_seg)
        terms = dict(mel=rec["mel"] * t.c_mel, stft=rec["stft"] * t.c_stft, stft_sub=rec["stft_sub"] * t.c_stft)
        if t.c_envelope > 0:
            terms["envelope"] = rec["envelope"] * t.c_envelope
        if adversarial:
            from losses import feature_loss, generator_loss
            # Only the generator learns here: with the discriminator's weights frozen, autograd skips their
            # gradients and the whole real half (~40% of this pass on a CPU). The bare module, not its DDP
            # wrapper, because no discriminator gradient is reduced in this pass.
            with self.autocast(), commons.frozen(self.discriminator):
                _, fake_outs, real_fmaps, fake_fmaps = self.discriminator(wav_seg, audio_hat)
            terms["gen"] = generator_loss(fake_outs)[0] * t.c_gen
            terms["fm"] = feature_loss(real_fmaps, fake_fmaps) * t.c_fm
        return terms

    # -- evaluation and logging --------------------------------------------------------------------------

    def log_scalars(self, meter: Meter) -> None:
        if not self.ctx.is_main:
            return
        means = meter.means()
        frames_per_s = meter.frames * self.ctx.world_size / max(meter.seconds, 1e-9)
        s_per_step = meter.seconds / max(meter.count, 1)
        lrs = {f"lr/{k}": s.get_last_lr()[0] for k, s in self.schedulers.items()}
        if self.writer is not None:
            for k, v in {**means, **lrs}.items():
                self.writer.add_scalar(k, v, self.step)
            self.writer.add_scalar("speed/frames_per_s", frames_per_s, self.step)
            self.writer.add_scalar("speed/s_per_step", s_per_step, self.step)
            self.writer.add_scalar("train/skipped_steps", self.skipped_steps, self.step)
        losses = " ".join(f"{k[5:]}={v:.4f}" for k, v in means.items() if k.startswith("loss/"))
        self.log.info("step %d epoch %d | %s | lr %s | %.0f frames/s, %.3f s/step%s", self.step, self.epoch,
                      losses, " ".join(f"{v:.2e}" for v in lrs.values()), frames_per_s, s_per_step,
                      f" | {meter.skipped} skipped" if meter.skipped else "")

    # -- loop --------------------------------------------------------------------------------------------

    def fit(self) -> Optional[int]:
        """Train until train.max_steps / train.epochs or a stop signal. Returns the signal number, if any."""
        from tqdm import tqdm
        t = self.hps.train
        if self._tensorboard and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(log_dir=str(self.run_dir))
        self.stop.install()
        meter = Meter()
        bar = tqdm(total=t.max_steps, initial=self.step, disable=not self.ctx.is_main, dynamic_ncols=True,
                   desc=self.run_dir.name, unit="step")
        self._fit_start = time.perf_counter()
        self._out_of_time = t.max_minutes is not None and self.train_seconds >= 60 * t.max_minutes
        try:
            while self.epoch < t.epochs and not self._finished():
                loader = self.train_loader(self.epoch, self.batch_in_epoch)
                tic = time.perf_counter()
                for batch in start_data_workers(loader):
                    result = self.train_step(batch)
                    self.step += 1
                    self.batch_in_epoch += 1
                    self.consecutive_skips = self.consecutive_skips + 1 if result.skipped else 0
                    now = time.perf_counter()
                    meter.add(result, now - tic)
                    bar.update(1)
                    if not result.skipped:
                        bar.set_postfix(loss=f"{result.losses['total']:.3f}",
                                        fps=f"{result.frames * self.ctx.world_size / max(now - tic, 1e-9):.0f}")
                    if self.consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
                        raise RuntimeError(
                            f"{self.consecutive_skips} consecutive steps had non-finite losses: training "
                            f"diverged. Lower train.learning_rate, prefer bf16_run over fp16_run, or resume "
                            f"from an earlier checkpoint.")
                    if self.step % t.log_interval == 0:
                        self.log_scalars(meter)
                        meter.reset()
                    if self.step % t.eval_interval == 0:
                        self.save()  # first: a failing evaluation must not cost the steps since the last save
                        self.evaluate()
                    if t.max_minutes is not None:  # one decision for all ranks: their clocks differ
                        self._out_of_time = dist_lib.any_true(self.elapsed_seconds() >= 60 * t.max_minutes, self.ctx)
                    if dist_lib.any_true(self.stop.requested, self.ctx):
                        if self.last_saved_step != self.step:
                            self.save()
                        self.log.info("stopped at step %d; run the same command to resume", self.step)
                        return self.stop.signum or signal.SIGTERM
                    if self._finished():
                        break
                    tic = time.perf_counter()
                else:
                    self.epoch += 1
                    self.batch_in_epoch = 0
            if self.last_saved_step != self.step:
                self.save()
            self.log.info("training finished at step %d (epoch %d, %.1f min of training)", self.step, self.epoch,
                          self.elapsed_seconds() / 60)
            return None
        finally:
            bar.close()
            self.stop.restore()
            if self.writer is not None:
                self.writer.flush()

    def _finished(self) -> bool:
        return self._out_of_time or (self.hps.train.max_steps is not None and self.step >= self.hps.train.max_steps)

    def elapsed_seconds(self) -> float:
        """Training wall time of this run folder: earlier runs plus this fit() so far."""
        now = time.perf_counter()
        return self.train_seconds + (now - self._fit_start if self._fit_start is not None else 0.0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# ----------------------------------------------------------------------------------------------------------
# Entry points


def run_worker(ctx: DistContext, hps: HParams, run_dir: Path, notes: Sequence[str] = ()) -> Optional[int]:
    """Everything one training process does. Returns the stop signal number, if training was stopped."""
    logger = setup_logging(run_dir, ctx)
    trainer = None
    try:
        if ctx.is_main:
            for note in notes:
                logger.warning(note)
            logger.info("run folder %s | %d process(es) on %s%s | amp %s", run_dir, ctx.world_size, ctx.device,
                        f" ({ctx.backend})" if ctx.backend else "",
                        "fp16" if hps.train.fp16_run else "bf16" if hps.train.bf16_run else "off")
        trainer = Trainer(hps, run_dir, ctx, logger)
        if ctx.is_main:
            n_params = {k: sum(p.numel() for p in m.parameters()) / 1e6 for k, m in
                        (("acoustic", trainer.model.acoustic), ("vocoder", trainer.model.generator))}
            logger.info("parameters: %s", ", ".join(f"{k} {v:.2f}M" for k, v in n_params.items()))
        trainer.resume_or_init()
        signum = trainer.fit()
        if ctx.distributed:
            diff = dist_lib.parameter_max_difference(trainer.model, ctx)
            if trainer.discriminator is not None:
                diff = max(diff, dist_lib.parameter_max_difference(trainer.discriminator, ctx))
            (logger.info if diff == 0 else logger.error)(
                "replicas in sync check: max parameter difference across %d ranks = %.3g", ctx.world_size, diff)
        return signum
    except USER_ERRORS as e:  # the user's files or settings: one line on the console, the traceback in train.log
        logger.error("training stopped: %s", e)
        record = logger.makeRecord(logger.name, logging.DEBUG, __file__, 0, "traceback", None, sys.exc_info())
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
        raise
    except Exception:
        logger.exception("training failed")
        raise
    finally:
        if trainer is not None:
            trainer.close()
        close_logging(logger)


def freeze_all_but(model: torch.nn.Module, prefixes: Sequence[str]) -> None:
    """Leave requires_grad on only for parameters whose names start with one of `prefixes`."""
    names = [name for name, _ in model.named_parameters()]
    unknown = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unknown:
        raise ConfigError(f"train.trainable names no parameter: {unknown} (names look like "
                          f"'acoustic.emb_g' or 'acoustic.cfm.estimator.spk')")
    for name, param in model.named_parameters():
        if not name.startswith(tuple(prefixes)):
            param.requires_grad_(False)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the process exit code (128 + signal number when stopped by one)."""
    args = parse_args(argv)
    try:
        hps, run_dir, notes = prepare_run(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        signum = dist_lib.launch(run_worker, (hps, run_dir, notes), cpu_processes=args.cpu_processes,
                                 device=args.device)
    except USER_ERRORS as e:
        # Problems with the user's files or settings: one line here, the traceback is in train.log.
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if signum is None else 128 + int(signum)


if __name__ == "__main__":
    sys.exit(main())
