"""Monotonic alignment search (MAS, Glow-TTS) compiled with numba: no Cython build step.

The best monotonic, surjective path through a (T_text, T_mel) score matrix: frame 0 belongs to token 0,
the last frame to the last token, and from one frame to the next the token index stays or advances by
one. When T_mel >= T_text every token therefore gets at least one frame.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit

_NEG_INF = -np.inf


@njit(cache=True)
def _path_one(value, t_text, t_mel, path):
    """Fill path[:t_text, :t_mel] (zeros on entry) with the best monotonic path through value.

    value (T_text, T_mel) scores, path (T_text, T_mel) 0/1. Cumulative scores are kept in a separate
    float64 array, so the caller's scores are not modified and long paths do not lose precision.
    """
    if t_text == 0 or t_mel == 0:
        return
    dp = np.full((t_text, t_mel), _NEG_INF)
    dp[0, 0] = value[0, 0]
    for x in range(1, t_mel):
        # Row y is reachable at frame x only if y <= x; rows above stay -inf.
        for y in range(min(t_text, x + 1)):
            stay = dp[y, x - 1]
            move = dp[y - 1, x - 1] if y > 0 else _NEG_INF
            dp[y, x] = value[y, x] + (stay if stay >= move else move)
    y = t_text - 1
    for x in range(t_mel - 1, -1, -1):
        path[y, x] = 1
        # Step down a token when it scores better, or when staying would leave too few frames for the
        # remaining tokens (y >= x). Ties prefer staying.
        if x > 0 and y > 0 and (y >= x or dp[y - 1, x - 1] > dp[y, x - 1]):
            y -= 1


@njit(cache=True)
def _path_batch(values, t_texts, t_mels, paths):
    for b in range(values.shape[0]):
        _path_one(values[b], t_texts[b], t_mels[b], paths[b])


def maximum_path(value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hard monotonic alignment maximising the summed score.

    value (B, T_text, T_mel) float: score of assigning frame j to token i (e.g. log-likelihood).
    mask (B, T_text, T_mel): 1 on valid (token, frame) pairs, i.e. the outer product of text and mel masks.
    Returns path (B, T_text, T_mel) of 0/1 with value's dtype and device; durations = path.sum(2).

    If an item has fewer frames than tokens no surjective path exists; the path then still covers every
    frame but the first tokens get zero frames.
    """
    if value.dim() != 3 or value.shape != mask.shape:
        raise ValueError(f"maximum_path expects value and mask of the same shape (B, T_text, T_mel), got "
                         f"{tuple(value.shape)} and {tuple(mask.shape)}")
    # Valid rows / columns of the outer-product mask (amax avoids materialising a bool copy).
    mask = mask.detach()
    t_texts = (mask.amax(2) > 0).sum(1).cpu().numpy().astype(np.int64)
    t_mels = (mask.amax(1) > 0).sum(1).cpu().numpy().astype(np.int64)
    # fp32 scores go to numba without a copy (the cumulative scores are float64 inside); the path is
    # written as float32 so it comes back to torch without a conversion.
    values = value.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    paths = np.zeros(values.shape, dtype=np.float32)
    _path_batch(values, t_texts, t_mels, paths)
    return torch.from_numpy(paths).to(device=value.device, dtype=value.dtype)
