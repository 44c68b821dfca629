"""What a batch is scored by: its loss, its hits (for the accuracy every gate and controller
reads) and its weight in the epoch's means.

``esper train``'s tasks are classifiers with cross-entropy (``CLASSIFICATION``). The Python
growth API (``esper.grow``) builds an ``Objective`` from the user's own loss function and,
optionally, a metric of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from esper.kasmina.hosts import cross_entropy


def argmax_hits(outputs: Tensor, targets: Tensor) -> Tensor:
    """Correct predictions in the batch: argmax over the last dim equals the target."""
    return (outputs.argmax(-1) == targets).sum()


def element_count(targets: Tensor) -> int:
    """Every target is a prediction (a token of a language model counts once)."""
    return targets.numel()


@dataclass(frozen=True)
class Objective:
    """The loss a step minimises and the score ("accuracy", percent) the lifecycle reads."""

    loss: Callable[[Tensor, Tensor], Tensor] = cross_entropy
    # (outputs, targets) -> the batch's mean loss (a 0-d tensor with a gradient)
    hits: Callable[[Tensor, Tensor], Tensor] = argmax_hits
    # (outputs, targets) -> the batch's hits: the score is 100 * sum(hits) / sum(weight)
    weight: Callable[[Tensor], int] = element_count
    # targets -> the batch's weight in the epoch's mean loss and score
    per_class: bool = True
    # targets are class indices: validation reports accuracy per class


CLASSIFICATION = Objective()
"""Cross-entropy and argmax accuracy: every task of ``esper train``."""
