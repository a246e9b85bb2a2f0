"""How the acoustic model samples: one validated object instead of loose arguments.

    from sampling import SamplingConfig
    s = SamplingConfig(steps=4, method="midpoint")       # ValueError here if a value is bad
    s.nfe                                                # 8 network evaluations

The command-line tools share the flags through `add_sampling_arguments` / `from_args`; Piper / VITS
names are accepted as aliases (`--length-scale` for `--duration-scale`, `--noise-scale` for
`--temperature`).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass

import numpy as np

import ode

MAX_STEPS = 1000  # more ODE steps change nothing audible and only burn time: refuse them
MAX_CFG_SCALE = 10.0  # F5-TTS uses 2; far larger scales only distort
MAX_PITCH_SHIFT = 12.0  # semitones: an octave either way
PITCH_RANGE_LIMITS = (0.0, 3.0)  # 0 speaks on one pitch; 3 triples the spread
MAX_ENERGY_DB = 20.0
NO_PROSODY = ("this voice was not trained with prosody conditioning (model.prosody_conditioning): it cannot change "
              "pitch, pitch range or energy; leave them out or use a voice trained with it")


@dataclass(frozen=True)
class SamplingConfig:
    """steps: ODE steps; method: euler (1 network evaluation per step) or midpoint (2);
    sway_schedule / sway_coef: the time grid (ode.py: quadratic or cosine sway, s = -1 with quadratic
    gives t^2; or epss, a pruned grid that ignores the coefficient);
    duration_scale: speaking-rate factor (> 1 speaks slower); temperature: scale of the start noise;
    cfg_scale: classifier-free guidance, v_c + s (v_c - v_u) (0: none; each step then costs a network
    call on twice the batch; needs a model trained with condition dropout);
    pitch_shift (semitones), pitch_range (factor on the pitch spread), energy_db: edits of the prosody the
    model predicts (prosody.py; only voices with model.prosody_conditioning realise them)."""

    steps: int = 10
    method: str = "euler"
    sway_coef: float = -1.0
    sway_schedule: str = "quadratic"
    duration_scale: float = 1.0
    temperature: float = 1.0
    cfg_scale: float = 0.0
    pitch_shift: float = 0.0
    pitch_range: float = 1.0
    energy_db: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"number of ODE steps must be a positive integer, got {self.steps!r}")
        if self.steps > MAX_STEPS:
            raise ValueError(f"{self.steps} ODE steps is more than the cap of {MAX_STEPS}; 5 to 30 is the "
                             f"useful range (quality stops improving long before {MAX_STEPS})")
        if self.method not in ode.SOLVERS:
            raise ValueError(f"unknown ODE method {self.method!r}; choose one of: {', '.join(ode.SOLVERS)}")
        if not is_finite_number(self.sway_coef):
            raise ValueError(f"sway coefficient must be a finite number, got {self.sway_coef!r}")
        self.time_grid_array()  # ValueError for an unknown schedule or a sway that folds the grid
        if not is_finite_number(self.duration_scale) or self.duration_scale <= 0:
            raise ValueError(f"duration scale must be a positive number, got {self.duration_scale!r}")
        if not is_finite_number(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a non-negative number, got {self.temperature!r}")
        if not is_finite_number(self.cfg_scale) or not 0 <= self.cfg_scale <= MAX_CFG_SCALE:
            raise ValueError(f"guidance scale must be a number in [0, {MAX_CFG_SCALE:g}], got {self.cfg_scale!r}")
        for value, low, high, what in ((self.pitch_shift, -MAX_PITCH_SHIFT, MAX_PITCH_SHIFT, "pitch shift (semitones)"),
                                       (self.pitch_range, *PITCH_RANGE_LIMITS, "pitch range factor"),
                                       (self.energy_db, -MAX_ENERGY_DB, MAX_ENERGY_DB, "energy change (dB)")):
            if not is_finite_number(value) or not low <= value <= high:
                raise ValueError(f"{what} must be a number in [{low:g}, {high:g}], got {value!r}")

    @property
    def nfe(self) -> int:
        """Network evaluations per utterance."""
        return self.steps * (2 if self.method == "midpoint" else 1)

    @property
    def prosody_edit(self) -> list:
        """[pitch_shift, pitch_range, energy_db]: one row of the (B, 3) edit prosody.apply_edit and the ONNX
        encoder take."""
        return [float(self.pitch_shift), float(self.pitch_range), float(self.energy_db)]

    @property
    def edits_prosody(self) -> bool:
        return self.prosody_edit != [0.0, 1.0, 0.0]

    def time_grid(self, device=None):
        """(steps + 1,) fp32 torch tensor of times from 0 to 1, on `device`."""
        return ode.time_grid(self.steps, self.sway_coef, self.sway_schedule, device=device)

    def time_grid_array(self) -> np.ndarray:
        """(steps + 1,) float64 numpy times from 0 to 1 (the torch-free runtime)."""
        return ode.time_grid_array(self.steps, self.sway_coef, self.sway_schedule)

    def replace(self, **changes) -> "SamplingConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def is_finite_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def add_sampling_arguments(parser: argparse.ArgumentParser, defaults: SamplingConfig = SamplingConfig()) -> None:
    """The sampling flags every command-line tool shares. A flag left out stays None, so `from_args` can
    take the value from a voice's own defaults (an ONNX export stores its few-step setting)."""
    g = parser.add_argument_group("sampling")
    g.add_argument("--steps", type=int, default=None,
                   help=f"ODE steps (default {defaults.steps}, at most {MAX_STEPS}); NFE = steps (euler) or 2*steps")
    g.add_argument("--method", default=None, help=f"ODE solver: {' or '.join(ode.SOLVERS)} (default {defaults.method})")
    g.add_argument("--sway-coef", type=float, default=None,
                   help=f"sway sampling coefficient s in [-1, 1] for t + s(1-t)t (default {defaults.sway_coef:g}: t^2)")
    g.add_argument("--schedule", dest="sway_schedule", default=None, choices=ode.SCHEDULES,
                   help=f"time grid: quadratic or cosine sway, or epss (pruned; ignores --sway-coef) "
                        f"(default {defaults.sway_schedule})")
    g.add_argument("--duration-scale", "--length-scale", dest="duration_scale", type=float, default=None,
                   help=f"speaking-rate factor, >1 speaks slower (default {defaults.duration_scale:g})")
    g.add_argument("--temperature", "--noise-scale", dest="temperature", type=float, default=None,
                   help=f"noise scale of the ODE start (default {defaults.temperature:g})")
    g.add_argument("--cfg-scale", dest="cfg_scale", type=float, default=None,
                   help="classifier-free guidance scale, 0 = off (default: the voice's model.cfg_scale)")
    g.add_argument("--pitch", dest="pitch_shift", type=float, default=None,
                   help=f"raise (or lower, < 0) the voice's pitch by this many semitones, within "
                        f"+-{MAX_PITCH_SHIFT:g} (voices with prosody conditioning)")
    g.add_argument("--pitch-range", dest="pitch_range", type=float, default=None,
                   help="factor on the pitch's spread: < 1 flatter, > 1 livelier (default 1)")
    g.add_argument("--energy", dest="energy_db", type=float, default=None,
                   help=f"change of the voice's energy in dB, within +-{MAX_ENERGY_DB:g} (default 0)")


def from_args(args: argparse.Namespace, defaults: SamplingConfig = SamplingConfig()) -> SamplingConfig:
    """SamplingConfig from parsed `add_sampling_arguments` flags, `defaults` for those left out
    (ValueError for a bad value)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(SamplingConfig)
             if getattr(args, f.name, None) is not None}
    return defaults.replace(**given)
