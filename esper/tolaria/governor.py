"""The governor: watches validation loss, keeps CPU snapshots, and rolls back when training breaks."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import torch
from torch import nn

from esper.kasmina.model import MorphogeneticModel
from esper.leyline.config import GovernorConfig


@dataclass(frozen=True)
class GovernorVerdict:
    """An anomalous loss: why, against what, and whether it forces a rollback."""

    reason: str
    # 'nan', 'inf', 'lobotomy' or 'statistical'
    loss: float
    threshold: float | None
    mean: float
    std: float
    consecutive: int
    rollback: bool


def _mean_std(values) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / n
    return mean, math.sqrt(var)  # std 0 for a constant history: no statistical anomaly possible


class Governor:
    """Checks each validation loss in order: NaN/Inf, lobotomy, statistical anomaly."""

    def __init__(self, cfg: GovernorConfig = GovernorConfig(), num_classes: int = 10) -> None:
        self.cfg = cfg
        self.chance_loss = math.log(max(num_classes, 2))
        self.history: deque[float] = deque(maxlen=cfg.history)
        self.consecutive = 0
        self.snapshot: dict[str, torch.Tensor] | None = None
        self.snapshot_epoch = 0
        self.good_since_snapshot = 0

    # -- checking ----------------------------------------------------------------------------

    def check(self, loss: float) -> GovernorVerdict | None:
        """None for a healthy loss (added to the history); else the verdict (kept out of it)."""
        verdict = self.assess(loss)
        self.record(loss, verdict)
        return verdict

    def assess(self, loss: float) -> GovernorVerdict | None:
        """The verdict on ``loss``, changing nothing (``record`` applies it). A distributed run
        assesses on rank 0 only and records the agreed verdict on every rank."""
        mean, std = _mean_std(self.history)
        if math.isnan(loss) or math.isinf(loss):
            return self._verdict("nan" if math.isnan(loss) else "inf", loss, None, mean, std, True)
        enough = len(self.history) >= self.cfg.min_history
        if enough and self._lobotomy(loss, mean):
            return self._verdict("lobotomy", loss, self.chance_loss, mean, std, True)
        threshold = max(mean + self.cfg.sensitivity * std, self.cfg.multiplier * mean,
                        self.cfg.floor_fraction * self.chance_loss) if enough else None
        if threshold is not None and loss > threshold:
            rollback = self.consecutive + 1 >= self.cfg.consecutive_to_rollback
            return self._verdict("statistical", loss, threshold, mean, std, rollback)
        return None

    def record(self, loss: float, verdict: GovernorVerdict | None) -> None:
        """Apply a verdict: a healthy loss joins the history and clears the anomaly count; a panic
        sets the count (a rollback resets it)."""
        if verdict is None:
            self.consecutive = 0
            self.history.append(loss)
        else:
            self.consecutive = 0 if verdict.rollback else verdict.consecutive

    def _lobotomy(self, loss: float, mean: float) -> bool:
        near_chance = abs(loss - self.chance_loss) <= self.cfg.lobotomy_tolerance * self.chance_loss
        return near_chance and mean < self.cfg.lobotomy_mean_fraction * self.chance_loss

    def _verdict(self, reason, loss, threshold, mean, std, rollback) -> GovernorVerdict:
        """A panic: this anomaly is the (consecutive + 1)-th in a row."""
        return GovernorVerdict(reason, loss, threshold, mean, std, self.consecutive + 1, rollback)

    # -- snapshots ---------------------------------------------------------------------------

    def take_snapshot(self, model: nn.Module, epoch: int) -> int:
        """Copy the model's state (live seeds excluded) to CPU; returns the tensor count."""
        skip = _live_seed_prefixes(model)
        self.snapshot = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                         if not k.startswith(skip)}
        self.snapshot_epoch, self.good_since_snapshot = epoch, 0
        return len(self.snapshot)

    def note_good_epoch(self, model: nn.Module, epoch: int) -> int | None:
        """Count a good epoch; snapshot every cfg.snapshot_every. Returns tensors if it did."""
        self.good_since_snapshot += 1
        if self.snapshot is None or self.good_since_snapshot >= self.cfg.snapshot_every:
            return self.take_snapshot(model, epoch)
        return None

    def rollback(self, model: nn.Module, optimizers: list[torch.optim.Optimizer] = (),
                 reason: str = "governor rollback") -> list[str]:
        """Prune live seeds, load the snapshot strictly, reset optimizer state; returns pruned ids."""
        if self.snapshot is None:
            raise RuntimeError("governor rollback without a snapshot")
        pruned = []
        if isinstance(model, MorphogeneticModel):
            for slot in model.live_slots():
                pruned.append(slot.seed_id)
                slot.prune(reason, "governor", instant=True)
        model.load_state_dict(self.snapshot, strict=True)
        for opt in optimizers:
            opt.state.clear()
        return pruned


def _live_seed_prefixes(model: nn.Module) -> tuple[str, ...]:
    if not isinstance(model, MorphogeneticModel):
        return ()
    return tuple(f"slots.{s.slot_id}.{part}." for s in model.live_slots() for part in ("seed", "gate_net"))
