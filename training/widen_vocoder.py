"""Widen a trained MB-iSTFT vocoder without losing what it learned (Net2WiderNet).

    python -m training.widen_vocoder logs/vocoder/G_20000.pth logs/vocoder_wide_init.pth --channels 352

A mel-only vocoder that stops improving while its training loss equals its validation loss is short of
capacity, and a wider one trained from scratch costs many hours on a CPU. Net2WiderNet (Chen et al.,
2016) grows each layer instead: a new channel copies an existing one, and every layer that reads the
copied channel splits its weights between the two, so the wide network computes the same waveform as
the narrow one. A little noise on the copies' incoming weights lets them diverge once training
resumes. Leaky ReLU is elementwise, so the copies stay exact through it and through the residual sums.

The output is a vocoder-only file (as `export_voice.py --vocoder-only` writes, float32) whose config has
`model.upsample_initial_channel` = --channels; start a run from it with `train.init_checkpoint` and
`train.init_parts` ["vocoder"] and the same `upsample_initial_channel` in the run's config.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from atomic import check_output_path
from config import ConfigError
from training.checkpoint import CheckpointError, load_state_checked, save_checkpoint
from models import MultiBandISTFTGenerator
from training.voice_file import VOCODER_PREFIX, read_vocoder

# Refused above this: parameters grow with the square of the width, and --channels 100000 would ask for
# hundreds of GB. 100M parameters (0.4 GB in float32) is about 4x the shipped vocoder's width.
MAX_PARAMETERS = 100_000_000


def channel_map(old: int, new: int, generator: torch.Generator) -> torch.Tensor:
    """(new,) long: which old channel each new channel copies (the first `old` are themselves)."""
    if new < old:
        raise ValueError(f"cannot widen {old} channels to {new}: the new width must be at least the old one")
    extra = torch.randint(0, old, (new - old,), generator=generator)
    return torch.cat([torch.arange(old), extra])


def widen_weight(weight: torch.Tensor, out_map: Optional[torch.Tensor], in_map: Optional[torch.Tensor]
                 ) -> torch.Tensor:
    """A conv weight (out, in, k) with copied output channels and input channels split between each old
    channel's copies (so summed over copies they equal the old)."""
    if out_map is not None:
        weight = weight[out_map]
    if in_map is not None:
        copies = torch.bincount(in_map).to(weight.dtype)
        weight = weight[:, in_map] / copies[in_map].view(1, -1, 1)
    return weight


def add_noise_to_copies(weight: torch.Tensor, first_copy: int, scale: float, generator: torch.Generator
                        ) -> torch.Tensor:
    """A conv weight (out, in, k) whose output channels first_copy.. (the copies) are perturbed by
    scale x weight std."""
    weight = weight.clone()
    weight[first_copy:] += scale * float(weight.std()) * torch.randn(weight[first_copy:].shape, generator=generator)
    return weight


def _conv_plan(generator: MultiBandISTFTGenerator) -> List[tuple]:
    """(module name, index of the channel map it writes or None, index of the map it reads or None)."""
    plan = [("conv_pre", 0, None)]
    if generator.cond is not None:
        plan.append(("cond", 0, None))
    for i in range(len(generator.ups)):
        plan.append((f"ups.{i}", i + 1, i))
        for j in range(i * generator.num_kernels, (i + 1) * generator.num_kernels):
            block = generator.resblocks[j]
            plan += [(f"resblocks.{j}.{name}", i + 1, i + 1) for name, module in block.named_modules()
                     if isinstance(module, nn.Conv1d)]
    plan.append(("conv_post", None, len(generator.ups)))
    return plan


def stage_widths(generator: MultiBandISTFTGenerator) -> List[int]:
    """Channels of conv_pre's output and of each upsampling stage's output."""
    return [generator.conv_pre.out_channels] + [up.out_channels for up in generator.ups]


