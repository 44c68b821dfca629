"""Dashboard settings: one dataclass, every default explained."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DashboardConfig:
    poll_ms: int = 1000
    """Browser refresh period of the live views (the brief asks for at least every 2 s)."""
    min_refresh_s: float = 0.5
    """A run's log is re-read at most this often, however many clients poll it."""
    max_points: int = 2000
    """Most points one trace ships to the browser; longer series are min/max downsampled."""
    g2_threshold: float = 0.05
    """Gradient-ratio threshold of gate G2, drawn on the gradient-ratio chart."""
    memo_size: int = 16
    """Built chart sets kept per run: one per chart group (the first screen's charts, the others)
    and selection/cursor/option combination recently viewed."""
    max_folds: int = 8
    """Live folds kept per run for scopes (rank, env) other than the default, one per scope
    viewed; the least recently viewed is dropped beyond this (and refolded from the shared log
    if viewed again). Replays are bounded the same way."""
    prefetch_runs: int = 2
    """``esper-dashboard`` reads and folds this many of the newest runs in the background as it
    starts, so the run someone opens first is (being) read already (0: none)."""
    prefetch_idle_s: float = 2.0
    """The prefetch reads the newest run at once, each further one only after no page has asked
    for a run for this long: on 2 cores a second 1M-event read slowed the newest run's page,
    opened meanwhile, by 0.2-0.4 s. While a run page is open (it polls every second) the others
    are read when asked for."""
    silent_rank_s: float = 30.0
    """A rank of a distributed run whose newest event is this many seconds older than the newest
    event of any rank (and that has not finished) is called out as silent."""
    event_rows: int = 200
    """Most rows the event table shows (the newest matching events)."""
    decision_rows: int = 200
    """Most rows the controller-decision table shows (the newest decisions)."""
    replay_ticks: int = 200
    """At 1x speed a replay crosses the whole run in this many player ticks."""
    replay_ms: int = 500
    """Period of the replay player's ticks."""
