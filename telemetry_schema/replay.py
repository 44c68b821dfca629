"""Replay: the state of a run as of a cursor, with the seeks both viewers offer.

The cursor counts events (rows of the merged log table): cursor ``n`` shows the state after
the first ``n`` events. Moving forward folds only the events in between. Moving forward also
leaves a checkpoint of the fold every ``checkpoint_every`` events (cheap: metric series share
their arrays, see ``Series.__deepcopy__``), so moving backward restarts from the nearest
checkpoint instead of the start of the log.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_schema.arrays import rows_equal, to_numpy
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
    """A cursor over a fixed table of events and the folded state as of that cursor."""

    def __init__(self, table: pa.Table, cursor: int | None = None, *,
                 fold_factory: Callable[[], Fold] = Fold, checkpoint_every: int = 65_536,
                 rank: int | None = None, env: int | None = None) -> None:
        """``rank`` / ``env`` (None: any) keep the seek targets to one stream, as the fold from
        ``fold_factory`` keeps the state to it."""
        self.table = table
        self._stream = {"rank": rank, "env": env}
        self.cursor = 0
        self._every = max(1, int(checkpoint_every))
        self._fold = fold_factory()
        self._checkpoints: dict[int, Fold] = {0: copy.deepcopy(self._fold)}
        self._positions: dict[str, np.ndarray] = {}
        self.seek(table.num_rows if cursor is None else cursor)

    @property
    def fold(self) -> Fold:
        """The fold as of the cursor."""
        return self._fold

    @property
    def state(self) -> RunState:
        return self._fold.state

    @property
    def length(self) -> int:
        return self.table.num_rows

    def extend(self, new: pa.Table) -> None:
        """Append newly followed events; the cursor (and every checkpoint) stays valid."""
        if new.num_rows:
            self.table = pa.concat_tables([self.table, new])
            self._positions.clear()

    def rebase(self, table: pa.Table) -> None:
        """Replay ``table`` from now on: the same events as before (rechunked, say) followed by
        any new ones. The cursor and every checkpoint stay valid."""
        if table.num_rows < self.table.num_rows:
            raise ValueError("rebase needs every event replayed so far")
        self.table = table
        self._positions.clear()

    def seek(self, cursor: int) -> RunState:
        cursor = max(0, min(int(cursor), self.table.num_rows))
        if cursor < self.cursor:
            start = max(c for c in self._checkpoints if c <= cursor)
            self._fold = copy.deepcopy(self._checkpoints[start])
            self.cursor = start
        while self.cursor < cursor:
            boundary = (self.cursor // self._every + 1) * self._every
            end = min(cursor, boundary)
            self._fold.update(self.table.slice(self.cursor, end - self.cursor))
            self.cursor = end
            if end == boundary and end not in self._checkpoints:
                self._checkpoints[end] = copy.deepcopy(self._fold)
        return self.state

    def step(self, events: int = 1) -> RunState:
        return self.seek(self.cursor + events)

    def positions(self, target: str) -> np.ndarray:
        """Row indices of the events a target names (sorted)."""
        pos = self._positions.get(target)
        if pos is None:
            kind, cond = TARGETS[target]
            pos = rows_equal(self.table.column("kind"), kind)
            if cond is not None and len(pos):
                field, value = cond  # a boolean field (nulls never match)
                hit = pc.struct_field(self.table.column(kind), field)
                hit = hit if value else pc.invert(hit)
                pos = pos[to_numpy(pc.and_kleene(pc.is_valid(hit), hit))[pos]]
            for column, value in self._stream.items():
                if value is not None and len(pos):
                    pos = pos[to_numpy(self.table.column(column))[pos] == value]
            self._positions[target] = pos
        return pos

    def next(self, target: str) -> RunState:
        """Move to just after the next event of ``target`` (stays put when there is none)."""
        pos = self.positions(target)
        i = np.searchsorted(pos, self.cursor, side="left")
        return self.seek(pos[i] + 1) if i < len(pos) else self.state

    def previous(self, target: str) -> RunState:
        """Move to just after the previous event of ``target`` before the cursor."""
        pos = self.positions(target)
        i = np.searchsorted(pos, self.cursor - 1, side="left") - 1
        return self.seek(pos[i] + 1) if i >= 0 else self.seek(0)
