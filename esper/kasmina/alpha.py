"""The alpha controller: ramps a slot's blend weight along a curve, one step per epoch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Callable, Mapping

TEMPO_EPOCHS: Mapping[str, int] = MappingProxyType({"fast": 3, "standard": 5, "slow": 8})
"""Epochs an alpha ramp takes at each tempo."""


class AlphaMode(Enum):
    HOLD = "hold"
    UP = "up"
    DOWN = "down"


def curve_linear(t: float) -> float:
    return t


def curve_cosine(t: float) -> float:
    return 0.5 * (1.0 - math.cos(math.pi * t))


def curve_sigmoid(t: float, k: float = 12.0) -> float:
    """Logistic with steepness k (6, 12 or 24), rescaled so f(0) = 0 and f(1) = 1."""
    lo, hi = 1.0 / (1.0 + math.exp(k / 2)), 1.0 / (1.0 + math.exp(-k / 2))
    return (1.0 / (1.0 + math.exp(-k * (t - 0.5))) - lo) / (hi - lo)


def curve_tanh(t: float, temperature: float = 0.5) -> float:
    """tanh(t / T) / tanh(1 / T). For tiny T it saturates almost at once (a near-instant step)."""
    return math.tanh(t / temperature) / math.tanh(1.0 / temperature)


CURVES: Mapping[str, Callable[[float], float]] = MappingProxyType({
    "linear": curve_linear, "cosine": curve_cosine, "sigmoid": curve_sigmoid, "tanh": curve_tanh,
})


@dataclass
class AlphaController:
    """alpha, start, target, mode, curve, steps_total, steps_done (CORE_SPEC §3)."""

    alpha: float = 0.0
    start: float = 0.0
    target: float = 0.0
    mode: AlphaMode = AlphaMode.HOLD
    curve: str = "linear"
    steps_total: int = 0
    steps_done: int = 0

    def retarget(self, target: float, steps: int, curve: str | None = None) -> None:
        """Begin a ramp to ``target`` over ``steps`` steps; only from HOLD. steps=0 snaps."""
        if self.mode is not AlphaMode.HOLD:
            raise RuntimeError("alpha can only be retargeted from HOLD")
        self.curve = curve or self.curve
        self.start, self.target, self.steps_done = self.alpha, float(target), 0
        self.steps_total = max(0, int(steps))
        if self.steps_total == 0 or target == self.alpha:
            self.alpha, self.mode = self.target, AlphaMode.HOLD
        else:
            self.mode = AlphaMode.UP if target > self.alpha else AlphaMode.DOWN

    def step(self) -> bool:
        """Advance one step; snap to the target on the last one. Returns True if alpha moved."""
        if self.mode is AlphaMode.HOLD:
            return False
        self.steps_done += 1
        if self.steps_done >= self.steps_total:
            self.alpha, self.mode = self.target, AlphaMode.HOLD
            return True
        t = self.steps_done / self.steps_total
        self.alpha = self.start + (self.target - self.start) * CURVES[self.curve](t)
        return True

    @property
    def idle(self) -> bool:
        return self.mode is AlphaMode.HOLD
