"""Replay: the state of a run as of a cursor, with the seeks both viewers offer.

The cursor counts events in the run's order (``EventLog``): cursor ``n`` shows the state
after the first ``n`` events. Moving forward folds only the events in between. Moving forward
also leaves a checkpoint of the fold every ``checkpoint_every`` events (cheap: metric series
share their arrays, see ``Series.__deepcopy__``), so moving backward restarts from the
nearest checkpoint instead of the start of the log.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import pyarrow.compute as pc

from telemetry_schema.arrays import to_numpy
from telemetry_schema.eventlog import EventLog
from telemetry_schema.fold import Fold, RunState

# Named targets for next/previous seeks: kind, plus an optional condition on a boolean payload field.
TARGETS = {
    "panic": ("governor_panic", None),
    "rollback": ("governor_rollback", None),
    "gate_failure": ("gate_evaluated", ("passed", False)),
    "stage_change": ("stage_changed", None),
    "epoch": ("epoch_completed", None),
}


class Replay:
    """A cursor over an event log and the folded state as of that cursor."""

    def __init__(self, log: EventLog, cursor: int | None = None, *,
                 fold_factory: Callable[[], Fold] = Fold, checkpoint_every: int = 65_536,
                 rank: int | None = None, env: int | None = None) -> None:
        """``rank`` / ``env`` (None: any) keep the seek targets to one stream, as the fold from
        ``fold_factory`` keeps the state to it."""
        self.log = log
        self._stream = {"rank": rank, "env": env}
        self.cursor = 0
        self._every = max(1, int(checkpoint_every))
        self._fold = fold_factory()
        self._checkpoints: dict[int, Fold] = {0: copy.deepcopy(self._fold)}
        self._positions: dict[tuple[str, int], np.ndarray] = {}
        self.seek(len(log) if cursor is None else cursor)

    @property
    def fold(self) -> Fold:
        """The fold as of the cursor."""
        return self._fold

    @property
    def state(self) -> RunState:
        return self._fold.state

    @property
    def length(self) -> int:
        return len(self.log)

    def seek(self, cursor: int) -> RunState:
        cursor = max(0, min(int(cursor), len(self.log)))
        if cursor < self.cursor:
            start = max(c for c in self._checkpoints if c <= cursor)
            self._fold = copy.deepcopy(self._checkpoints[start])
            self.cursor = start
        while self.cursor < cursor:
            boundary = (self.cursor // self._every + 1) * self._every
            end = min(cursor, boundary)
            self._fold.update(self.log.slice(self.cursor, end))
            self.cursor = end
            if end == boundary and end not in self._checkpoints:
                self._checkpoints[end] = copy.deepcopy(self._fold)
        return self.state

    def step(self, events: int = 1) -> RunState:
        return self.seek(self.cursor + events)

    def positions(self, target: str) -> np.ndarray:
        """Positions of the events a target names (sorted)."""
        key = (target, len(self.log))
        pos = self._positions.get(key)
        if pos is None:
            kind, cond = TARGETS[target]
            pos = self.log.positions(kind)
            table = self.log.tables.tables.get(kind)
            if table is not None and len(pos):
                keep = np.ones(len(pos), bool)
                if cond is not None:
                    field, value = cond  # a boolean field (nulls never match)
                    hit = table.column(field) if value else pc.invert(table.column(field))
                    keep &= to_numpy(pc.and_kleene(pc.is_valid(hit), hit))
                for column, value in self._stream.items():
                    if value is not None and column in table.column_names:
                        keep &= to_numpy(table.column(column)) == value
                pos = pos[keep]
            if any(k[1] != key[1] for k in self._positions):
                self._positions.clear()  # the log grew: every target is looked up again
            self._positions[key] = pos
        return pos

    def next(self, target: str) -> RunState:
        """Move to just after the next event of ``target`` (stays put when there is none)."""
        return self.seek(seek_position(self.positions(target), self.cursor, "next"))

    def previous(self, target: str) -> RunState:
        """Move to just after the previous event of ``target`` before the cursor."""
        return self.seek(seek_position(self.positions(target), self.cursor, "prev"))


def seek_position(positions: np.ndarray, cursor: int, direction: str) -> int:
    """Where a seek from ``cursor`` to the next ('next') or previous ('prev') of the events at
    ``positions`` (sorted) leads: just after that event. With no next one the cursor stays; with
    no previous one it goes to the start."""
    if direction == "next":
        i = int(np.searchsorted(positions, cursor, side="left"))
        return int(positions[i]) + 1 if i < len(positions) else int(cursor)
    i = int(np.searchsorted(positions, cursor - 1, side="left")) - 1
    return int(positions[i]) + 1 if i >= 0 else 0
