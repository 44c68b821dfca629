"""A run's status: one function, from its events and heartbeats (never run.json alone).

``run_status`` is what both viewers show, everywhere a run's status appears (header, run
picker, runs page, run page). How a run ended comes from its ``run_finished`` event; a run
without one is 'running' while events (heartbeats included) keep arriving, 'stalled' when
heartbeats arrive but nothing else does, and 'crashed' once it has been silent for several
heartbeat periods, however its run.json reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from telemetry_schema.state import ENDED, RunState

STATUSES = ("waiting", "running", "stalled", "crashed", *ENDED)
LIVE = ("waiting", "running", "stalled")
"""Statuses of a run that may still write events."""


def run_status(state: RunState, now: float) -> str:
    """One of ``STATUSES`` for a run folded into ``state``, as seen at wall time ``now``."""
    return state.status(now)


def is_live(status: str) -> bool:
    return status in LIVE


@dataclass(frozen=True)
class Progress:
    """How far a run has come, and the time it likely still needs."""

    epoch: int
    """The last epoch completed (what ``esper train`` prints): an epoch under way is not counted."""
    planned: int
    """Epochs the run is set to train (0: not known)."""
    elapsed_s: float | None
    left_s: float | None
    """Time left at the pace of the epochs so far (None: not known, or the run has ended)."""

    def label(self) -> str:
        """'epoch 12/40' (or 'epoch 12' when the plan is not known)."""
        return f"epoch {self.epoch}/{self.planned}" if self.planned else f"epoch {self.epoch}"


def completed_epoch(state: RunState) -> int:
    """The epoch of the run's last ``epoch_completed`` event (0 before the first).

    ``RunState.epoch`` is the newest epoch any event carries, one more than this while an
    epoch is under way; a run's progress counts finished epochs, as its console does."""
    epochs = state.epochs
    return int(epochs["epoch"][-1]) if len(epochs) else 0


def progress(state: RunState, now: float) -> Progress:
    """The run's progress as of wall time ``now`` (an ended run's elapsed time stops at its end)."""
    start = state.started_wall if state.started_wall is not None else state.first_wall
    done = len(state.epochs)
    end = state.last_wall if state.end_status is not None else now
    elapsed = end - start if start is not None and end is not None else None
    left = None
    if state.end_status is None and state.planned_epochs and done and elapsed is not None:
        walls = state.epochs["wall"]
        pace = (walls[-1] - start) / done  # seconds an epoch, over the epochs finished
        left = max(0.0, (state.planned_epochs - done) * pace - (now - walls[-1]))
    return Progress(completed_epoch(state), state.planned_epochs, elapsed, left)


@dataclass(frozen=True)
class Usage:
    """The run's latest resource readings (``system`` events); None where not measured."""

    cpu_percent: float | None
    """The training process's CPU use, percent of one core."""
    rss_bytes: float | None
    gpu_util_percent: float | None
    gpu_mem_used_bytes: float | None

    def parts(self) -> list[tuple[str, str]]:
        """('cpu', '95%'), ('memory', '1.2 GB'), ('gpu', '80% 3.1 GB'): what is known, as text."""
        out = []
        if self.cpu_percent is not None:
            out.append(("cpu", f"{self.cpu_percent:.0f}%"))
        if self.rss_bytes is not None:
            out.append(("memory", _bytes(self.rss_bytes)))
        if self.gpu_util_percent is not None or self.gpu_mem_used_bytes is not None:
            gpu = [f"{self.gpu_util_percent:.0f}%"] if self.gpu_util_percent is not None else []
            gpu += [_bytes(self.gpu_mem_used_bytes)] if self.gpu_mem_used_bytes is not None else []
            out.append(("gpu", " ".join(gpu)))
        return out


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def usage(state: RunState) -> Usage:
    """The latest ``system`` reading of each resource (a null or NaN reading is 'not measured')."""
    def last(field: str) -> float | None:
        series = state.scalars.get(f"system/{field}")
        value = series.last("value") if series is not None and len(series) else None
        return float(value) if value is not None and math.isfinite(value) else None
    return Usage(last("cpu_percent"), last("rss_bytes"), last("gpu_util_percent"), last("gpu_mem_used_bytes"))
