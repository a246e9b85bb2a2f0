"""TensorBoard evaluation of a training run, every train.eval_interval steps (rank 0, EMA weights).

On a few validation clips: the acoustic model's validation losses, ground-truth vs generated mel and
the alignment as images, generated audio; the vocoder's copy synthesis (ground-truth mel -> audio) and
its mel L1 to the recording. A vocoder-only run (train.train_acoustic false) skips the acoustic part.
Runs under a forked RNG with a fixed seed: samples are comparable across evaluations and the training
random streams are untouched (exact resume).
"""
from __future__ import annotations

from typing import Dict

import torch

from mel_processing import mel_from_config
from sampling import SamplingConfig
from training.train_utils import to_device

EVAL_ITEMS = 3  # validation clips rendered at each evaluation
EVAL_SAMPLING = SamplingConfig(steps=10)


@torch.no_grad()
def evaluate(trainer) -> Dict[str, float]:
    """Log the evaluation of `trainer` (a train_flow_matching.Trainer) at its step; returns the scalars."""
    if not trainer.ctx.is_main:
        return {}
    batch = trainer.validation_batch()
    if batch is None:
        return {}
    batch = to_device(batch, trainer.device)
    model = trainer.ema.module.eval()
    d = trainer.hps.data
    speakers = batch["speakers"] if d.n_speakers > 1 else None
    metrics: Dict[str, float] = {}
    devices = [trainer.device] if trainer.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(trainer.hps.train.seed)
        acoustic = None
        if trainer.hps.train.train_acoustic:
            out = model.acoustic(batch["text"], batch["text_lengths"], batch["mel"], batch["mel_lengths"],
                                 speakers, batch.get("durations"), prosody=batch.get("prosody"))
            metrics.update({f"val/{k[5:]}": float(out[k]) for k in ("loss_flow", "loss_dur", "loss_prior",
                                                                       "loss_prosody")})
            gens = [torch.Generator(trainer.device).manual_seed(trainer.hps.train.seed + i)
                    for i in range(batch["text"].size(0))]
            acoustic = (out, *model.infer(batch["text"], batch["text_lengths"], EVAL_SAMPLING, speakers, gens))
        copy_audio, _ = model.vocode(batch["mel"], speakers)
    metrics["val/vocoder_mel_l1"] = _copy_synthesis_mel_l1(batch, copy_audio, d)
    if trainer.writer is not None:
        _write(trainer, batch, copy_audio, acoustic, metrics)
    trainer.log.info("eval at step %d: %s", trainer.step, " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return metrics


def _copy_synthesis_mel_l1(batch: dict, copy_audio: torch.Tensor, d) -> float:
    """Mean L1 between the log-mel of the vocoded ground-truth mel and the ground-truth mel, valid frames only."""
    total, count = 0.0, 0
    for i in range(copy_audio.size(0)):
        n = int(batch["mel_lengths"][i])
        mel_hat = mel_from_config(copy_audio[i, :, :n * d.hop_length].float(), d)[0, :, :n]
        total += float((mel_hat - batch["mel"][i, :, :n].float()).abs().sum())
        count += mel_hat.numel()
    return total / max(count, 1)


def _write(trainer, batch: dict, copy_audio: torch.Tensor, acoustic, metrics: Dict[str, float]) -> None:
    from training.plotting import plot_alignment, plot_spectrograms

    writer, step, d = trainer.writer, trainer.step, trainer.hps.data
    sr = d.sampling_rate
    for k, v in metrics.items():
        writer.add_scalar(k, v, step)
    for i in range(batch["mel"].size(0)):
        n_mel = int(batch["mel_lengths"][i])
        writer.add_audio(f"vocoder/{i}", copy_audio[i, 0, :n_mel * d.hop_length].float().cpu(), step, sample_rate=sr)
        if acoustic is not None:
            out, audio, _, mel_gen, extra = acoustic
            n_gen, n_text = int(extra["mel_lengths"][i]), int(batch["text_lengths"][i])
            writer.add_image(f"mel/{i}", plot_spectrograms(
                [batch["mel"][i, :, :n_mel].float().cpu().numpy(), mel_gen[i, :, :n_gen].float().cpu().numpy()],
                ["ground truth", f"generated (EMA, {EVAL_SAMPLING.steps} steps)"]), step, dataformats="HWC")
            writer.add_image(f"align/{i}", plot_alignment(out["attn"][i, :n_text, :n_mel].float().cpu().numpy()),
                             step, dataformats="HWC")
            writer.add_audio(f"gen/{i}", audio[i, 0, :int(extra["audio_lengths"][i])].float().cpu(), step,
                             sample_rate=sr)
        if not getattr(trainer, "_logged_gt", False):
            writer.add_audio(f"gt/{i}", batch["wav"][i, 0, :int(batch["wav_lengths"][i])].cpu(), step, sample_rate=sr)
    trainer._logged_gt = True
    writer.flush()
