"""Counterfactual attribution: the accuracy a slot's seed is worth, measured by switching it off."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch import Tensor

from esper.kasmina.slot import SeedSlot
from esper.tolaria.objective import CLASSIFICATION, Objective
from esper.tolaria.runners import evaluate


@contextmanager
def force_alpha(slot: SeedSlot, value: float) -> Iterator[SeedSlot]:
    """Run the block with the slot's alpha forced to ``value``; restored even on error."""
    previous = slot.forced_alpha
    slot.forced_alpha = float(value)
    try:
        yield slot
    finally:
        slot.forced_alpha = previous


@dataclass(frozen=True)
class Attribution:
    """Accuracy with the seed and with its slot forced off, on the same validation samples."""

    real_acc: float
    off_acc: float
    se: float | None
    # standard error of the contribution, percentage points: of the per-sample paired differences
    # (right with the seed minus right without it); None when the per-sample hits are not known

    @property
    def contribution(self) -> float:
        return self.real_acc - self.off_acc


def paired_se(real: Tensor, off: Tensor) -> float:
    """Standard error, in percentage points, of the mean of the paired differences real_i - off_i
    of two (N,) bool hit vectors (sample SD with n - 1)."""
    d = real.float() - off.float()
    n = d.numel()
    return 100.0 * d.std(correction=1).item() / math.sqrt(n) if n > 1 else float("nan")


def attribute(model: torch.nn.Module, slot: SeedSlot, loader: Iterable, device: torch.device, num_classes: int,
              real_acc: float, real_correct: Tensor | None = None,
              objective: Objective = CLASSIFICATION) -> Attribution:
    """The slot's counterfactual with its standard error (when ``real_correct`` is given)."""
    if slot.seed is None:
        return Attribution(real_acc, real_acc, 0.0 if real_correct is not None else None)
    with force_alpha(slot, 0.0):
        off = evaluate(model, loader, device, num_classes, per_class=False,
                       keep_correct=real_correct is not None, objective=objective)
    se = paired_se(real_correct, off.correct) if real_correct is not None else None
    return Attribution(real_acc, off.acc, se)


def counterfactual_contribution(model: torch.nn.Module, slot: SeedSlot, loader: Iterable,
                                device: torch.device, num_classes: int,
                                real_acc: float | None = None,
                                objective: Objective = CLASSIFICATION) -> tuple[float, float, float]:
    """(real_acc, off_acc, contribution = real - off) in percent; (acc, acc, 0) with no seed."""
    if real_acc is None:
        real_acc = evaluate(model, loader, device, num_classes, per_class=False, objective=objective).acc
    a = attribute(model, slot, loader, device, num_classes, real_acc, objective=objective)
    return a.real_acc, a.off_acc, a.contribution
