"""Time grids and fixed-grid ODE solvers for flow-matching sampling (no torch needed at import: the
ONNX runtime runs the same solvers on numpy arrays).

    grid = time_grid(10, -1.0)                    # torch tensor; time_grid_array(...) gives numpy float64
    x, nfe = solve(velocity, x0, grid, "midpoint")

The flow is integrated from t = 0 (noise / prior) to t = 1 (mel). A solver steps exactly between the
grid points it is given, so a schedule changes only *where* the network is evaluated, never the number
of evaluations. Solvers report NFE (network function evaluations): Euler costs one per step, midpoint
two. Report NFE, not "steps", when comparing speed. Schedules:
  quadratic  t' = t + s (1 - t) t                 (s = -1 gives t^2: small steps near the noise end)
  cosine     t' = t + s (cos(pi/2 t) - 1 + t)     (F5-TTS's sway)
  epss       F5-TTS's empirically pruned step grids on a 1/32 lattice for 6, 7, 10, 12 and 16 steps, and
             for other counts the grid that halves each step towards t = 0 (for 5 steps this is F5's
             own 0, 2, 4, 8, 16, 32 / 32); the sway coefficient does not apply.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

# Velocity field: f(x, t) -> dx/dt with x (B, C, T) (torch tensor or numpy array) and t a grid element.
VelocityFn = Callable[[Any, Any], Any]

SCHEDULES = ("quadratic", "cosine", "epss")
# Largest coefficient for which the cosine sway stays monotonic: 1 + s * (1 - pi/2) >= 0 at t = 1.
COSINE_SWAY_MAX = 1.0 / (math.pi / 2.0 - 1.0)
_EPSS_LATTICE = 32
_EPSS = {6: [0, 2, 4, 6, 8, 16, 32], 7: [0, 2, 4, 6, 8, 16, 24, 32],
         10: [0, 2, 4, 6, 8, 12, 16, 20, 24, 28, 32], 12: [0, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32],
         16: [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32]}


def sway_range(schedule: str = "quadratic") -> Tuple[float, float]:
    """Closed interval of sway coefficients for which the schedule maps [0, 1] monotonically onto [0, 1]."""
    if schedule == "quadratic":
        return -1.0, 1.0
    if schedule == "cosine":
        return -1.0, COSINE_SWAY_MAX
    raise ValueError(f"unknown sway schedule {schedule!r}; choose one of quadratic, cosine")


def check_sway(coef: float, schedule: str = "quadratic") -> None:
    """ValueError when the sway would fold the grid back on itself (times decreasing)."""
    low, high = sway_range(schedule)
    if not (low <= coef <= high):
        raise ValueError(
            f"sway coefficient {coef} is outside [{low:g}, {high:.4g}] for the {schedule} schedule: the "
            f"warped time grid would not be monotonic (it folds back on itself, so some solver steps would go "
            f"backwards in time). Use a value in that range (-1 is recommended; 0 means a uniform grid).")


def sway_array(t: np.ndarray, coef: float, schedule: str = "quadratic") -> np.ndarray:
    """Warp times t in [0, 1] (float64) with a sway coefficient; 0 leaves them unchanged; fixes 0 and 1."""
    check_sway(coef, schedule)
    if schedule == "quadratic":
        return t + coef * (1.0 - t) * t
    return t + coef * (np.cos(0.5 * math.pi * t) - 1.0 + t)


def epss_grid(n_steps: int) -> np.ndarray:
    """(n_steps + 1,) pruned grid (see the module docstring)."""
    if n_steps in _EPSS:
        return np.asarray(_EPSS[n_steps], dtype=np.float64) / _EPSS_LATTICE
    return np.concatenate([[0.0], 2.0 ** np.arange(1 - n_steps, 1, dtype=np.float64)])


def time_grid_array(n_steps: int, sway_coef: Optional[float] = None, schedule: str = "quadratic") -> np.ndarray:
    """(n_steps + 1,) float64 increasing times from exactly 0 to exactly 1."""
    if isinstance(n_steps, bool) or int(n_steps) != n_steps or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown sway schedule {schedule!r} for the time grid; choose one of {', '.join(SCHEDULES)}")
    n_steps = int(n_steps)
    if schedule == "epss":
        return epss_grid(n_steps)
    t = np.linspace(0.0, 1.0, n_steps + 1, dtype=np.float64)
    if sway_coef is not None and sway_coef != 0:
        t = sway_array(t, float(sway_coef), schedule)
        t[0], t[-1] = 0.0, 1.0
    return t


def time_grid(n_steps: int, sway_coef: Optional[float] = None, schedule: str = "quadratic", device=None,
              dtype=None):
    """time_grid_array as a torch tensor (fp32 unless dtype), on `device`."""
    import torch

    return torch.from_numpy(time_grid_array(n_steps, sway_coef, schedule)).to(device=device,
                                                                              dtype=dtype or torch.float32)


def euler(f: VelocityFn, x, grid) -> Tuple[Any, int]:
    """Explicit Euler over the given grid: x <- x + (t1 - t0) f(x, t0). Returns (x at grid[-1], NFE)."""
    nfe = 0
    for t0, t1 in zip(grid[:-1], grid[1:]):
        x = x + float(t1 - t0) * f(x, t0)
        nfe += 1
    return x, nfe


def midpoint(f: VelocityFn, x, grid) -> Tuple[Any, int]:
    """Explicit midpoint (RK2) over the given grid; two evaluations per step. Returns (x, NFE)."""
    nfe = 0
    for t0, t1 in zip(grid[:-1], grid[1:]):
        dt = float(t1 - t0)
        x_half = x + 0.5 * dt * f(x, t0)
        x = x + dt * f(x_half, t0 + 0.5 * dt)
        nfe += 2
    return x, nfe


SOLVERS: Dict[str, Callable[[VelocityFn, Any, Any], Tuple[Any, int]]] = {
    "euler": euler,
    "midpoint": midpoint,
}


def solve(f: VelocityFn, x, grid, method: str = "euler") -> Tuple[Any, int]:
    """Integrate dx/dt = f(x, t) along `grid` with a named fixed-grid solver. Returns (x, NFE)."""
    if method not in SOLVERS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of {', '.join(SOLVERS)}")
    return SOLVERS[method](f, x, grid)
