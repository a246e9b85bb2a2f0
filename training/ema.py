"""Exponential moving average (EMA) of model weights, used for evaluation and inference.

Flow-matching models sample noticeably better from averaged weights. The average starts as a copy of
the model; each `update` moves it towards the current weights:
    ema = d * ema + (1 - d) * w,   d = min(decay, (1 + n) / (10 + n))   (n = updates so far)
The warm-up of `d` lets the average follow the fast early changes, so a young model's EMA is not
stuck near its random initialisation (matters on short CPU runs). Buffers are copied, not averaged.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps `self.module`, an averaged copy of a model (same class, no gradients, eval mode)."""

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model` (the same architecture as the one given at construction)."""
        d = self.current_decay()
        ema_params = dict(self.module.named_parameters())
        for name, p in model.named_parameters():
            ema_params[name].lerp_(p.detach().to(ema_params[name].dtype), 1.0 - d)
        ema_buffers = dict(self.module.named_buffers())
        for name, b in model.named_buffers():
            ema_buffers[name].copy_(b)
        self.num_updates += 1

    @torch.no_grad()
    def copy_from(self, model: nn.Module) -> None:
        """Reset the average to the current weights of `model`."""
        self.module.load_state_dict(model.state_dict())

    def state_dict(self) -> dict:
        """Weights of the averaged model (loadable into the plain model class)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict, num_updates: int = 0) -> None:
        self.module.load_state_dict(state)
        self.num_updates = num_updates
