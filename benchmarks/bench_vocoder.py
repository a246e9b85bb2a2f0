"""Vocoder speed: MB-iSTFT generator vs a plain HiFi-GAN-style generator with the same front (and, with
--models source_filter, the source-filter vocoder).

    python benchmarks/bench_vocoder.py                          # default config, CPU, 2 threads, fp32 + bf16
    python benchmarks/bench_vocoder.py -c configs/small.json --seconds 10 --runs 7 --threads 2
    python benchmarks/bench_vocoder.py --device cuda --dtypes fp32,bf16,fp16

The input is the log-mel of real speech (tests/data clips, tiled to --seconds). Each row: --warmup
untimed runs, then the median (and min) over --runs timed runs of one forward pass (weight norm folded,
inference mode). RTF = compute seconds / audio seconds (lower is faster). The baseline keeps conv_pre,
the initial channels and the residual blocks, but upsamples all the way to the waveform rate (e.g.
rates [8, 8, 2, 2] for hop 256) and ends in conv_post -> tanh, as HiFi-GAN does, without iSTFT / PQMF.

Note: on CPUs without native bf16 (e.g. AVX2-only x86), bf16 autocast convolutions fall back to slow
kernels; measured here (AMD EPYC, AVX2, 1 thread) a conv1d ran ~30x slower in bf16 than in fp32.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import List

import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import config as config_lib  # noqa: E402
from commons import init_weights  # noqa: E402
from mel_processing import mel_from_config  # noqa: E402
from models import MultiBandISTFTGenerator  # noqa: E402
from source_filter import SourceFilterGenerator  # noqa: E402
from modules import (LRELU_SLOPE, ResBlock1, ResBlock2, remove_weight_norm_all,  # noqa: E402
                     upsample_padding)
from commons import synchronize  # noqa: E402
from evaluation.hardware import cpu_name, hardware_name  # noqa: E402

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def waveform_rates(hop_length: int) -> List[int]:
    """HiFi-GAN style rates: up to two 8s, then 2s: 256 -> [8, 8, 2, 2], 512 -> [8, 8, 2, 2, 2]."""
    rates, rest = [], hop_length
    while rest % 8 == 0 and len(rates) < 2:
        rates.append(8)
        rest //= 8
    while rest % 2 == 0:
        rates.append(2)
        rest //= 2
    if rest != 1:
        raise ValueError(f"hop_length {hop_length} is not a power of 2; no baseline stack for it")
    return rates


class HiFiGANBaseline(nn.Module):
    """conv_pre -> [ConvTranspose + ResBlocks] per rate -> conv_post -> tanh: mel (B, n_mels, T) -> (B, 1, T * hop)."""

    def __init__(self, hps):
        super().__init__()
        m = hps.model
        channels = m.upsample_initial_channel
        self.rates = waveform_rates(hps.data.hop_length)
        self.conv_pre = weight_norm(nn.Conv1d(hps.data.n_mel_channels, channels, 7, padding=3))
        block = ResBlock1 if m.resblock == "1" else ResBlock2
        self.ups, self.resblocks = nn.ModuleList(), nn.ModuleList()
        for i, rate in enumerate(self.rates):
            kernel = 2 * rate
            padding, output_padding = upsample_padding(kernel, rate)
            c_out = max(channels // (2 ** (i + 1)), 1)
            self.ups.append(weight_norm(nn.ConvTranspose1d(max(channels // (2 ** i), 1), c_out, kernel, rate,
                                                           padding=padding, output_padding=output_padding)))
            for k, d in zip(m.resblock_kernel_sizes, m.resblock_dilation_sizes):
                self.resblocks.append(block(c_out, k, d))
        self.num_kernels = len(m.resblock_kernel_sizes)
        self.conv_post = weight_norm(nn.Conv1d(c_out, 1, 7, padding=3))
        self.ups.apply(init_weights)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            x = sum(b(x) for b in self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]) / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x)))


def speech_mel(hps, seconds: float, device: torch.device) -> torch.Tensor:
    """Log-mel (1, n_mels, frames) of the test clips, tiled to `seconds` of audio."""
    clips = sorted((ROOT / "tests" / "data" / "wavs").glob("*.wav"))
    if not clips:
        raise FileNotFoundError(f"no test clips in {ROOT / 'tests' / 'data' / 'wavs'}")
    waves = [torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in clips]
    wav = torch.cat(waves)
    frames = int(round(seconds * hps.data.sampling_rate / hps.data.hop_length))
    mel = mel_from_config(wav.unsqueeze(0), hps.data)
    reps = -(-frames // mel.size(-1))
    return mel.repeat(1, 1, reps)[..., :frames].to(device)


def time_runs(fn, device: torch.device, warmup: int, runs: int) -> List[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        synchronize(device)
        t = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t)
    return times


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--config", default=str(ROOT / "configs" / "flow_matching.json"))
    p.add_argument("--seconds", type=float, default=10.0, help="audio length per forward pass")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32, bf16, fp16 (autocast)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", default="torch,conv,baseline",
                   help="comma list: torch (MB-iSTFT with torch.istft), conv (MB-iSTFT with the ONNX-exportable "
                        "conv-transpose iSTFT), baseline (HiFi-GAN-style generator), source_filter (source_filter.py "
                        "at the config's source_filter_channels / layers)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    hps = config_lib.load_config(args.config)
    torch.manual_seed(0)
    mel = speech_mel(hps, args.seconds, device)
    audio_seconds = mel.size(-1) * hps.data.hop_length / hps.data.sampling_rate

    wanted = args.models.split(",")
    unknown = set(wanted) - {"torch", "conv", "baseline", "source_filter"}
    if unknown:
        p.error(f"unknown --models entries {sorted(unknown)}; choose from torch, conv, baseline, source_filter")
    models = {}
    for impl in ("torch", "conv"):
        if impl in wanted:
            gen = MultiBandISTFTGenerator(hps, istft_impl=impl)
            gen.remove_weight_norm()
            models[f"MB-iSTFT ({impl} iSTFT)"] = (gen, lambda g, x: g(x)[0])
    if "source_filter" in wanted:
        m = hps.model
        models[f"source-filter {m.source_filter_channels}x{m.source_filter_layers}"] = (
            SourceFilterGenerator(hps.replace(vocoder="source_filter")), lambda g, x: g(x)[0])
    if "baseline" in wanted:
        base = HiFiGANBaseline(hps)
        remove_weight_norm_all(base)
        models[f"HiFi-GAN-style {base.rates}"] = (base, lambda g, x: g(x))

    gpu = hardware_name(device) if device.type == "cuda" else "-"
    print(f"hardware: {cpu_name()} ({platform.machine()}), gpu: {gpu}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {device}")
    print(f"config {args.config}: hop {hps.data.hop_length}, upsample_rates {hps.model.upsample_rates}, "
          f"initial channels {hps.model.upsample_initial_channel}, resblock {hps.model.resblock}, "
          f"istft n_fft {hps.model.gen_istft_n_fft} hop {hps.model.gen_istft_hop_size}, subbands {hps.model.subbands}")
    print(f"input: {mel.size(-1)} mel frames = {audio_seconds:.2f} s of audio; warm-up {args.warmup}, "
          f"median of {args.runs} runs; vocoder only (no acoustic model)")
    print(f"{'model':<34} {'params':>8} {'dtype':>5} {'median s':>9} {'min s':>7} {'RTF':>7}")
    for name, (model, call) in models.items():
        model.to(device).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for dtype_name in args.dtypes.split(","):
            dtype = DTYPES[dtype_name]

            @torch.inference_mode()
            def run():
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    return call(model, mel)

            out = run()
            assert out.shape[-1] == mel.size(-1) * hps.data.hop_length, (name, tuple(out.shape))
            times = time_runs(run, device, args.warmup, args.runs)
            median = statistics.median(times)
            print(f"{name:<34} {params:>7.2f}M {dtype_name:>5} {median:>9.3f} {min(times):>7.3f} "
                  f"{median / audio_seconds:>7.4f}", flush=True)


if __name__ == "__main__":
    main()
