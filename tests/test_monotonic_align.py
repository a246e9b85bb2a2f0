"""Monotonic alignment search against a brute-force enumeration of every monotonic path."""
import itertools

import numpy as np
import pytest
import torch

from monotonic_align import maximum_path


def all_duration_vectors(t_text: int, t_mel: int):
    """Every way to give t_text tokens >= 1 frame each, t_mel frames in all (compositions of t_mel)."""
    for cuts in itertools.combinations(range(1, t_mel), t_text - 1):
        bounds = (0,) + cuts + (t_mel,)
        yield [bounds[i + 1] - bounds[i] for i in range(t_text)]


def path_from_durations(durations, t_text, t_mel):
    path = np.zeros((t_text, t_mel), dtype=np.int64)
    start = 0
    for i, d in enumerate(durations):
        path[i, start:start + d] = 1
        start += d
    return path


def brute_force(value: np.ndarray):
    """Best-scoring monotonic surjective path of a (T_text, T_mel) score matrix and its score."""
    t_text, t_mel = value.shape
    best, best_path = -np.inf, None
    for durations in all_duration_vectors(t_text, t_mel):
        path = path_from_durations(durations, t_text, t_mel)
        score = float((value * path).sum())
        if score > best:
            best, best_path = score, path
    return best_path, best


def test_matches_brute_force_on_random_scores():
    rng = np.random.default_rng(0)
    for _ in range(60):
        t_text = int(rng.integers(1, 6))
        t_mel = int(rng.integers(t_text, 10))
        value = rng.normal(size=(t_text, t_mel))
        ref_path, ref_score = brute_force(value)
        v = torch.from_numpy(value).float().unsqueeze(0)
        path = maximum_path(v, torch.ones_like(v))[0].numpy()
        assert (path * value).sum() == pytest.approx(ref_score, abs=1e-5)
        np.testing.assert_array_equal(path, ref_path)


def test_padded_batch_equals_items_alone_and_every_token_gets_a_frame():
    rng = np.random.default_rng(1)
    shapes = [(5, 9), (3, 4), (7, 20), (1, 6), (4, 4)]
    t_text_max = max(s[0] for s in shapes)
    t_mel_max = max(s[1] for s in shapes)
    value = torch.from_numpy(rng.normal(size=(len(shapes), t_text_max, t_mel_max))).float()
    mask = torch.zeros_like(value)
    for b, (tt, tm) in enumerate(shapes):
        mask[b, :tt, :tm] = 1
    paths = maximum_path(value, mask)
    for b, (tt, tm) in enumerate(shapes):
        alone = maximum_path(value[b:b + 1, :tt, :tm], torch.ones(1, tt, tm))[0]
        assert torch.equal(paths[b, :tt, :tm], alone)
        assert paths[b].sum() == tm and paths[b, tt:].sum() == 0 and paths[b, :, tm:].sum() == 0
        durations = paths[b, :tt, :tm].sum(1)
        assert (durations >= 1).all(), durations
        assert (paths[b, :tt, :tm].sum(0) == 1).all()  # every frame belongs to exactly one token
        # Monotonic: the token index of successive frames never decreases.
        token_of_frame = paths[b, :tt, :tm].argmax(0)
        assert (torch.diff(token_of_frame) >= 0).all() and (torch.diff(token_of_frame) <= 1).all()


def test_follows_a_planted_alignment():
    """A score matrix that strongly prefers a known segmentation recovers it, also on a large input."""
    rng = np.random.default_rng(2)
    t_text, t_mel = 60, 400
    durations = rng.multinomial(t_mel - t_text, np.ones(t_text) / t_text) + 1
    planted = path_from_durations(durations, t_text, t_mel)
    value = torch.from_numpy(rng.normal(size=(t_text, t_mel)) * 0.1 + 3.0 * planted).float()[None]
    path = maximum_path(value, torch.ones_like(value))[0]
    np.testing.assert_array_equal(path.numpy(), planted)


def test_fewer_frames_than_tokens_still_covers_every_frame():
    value = torch.randn(1, 6, 4)
    path = maximum_path(value, torch.ones_like(value))[0]
    assert (path.sum(0) == 1).all()
    assert path.sum() == 4


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        maximum_path(torch.zeros(1, 3, 4), torch.ones(1, 3, 5))
