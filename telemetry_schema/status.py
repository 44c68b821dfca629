"""A run's status: one function, from its events and heartbeats (never run.json alone).

``run_status`` is what both viewers show, everywhere a run's status appears (header, run
picker, runs page, run page). How a run ended comes from its ``run_finished`` event; a run
without one is 'running' while events (heartbeats included) keep arriving, 'stalled' when
heartbeats arrive but nothing else does, and 'crashed' once it has been silent for several
heartbeat periods, however its run.json reads.
"""

from __future__ import annotations

from telemetry_schema.state import ENDED, RunState

STATUSES = ("waiting", "running", "stalled", "crashed", *ENDED)
LIVE = ("waiting", "running", "stalled")
"""Statuses of a run that may still write events."""


def run_status(state: RunState, now: float) -> str:
    """One of ``STATUSES`` for a run folded into ``state``, as seen at wall time ``now``."""
    return state.status(now)


def is_live(status: str) -> bool:
    return status in LIVE
