"""Training throughput: seconds per step, mel frames per second, and where a step's time goes.

    python benchmarks/bench_train.py                       # small + base configs, fp32 and bf16, CPU
    python benchmarks/bench_train.py --configs configs/small.json --dtypes bf16 --steps 5 --threads 2
    python benchmarks/bench_train.py --device cuda --dtypes fp32,bf16,fp16 --batch-items 16

Each measurement builds the trainer from the config (amp switched by --dtypes), runs `--warmup` steps,
then times `--steps` full training steps (acoustic + vocoder, + discriminator when the config enables
it) on one fixed batch of real clips (the test clips by default), with the real optimizer / EMA / loss
code. "frames/s" counts mel frames of the batch (86 frames = 1 s of audio at 22.05 kHz / hop 256).
MAS share = time inside monotonic_align.maximum_path (numba, CPU) / step time. "per step" splits a step
into MAS, the text encoder, duration predictor, velocity net and vocoder forwards, the backward passes,
optimizer + EMA updates and the rest (losses, discriminator, bookkeeping); "loading the batch" is what a
data-loader worker spends reading, resampling and computing mels for one batch (no mel cache).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import config as config_lib  # noqa: E402
import monotonic_align  # noqa: E402
import train_flow_matching as train  # noqa: E402
from data_utils import TextMelCollate, TextMelLoader  # noqa: E402
from training.distributed import DistContext  # noqa: E402
from commons import synchronize  # noqa: E402
from evaluation.hardware import cpu_name, hardware_name  # noqa: E402

DTYPES = {"fp32": dict(fp16_run=False, bf16_run=False), "bf16": dict(fp16_run=False, bf16_run=True),
          "fp16": dict(fp16_run=True, bf16_run=False)}


class PhaseTimer:
    """Seconds per phase of a training step: module forwards (hooks), Trainer methods and MAS (wrapped)."""

    def __init__(self):
        self.seconds: dict = {}
        self._undo = []

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def module(self, module: torch.nn.Module, name: str) -> None:
        def before(*_):
            module._phase_t0 = time.perf_counter()

        def after(*_):
            self.add(name, time.perf_counter() - module._phase_t0)
        self._undo += [module.register_forward_pre_hook(before).remove, module.register_forward_hook(after).remove]

    def method(self, owner, attr: str, name: str) -> None:
        inner = getattr(owner, attr)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - t)
        setattr(owner, attr, timed)
        self._undo.append(lambda: setattr(owner, attr, inner))

    def remove(self) -> None:
        for undo in reversed(self._undo):
            undo()


def profile_phases(trainer, timer: PhaseTimer) -> None:
    """Time the parts of a step named in the issue: MAS, text encoder, duration predictor, velocity net,
    vocoder, backward passes, optimizer + EMA (the rest: losses, discriminator, bookkeeping)."""
    acoustic = trainer.model.acoustic
    timer.module(acoustic.encoder, "text encoder")
    if acoustic.duration_predictor is not None:
        timer.module(acoustic.duration_predictor, "duration predictor")
    timer.module(acoustic.cfm.estimator, "velocity net")
    timer.module(trainer.model.generator, "vocoder")
    timer.method(monotonic_align, "maximum_path", "MAS")
    timer.method(trainer, "_backward", "backward")
    timer.method(trainer, "_optimizer_step", "optimizer")
    timer.method(trainer.ema, "update", "optimizer")


def make_batch(hps, filelist: str, items: int) -> dict:
    dataset = TextMelLoader(filelist, hps)
    return TextMelCollate()([dataset[i % len(dataset)] for i in range(items)])


def measure(config_path: str, dtype: str, args, device: torch.device) -> dict:
    hps = config_lib.load_config(config_path).replace(**DTYPES[dtype])
    if args.no_discriminator:
        hps = hps.replace(use_discriminator=False)
    t0 = time.perf_counter()
    batch = make_batch(hps, args.filelist, args.batch_items)
    data_seconds = time.perf_counter() - t0  # read, resample, mel (no cache), collate: a loader worker's job
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = train.Trainer(hps, Path(run_dir), DistContext(device=device), tensorboard=False, load_data=False)
        timer = PhaseTimer()
        profile_phases(trainer, timer)
        try:
            for _ in range(args.warmup):
                trainer.train_step(batch)
            synchronize(device)
            timer.seconds.clear()
            t0 = time.perf_counter()
            skipped = 0
            for _ in range(args.steps):
                skipped += trainer.train_step(batch).skipped
            synchronize(device)
            elapsed = time.perf_counter() - t0
        finally:
            timer.remove()
        n_params = sum(p.numel() for p in trainer.model.parameters()) / 1e6
        n_disc = sum(p.numel() for p in trainer.discriminator.parameters()) / 1e6 if trainer.discriminator else 0.0
    frames = int(batch["mel_lengths"].sum())
    s_per_step = elapsed / args.steps
    return dict(config=Path(config_path).name, dtype=dtype, params_m=round(n_params, 2),
                disc_params_m=round(n_disc, 2), batch_items=args.batch_items, batch_frames=frames,
                audio_seconds=round(frames * hps.data.hop_length / hps.data.sampling_rate, 2),
                s_per_step=round(s_per_step, 3), frames_per_s=round(frames / s_per_step, 1),
                mas_ms_per_step=round(1000 * timer.seconds.get("MAS", 0.0) / args.steps, 2),
                mas_share=round(timer.seconds.get("MAS", 0.0) / elapsed, 5), skipped_steps=skipped,
                data_ms_per_batch=round(1000 * data_seconds, 1),
                phases_ms={k: round(1000 * v / args.steps, 1) for k, v in timer.seconds.items()}
                | {"rest": round(1000 * (elapsed - sum(timer.seconds.values())) / args.steps, 1)})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="configs/small.json,configs/flow_matching.json")
    p.add_argument("--dtypes", default="fp32,bf16", help=f"comma list of {sorted(DTYPES)}")
    p.add_argument("--filelist", default=str(ROOT / "tests" / "data" / "filelist.txt"))
    p.add_argument("--batch-items", type=int, default=4, help="clips per batch (the filelist is cycled)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--no-discriminator", action="store_true", help="measure without the GAN discriminator")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    os.chdir(ROOT)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    hardware = hardware_name(device) if device.type == "cuda" else f"{cpu_name()}, {os.cpu_count()} cores"
    print(f"# device {device} ({hardware}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.warmup} warm-up + {args.steps} timed steps, full step (acoustic + vocoder"
          f"{'' if args.no_discriminator else ' + discriminator if enabled'})")
    rows = []
    header = f"{'config':<20} {'dtype':<5} {'params':>7} {'disc':>6} {'frames':>6} {'s/step':>8} {'frames/s':>9} {'MAS ms':>7} {'MAS':>6}"
    print(header)
    for cfg in args.configs.split(","):
        for dtype in args.dtypes.split(","):
            r = measure(cfg, dtype, args, device)
            rows.append(r)
            print(f"{r['config']:<20} {dtype:<5} {r['params_m']:>6.1f}M {r['disc_params_m']:>5.1f}M "
                  f"{r['batch_frames']:>6} {r['s_per_step']:>8.3f} {r['frames_per_s']:>9.1f} "
                  f"{r['mas_ms_per_step']:>7.1f} {100 * r['mas_share']:>5.2f}%", flush=True)
            print("    per step: " + ", ".join(f"{k} {v:.0f} ms ({100 * v / (1000 * r['s_per_step']):.0f}%)"
                                             for k, v in r["phases_ms"].items())
                  + f"; loading the batch once: {r['data_ms_per_batch']:.0f} ms", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(device=str(device), hardware=hardware,
                                                   threads=torch.get_num_threads(), rows=rows), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
