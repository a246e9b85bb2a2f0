"""Learning-rate schedule: linear warm-up, then per-step exponential decay."""
from __future__ import annotations

import torch


def warmup_exponential_factor(step: int, warmup_steps: int, decay: float) -> float:
    """Multiplier of the base learning rate after `step` optimizer steps.

    Rises linearly from 1/warmup_steps to 1 over the first `warmup_steps` steps, then decays by `decay`
    each step: factor = decay ** (step - warmup_steps + 1). warmup_steps <= 0 disables warm-up.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    return decay ** (step - max(warmup_steps, 0) + (1 if warmup_steps > 0 else 0))


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, decay: float
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR applying `warmup_exponential_factor`; call `.step()` once per optimizer step."""
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"train.lr_decay must be in (0, 1], got {decay}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_exponential_factor(step, warmup_steps, decay))
