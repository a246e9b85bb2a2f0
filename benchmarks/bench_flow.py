"""Velocity-network speed: cost of one network function evaluation (NFE) of the flow-matching transformer.

    python benchmarks/bench_flow.py                                  # base + small, fp32 + bf16, 2 threads, CPU
    python benchmarks/bench_flow.py --seconds 5 --runs 7 --threads 4
    python benchmarks/bench_flow.py --device cuda --dtypes fp32,bf16,fp16

One row per (config, dtype): after --warmup untimed calls, the median (and min) over --runs timed calls of
one forward pass of FlowMatchingTransformer on a single utterance of --seconds of audio (frames =
seconds * sampling_rate / hop), in inference mode. Reported: ms per NFE, ms per NFE per second of audio,
the implied RTF of the acoustic decoder alone for 10 Euler steps (10 NFE; text encoder, duration
predictor and vocoder excluded), and achieved GFLOP/s from an analytic count of that forward pass
(torch.utils.flop_counter: matmuls, attention and convolutions; elementwise ops not counted).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config import HParams  # noqa: E402
from flow_matching import FlowMatchingTransformer  # noqa: E402
from commons import synchronize  # noqa: E402
from evaluation.hardware import hardware_name  # noqa: E402

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# name -> (d_model, nhead, num_layers, dim_feedforward)
CONFIGS = {"base": (512, 8, 12, 2048), "small": (256, 4, 6, 1024)}


def build(name: str, hps: HParams, device: torch.device) -> FlowMatchingTransformer:
    d_model, nhead, layers, ff = CONFIGS[name]
    n_mels = hps.data.n_mel_channels
    net = FlowMatchingTransformer(n_mels, hps.model.hidden_channels + n_mels, d_model, nhead, layers, ff, dropout=0.0)
    # Perturb the zero-initialised gates and output projection so every layer carries signal, as in a
    # trained network (cost does not depend on the values, but bf16 range and denormals could).
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return net.to(device).eval()


def inputs(hps: HParams, frames: int, device: torch.device):
    n_mels = hps.data.n_mel_channels
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, n_mels, frames, generator=gen).to(device)
    cond = torch.randn(1, hps.model.hidden_channels + n_mels, frames, generator=gen).to(device)
    mask = torch.ones(1, 1, frames, device=device)
    t = torch.full((1,), 0.5, device=device)
    return x, mask, cond, t


def count_flops(net, args) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(*args)
    return counter.get_total_flops()


def time_forward(net, args, dtype, device, warmup: int, runs: int):
    def call():
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            net(*args)
        synchronize(device)

    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="base,small", help=f"comma list of {', '.join(CONFIGS)}")
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32, bf16, fp16 (autocast)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length of the utterance")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    hps = HParams()
    frames = int(round(args.seconds * hps.data.sampling_rate / hps.data.hop_length))
    seconds = frames * hps.data.hop_length / hps.data.sampling_rate
    hardware = hardware_name(device)
    print(f"hardware: {hardware} | device {device} | torch {torch.__version__} | threads {torch.get_num_threads()}")
    print(f"input: 1 utterance, {frames} frames = {seconds:.2f} s of audio | warm-up {args.warmup}, "
          f"median (min) of {args.runs} runs | one forward = 1 NFE | vocoder and text encoder not included")
    header = (f"{'config':<6} {'params':>7} {'dtype':<5} {'ms/NFE':>16} {'ms/NFE/s_audio':>15} "
              f"{'RTF@10NFE':>10} {'GFLOP/NFE':>10} {'GFLOP/s':>8}")
    print(header)
    print("-" * len(header))
    for name in args.configs.split(","):
        if name not in CONFIGS:
            parser.error(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
        net = build(name, hps, device)
        net_args = inputs(hps, frames, device)
        flops = count_flops(net, net_args)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        for dtype_name in args.dtypes.split(","):
            if dtype_name not in DTYPES:
                parser.error(f"unknown dtype {dtype_name!r}; choose from {', '.join(DTYPES)}")
            median, best = time_forward(net, net_args, DTYPES[dtype_name], device, args.warmup, args.runs)
            print(f"{name:<6} {params:>6.1f}M {dtype_name:<5} {median * 1e3:>8.1f} ({best * 1e3:>6.1f}) "
                  f"{median * 1e3 / seconds:>15.1f} {10 * median / seconds:>10.3f} {flops / 1e9:>10.1f} "
                  f"{flops / median / 1e9:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