@torch.no_grad()
def widen_generator(narrow: MultiBandISTFTGenerator, wide: MultiBandISTFTGenerator, noise: float = 1e-3,
                    seed: int = 0) -> MultiBandISTFTGenerator:
    """Load into `wide` (same config but a larger upsample_initial_channel) the function of `narrow`; returns wide.

    Both may be weight-normed or not: weights are read and written through `module.weight`."""
    rng = torch.Generator().manual_seed(seed)
    widths = stage_widths(narrow)
    maps = [channel_map(o, n, rng) for o, n in zip(widths, stage_widths(wide))]
    for name, out_idx, in_idx in _conv_plan(narrow):
        src, dst = narrow.get_submodule(name), wide.get_submodule(name)
        transposed = isinstance(src, nn.ConvTranspose1d)  # weight (in, out, k): swap to (out, in, k) and back
        out_map = None if out_idx is None else maps[out_idx]
        in_map = None if in_idx is None else maps[in_idx]
        weight = widen_weight(src.weight.transpose(0, 1) if transposed else src.weight, out_map, in_map)
        if out_map is not None and noise > 0:
            weight = add_noise_to_copies(weight, widths[out_idx], noise, rng)
        weight = (weight.transpose(0, 1) if transposed else weight).contiguous()
        if parametrize.is_parametrized(dst, "weight"):
            dst.weight = weight  # through weight norm's right_inverse
        else:
            dst.weight.copy_(weight)
        dst.bias.copy_(src.bias if out_map is None else src.bias[out_map])
    return wide


def max_channels(narrow: MultiBandISTFTGenerator, channels: int, multiple: int) -> int:
    """The widest upsample_initial_channel (a multiple of `multiple`) whose generator stays under MAX_PARAMETERS,
    estimated from the narrow one (`channels` wide): parameters grow with the square of the width."""
    params = sum(p.numel() for p in narrow.parameters())
    return int(channels * math.sqrt(MAX_PARAMETERS / params)) // multiple * multiple


def _refuse(message: str) -> None:
    """One `error:` line and exit status 2 (argparse's), before anything is written."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="vocoder file, voice or training checkpoint (EMA weights are used)")
    ap.add_argument("output", type=Path, help="the widened vocoder-only file to write")
    ap.add_argument("--channels", type=int, required=True, help="new model.upsample_initial_channel")
    ap.add_argument("--noise", type=float, default=1e-3, help="noise on the copies' weights, x weight std")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not args.source.is_file():
        _refuse(f"{args.source} does not exist; give a vocoder file, voice or G_<step>.pth")
    try:
        check_output_path(args.output, inputs=[args.source], flag="output", example="wide.pth")
        state, hps, ckpt = read_vocoder(args.source)
        if hps.model.vocoder != "mb_istft":
            raise ValueError(f"{args.source} is a {hps.model.vocoder} vocoder; widen_vocoder grows the MB-iSTFT "
                             f"generator only (grow a source-filter vocoder with model.source_filter_channels and "
                             f"train it afresh)")
        narrow = MultiBandISTFTGenerator(hps)
        load_state_checked(narrow, {k: v.float() for k, v in state.items()}, args.source)
    except (CheckpointError, ConfigError, ValueError, OSError) as e:
        _refuse(str(e))
    old = hps.model.upsample_initial_channel
    if args.channels <= old:
        _refuse(f"--channels {args.channels} must exceed the vocoder's {old}")
    multiple = 2 ** len(hps.model.upsample_rates)  # channels halve per stage
    widest = max_channels(narrow, old, multiple)
    if args.channels > widest:  # checked before the wide generator is allocated
        _refuse(f"--channels {args.channels} would make a vocoder of about "
                f"{sum(p.numel() for p in narrow.parameters()) * (args.channels / old) ** 2 / 1e6:,.0f}M parameters; "
                f"at most {widest} channels ({MAX_PARAMETERS // 1_000_000}M parameters) are allowed")
    try:
        wide_hps = hps.replace(upsample_initial_channel=args.channels)
    except ConfigError as e:
        _refuse(f"--channels {args.channels} does not fit this vocoder: {e}")
    wide = widen_generator(narrow, MultiBandISTFTGenerator(wide_hps), args.noise, args.seed)
    weights = {VOCODER_PREFIX + k: v for k, v in wide.state_dict().items()}
    save_checkpoint(args.output, {"ema": weights, "config": wide_hps.to_dict(), "n_vocab": ckpt.get("n_vocab"), "step": 0,
                                  "weights": "ema-only", "dtype": "float32", "parts": ["vocoder"],
                                  "metadata": {"widened_from": str(args.source), "channels": args.channels}})
    params = sum(p.numel() for p in wide.parameters())
    print(f"wrote {args.output}: {params / 1e6:.2f}M parameters "
          f"({sum(p.numel() for p in narrow.parameters()) / 1e6:.2f}M before)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
