"""Figures for TensorBoard: spectrograms and alignments rendered to (H, W, 3) uint8 arrays.

matplotlib is imported lazily with the non-interactive Agg backend, so training never needs a display
and modules that do not plot do not pay for the import.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def _figure_to_array(fig) -> np.ndarray:
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    import matplotlib.pyplot as plt
    plt.close(fig)
    return image


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def plot_spectrograms(mels: Sequence[np.ndarray], titles: Optional[Sequence[str]] = None) -> np.ndarray:
    """One panel per mel (n_mels, T) stacked vertically -> image (H, W, 3) uint8."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(mels), 1, figsize=(10, 2.5 * len(mels)), squeeze=False)
    for i, mel in enumerate(mels):
        ax = axes[i, 0]
        im = ax.imshow(mel, aspect="auto", origin="lower", interpolation="none")
        fig.colorbar(im, ax=ax)
        ax.set_ylabel("mel bin")
        if titles:
            ax.set_title(titles[i])
    axes[-1, 0].set_xlabel("frame")
    fig.tight_layout()
    return _figure_to_array(fig)


def plot_alignment(attn: np.ndarray, title: Optional[str] = None) -> np.ndarray:
    """Alignment (T_text, T_mel) -> image (H, W, 3) uint8 (tokens on the y axis)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    im = ax.imshow(attn, aspect="auto", origin="lower", interpolation="none")
    fig.colorbar(im, ax=ax)
    ax.set_xlabel("mel frame")
    ax.set_ylabel("token")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _figure_to_array(fig)
