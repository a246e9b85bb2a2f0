"""Time grids (uniform + sway) and fixed-grid ODE solvers for flow-matching sampling.

The flow is integrated from t = 0 (noise / prior) to t = 1 (mel). A solver steps exactly between the
grid points it is given, so a schedule (sway) changes only *where* the network is evaluated, never the
number of evaluations. Solvers report NFE (network function evaluations): Euler costs one per step,
midpoint two. Report NFE, not "steps", when comparing speed.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch

# Velocity field: f(x, t) -> dx/dt with x (B, C, T) and t a 0-d tensor (or float) in [0, 1].
VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

SWAY_SCHEDULES = ("quadratic", "cosine")
# Largest coefficient for which the cosine sway stays monotonic: 1 + s * (1 - pi/2) >= 0 at t = 1.
COSINE_SWAY_MAX = 1.0 / (math.pi / 2.0 - 1.0)


def sway_range(schedule: str = "quadratic") -> Tuple[float, float]:
    """Closed interval of sway coefficients for which the schedule maps [0, 1] monotonically onto [0, 1]."""
    if schedule == "quadratic":
        return -1.0, 1.0
    if schedule == "cosine":
        return -1.0, COSINE_SWAY_MAX
    raise ValueError(f"unknown sway schedule {schedule!r}; choose one of {', '.join(SWAY_SCHEDULES)}")


def sway(t: torch.Tensor, coef: float, schedule: str = "quadratic") -> torch.Tensor:
    """Warp times t in [0, 1] with a sway coefficient; 0 leaves the grid unchanged.

    quadratic: t' = t + s * (1 - t) * t   (s = -1 gives t^2: small steps near the noise end)
    cosine:    t' = t + s * (cos(pi/2 * t) - 1 + t)   (F5-TTS)

    Both fix 0 and 1. Outside `sway_range(schedule)` the map is not monotonic: the grid would fold back
    (times decreasing, e.g. quadratic s = -2 gives 0, ..., negative times), so such coefficients are
    rejected with ValueError instead of being used silently.
    """
    low, high = sway_range(schedule)
    if not (low <= coef <= high):
        raise ValueError(
            f"sway coefficient {coef} is outside [{low:g}, {high:.4g}] for the {schedule} schedule: the "
            f"warped time grid would not be monotonic (it folds back on itself, so some solver steps would go "
            f"backwards in time). Use a value in that range (-1 is recommended; 0 means a uniform grid).")
    if schedule == "quadratic":
        return t + coef * (1.0 - t) * t
    return t + coef * (torch.cos(0.5 * math.pi * t) - 1.0 + t)


def time_grid(n_steps: int, sway_coef: Optional[float] = None, schedule: str = "quadratic",
              device: Optional[torch.device] = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n_steps + 1,) increasing times from exactly 0 to exactly 1: uniform, then swayed if sway_coef is set."""
    if int(n_steps) != n_steps or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    # Build in float64 so the sway is exact, then cast; endpoints are pinned to exact 0 and 1.
    t = torch.linspace(0.0, 1.0, int(n_steps) + 1, dtype=torch.float64)
    if sway_coef is not None and sway_coef != 0:
        t = sway(t, float(sway_coef), schedule)
        t[0], t[-1] = 0.0, 1.0
    return t.to(device=device, dtype=dtype)


def euler(f: VelocityFn, x: torch.Tensor, grid: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """Explicit Euler over the given grid: x <- x + (t1 - t0) f(x, t0). Returns (x at grid[-1], NFE)."""
    nfe = 0
    for t0, t1 in zip(grid[:-1], grid[1:]):
        x = x + (t1 - t0) * f(x, t0)
        nfe += 1
    return x, nfe


def midpoint(f: VelocityFn, x: torch.Tensor, grid: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """Explicit midpoint (RK2) over the given grid; two evaluations per step. Returns (x, NFE)."""
    nfe = 0
    for t0, t1 in zip(grid[:-1], grid[1:]):
        dt = t1 - t0
        x_half = x + 0.5 * dt * f(x, t0)
        x = x + dt * f(x_half, t0 + 0.5 * dt)
        nfe += 2
    return x, nfe


SOLVERS: Dict[str, Callable[[VelocityFn, torch.Tensor, torch.Tensor], Tuple[torch.Tensor, int]]] = {
    "euler": euler,
    "midpoint": midpoint,
}


def solve(f: VelocityFn, x: torch.Tensor, grid: torch.Tensor, method: str = "euler") -> Tuple[torch.Tensor, int]:
    """Integrate dx/dt = f(x, t) along `grid` with a named fixed-grid solver. Returns (x, NFE)."""
    if method not in SOLVERS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of {', '.join(SOLVERS)}")
    return SOLVERS[method](f, x, grid)
