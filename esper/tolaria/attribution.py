"""Counterfactual attribution: the accuracy a slot's seed is worth, measured by switching it off."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch

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


def counterfactual_contribution(model: torch.nn.Module, slot: SeedSlot, loader: Iterable,
                                device: torch.device, num_classes: int,
                                real_acc: float | None = None,
                                objective: Objective = CLASSIFICATION) -> tuple[float, float, float]:
    """(real_acc, off_acc, contribution = real - off) in percent; (acc, acc, 0) with no seed."""
    if real_acc is None:
        real_acc = evaluate(model, loader, device, num_classes, per_class=False, objective=objective)[1]
    if slot.seed is None:
        return real_acc, real_acc, 0.0
    with force_alpha(slot, 0.0):
        off_acc = evaluate(model, loader, device, num_classes, per_class=False, objective=objective)[1]
    return real_acc, off_acc, real_acc - off_acc
