"""A run's progress as text for the console: epoch N of M, metrics, seeds, elapsed time and ETA.

``RunBoard`` is a sink that keeps what a progress display shows (each slot's stage, seed and last
note, the last epoch's metrics, counts of fossilized and pruned seeds) and calls ``epoch_done``
and ``note`` for a display to render: ``esper.cli`` renders it live in a terminal (rich) and as
one plain line per epoch into a pipe or a file. Time comes from an injected clock, so the ETA is
tested without waiting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from esper.nissa.sink import Sink

Clock = Callable[[], float]


def format_duration(seconds: float | None) -> str:
    """'h:mm:ss' (hours unbounded: '27:04:05'); '?' for an unknown (None or non-finite) duration."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class Eta:
    """Elapsed time and the time left of a job of ``total`` equal units (epochs, rounds): the
    units left at the mean pace of the units done since ``restart``."""

    def __init__(self, total: int, clock: Clock = time.monotonic, done: int = 0) -> None:
        self.total, self.clock = total, clock
        self.restart(done)

    def restart(self, done: int = 0) -> None:
        """Measure from now, with ``done`` units already behind (a resumed job)."""
        self.started, self.done, self.done_at_start = self.clock(), done, done

    def update(self, done: int) -> None:
        self.done = done

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float | None:
        """Seconds left; None before the first unit is done."""
        measured = self.done - self.done_at_start
        if measured <= 0:
            return None
        return self.elapsed() / measured * max(0, self.total - self.done)

    def text(self) -> str:
        """'elapsed h:mm:ss eta h:mm:ss'."""
        return f"elapsed {format_duration(self.elapsed())} eta {format_duration(self.remaining())}"


def metrics_text(result, total_params: int) -> str:
    """An epoch's metrics (an EpochResult): losses, validation accuracy, perplexity when a language task."""
    ppl = f" ppl {result.perplexity:.2f}" if result.perplexity is not None else ""
    return (f"loss {result.train_loss:.3f} val_loss {result.val_loss:.3f} val_acc {result.val_acc:.2f}%"
            f"{ppl} params {total_params}")


LIVE_STAGES = frozenset({"GERMINATED", "TRAINING", "BLENDING", "HOLDING"})
"""Stages of a seed that is still being judged."""


class RunBoard(Sink):
    """What a progress display shows of a run, kept from the trainer's sink calls."""

    def __init__(self, epochs: int, slot_ids: list[str], clock: Clock = time.monotonic) -> None:
        self.epochs = epochs
        self.epoch = 0
        self.metrics = ""
        self.eta = Eta(epochs, clock)
        self.slots = {sid: ["DORMANT", "", "", ""] for sid in slot_ids}  # stage, seed, blueprint, note
        self.fossilized = self.pruned = 0

    # what a display renders (subclasses override)
    def epoch_done(self) -> None:
        """The board holds a new epoch."""

    def note(self, text: str, style: str = "") -> None:
        """A lifecycle moment worth a line of its own (plain text; ``style`` a rich style name)."""

    def changed(self) -> None:
        """A slot's row changed."""

    def epoch_line(self) -> str:
        """'epoch 3/9 loss ... | seeds block1 TRAINING, fossilized 0, pruned 0 | elapsed 0:00:12 eta 0:00:24'."""
        return f"epoch {self.epoch}/{self.epochs} {self.metrics} | {self.seeds_text()} | {self.eta.text()}"

    def seeds_text(self) -> str:
        live = [f"{sid} {stage}" for sid, (stage, *_) in self.slots.items() if stage in LIVE_STAGES]
        return f"seeds {', '.join(live) or 'none live'}, fossilized {self.fossilized}, pruned {self.pruned}"

    # the trainer's sink calls
    def epoch_completed(self, epoch, result, host_params, total_params, seconds, compute=None) -> None:
        self.epoch, self.metrics = epoch, metrics_text(result, total_params)
        self.eta.update(epoch)
        self.epoch_done()

    def seed_germinated(self, slot_id, seed_id, blueprint, params, blend, tempo, blend_epochs) -> None:
        self.slots[slot_id][1:3] = [seed_id, blueprint]
        self.note(f"{slot_id}: germinated {seed_id} ({blueprint}, {params} params)")

    def stage_changed(self, slot_id, seed_id, from_stage, to_stage, reason) -> None:
        self.slots[slot_id][0] = to_stage.name
        if to_stage.name == "DORMANT":
            self.slots[slot_id][1:3] = ["", ""]
        self.changed()

    def gate_evaluated(self, slot_id, seed_id, result) -> None:
        mark = "pass" if result.passed else "fail " + ",".join(result.checks_failed)
        self.slots[slot_id][3] = f"{result.gate.value} {mark}"

    def counterfactual(self, slot_id, seed_id, real_acc, off_acc, se=None) -> None:
        self.slots[slot_id][3] = f"contribution {real_acc - off_acc:+.2f}pp"

    def seed_fossilized(self, slot_id, seed_id, reason, initiator, params) -> None:
        self.fossilized += 1
        self.note(f"{slot_id}: fossilized {seed_id}: {reason}", "green")

    def seed_pruned(self, slot_id, seed_id, reason, initiator) -> None:
        self.pruned += 1
        self.note(f"{slot_id}: pruned {seed_id} ({initiator}): {reason}", "red")

    def governor_panic(self, verdict) -> None:
        self.note(f"governor panic: {verdict.reason} (loss {verdict.loss:.4g})", "red")

    def governor_rollback(self, to_epoch, seeds_pruned, reason) -> None:
        self.note(f"governor rollback to epoch {to_epoch} ({reason})", "red")
