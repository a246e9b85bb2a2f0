"""Small tensor helpers shared by the models, data pipeline and training."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional, Union

import torch
import torch.nn.functional as F


def sequence_mask(lengths: torch.Tensor, max_length: Optional[int] = None) -> torch.Tensor:
    """lengths (B,) -> bool mask (B, max_length), True on valid positions."""
    if max_length is None:
        max_length = int(lengths.max())
    positions = torch.arange(max_length, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def durations_to_alignment(durations: torch.Tensor, text_mask: torch.Tensor, max_frames: Optional[int] = None
                           ) -> torch.Tensor:
    """Hard alignment from integer durations.

    durations (B, T_text) long, text_mask (B, T_text) bool -> attn (B, T_text, T_mel) float, where
    attn[b, i, j] = 1 when frame j belongs to token i.
    """
    durations = durations * text_mask
    ends = torch.cumsum(durations, dim=1)  # (B, T_text)
    if max_frames is None:
        max_frames = int(ends[:, -1].max())
    starts = ends - durations
    frames = torch.arange(max_frames, device=durations.device).view(1, 1, -1)
    return ((frames >= starts.unsqueeze(-1)) & (frames < ends.unsqueeze(-1))).float()


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'same' padding for an odd kernel with dilation."""
    return (kernel_size * dilation - dilation) // 2


def init_weights(module: torch.nn.Module, mean: float = 0.0, std: float = 0.01) -> None:
    """HiFi-GAN style init for conv layers (use with `module.apply`)."""
    if "Conv" in module.__class__.__name__:
        module.weight.data.normal_(mean, std)


def slice_segments(x: torch.Tensor, starts: torch.Tensor, segment_size: int) -> torch.Tensor:
    """x (B, C, T), starts (B,) long -> (B, C, segment_size); x must be long enough."""
    index = starts.view(-1, 1, 1) + torch.arange(segment_size, device=x.device).view(1, 1, -1)
    return torch.gather(x, 2, index.expand(x.size(0), x.size(1), segment_size))


def rand_slice_segments(x: torch.Tensor, lengths: torch.Tensor, segment_size: int,
                        generator: Optional[torch.Generator] = None):
    """Random crops of `segment_size` inside each item's valid length.

    x (B, C, T), lengths (B,) -> (segments (B, C, segment_size), starts (B,)). Items shorter than the
    segment start at 0 and are zero padded on the right.
    """
    if x.size(2) < segment_size:
        x = F.pad(x, (0, segment_size - x.size(2)))
    max_start = (lengths - segment_size).clamp(min=0)
    noise = torch.rand(lengths.shape, generator=generator, device="cpu").to(lengths.device)
    starts = (noise * (max_start + 1).float()).long().clamp(max=x.size(2) - segment_size)
    return slice_segments(x, starts, segment_size), starts


def rand_slice_mel_and_wav(mel: torch.Tensor, wav: torch.Tensor, mel_lengths: torch.Tensor, segment_frames: int,
                           hop_length: int, generator: Optional[torch.Generator] = None):
    """Matching random crops of mel frames and their audio samples (vocoder training segments).

    mel (B, C, T), wav (B, 1, T_wav), mel_lengths (B,) -> (mel_seg (B, C, segment_frames),
    wav_seg (B, 1, segment_frames * hop_length), starts (B,) in frames). When the batch is shorter than the
    segment, the mel is zero padded by rand_slice_segments; the wav is padded to the same length * hop so
    its crop stays in range (a short clip is then trained on with silence after it).
    """
    mel_seg, starts = rand_slice_segments(mel, mel_lengths, segment_frames, generator)
    needed = max(mel.size(2), segment_frames) * hop_length
    if wav.size(2) < needed:
        wav = F.pad(wav, (0, needed - wav.size(2)))
    wav_seg = slice_segments(wav, starts * hop_length, segment_frames * hop_length)
    return mel_seg, wav_seg, starts


@contextmanager
def frozen(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Turn off requires_grad of every parameter of `module` inside the block, then restore each flag."""
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def synchronize(device: Union[str, torch.device]) -> None:
    """Wait for queued GPU work so wall-clock stage timings are true (no-op on CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
