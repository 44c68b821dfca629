"""The events of one run and the state the panels show: followed live, or at a replay cursor.

No Textual here: the app feeds ``Session`` with tables and asks it where a replay key moves
the cursor. Seeks that would fold many events are left to a worker (``is_cheap`` says which).
The panels show one ``Scope`` (rank, environment); choosing another refolds ``table``, which
only references the polled Arrow tables (never copied), in a worker for long logs.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_schema.fold import RunState
from telemetry_schema.schema import SCHEMA
from tui.scope import Scope, ScopedFold, ScopedReplay

SYNC_EVENTS = 50_000
"""Seeks that fold at most this many events run on the UI thread; longer ones in a worker."""
SPEEDS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536)
"""Replay speeds, in events per play tick."""
RATE_WINDOW_S = 5.0


class Session:
    """All events seen so far, the live fold, and an optional replay over the same table."""

    def __init__(self) -> None:
        # not SCHEMA.empty_table(), which imports pandas (0.3 s, here on the UI thread at start-up)
        self.table: pa.Table = pa.Table.from_batches([], schema=SCHEMA)
        self._settled_rows, self._settled_chunks = 0, 0
        self.fold = ScopedFold()
        self.replay: ScopedReplay | None = None
        self.scope = Scope()
        self.pending: Scope | None = None  # a scope being folded in a worker
        self._rank_ids: set[int] = set()
        self._env_ids: set[int] = set()
        self.torn_bytes = 0
        self.ended = False
        self.loaded = False
        self.manifest: dict = {}
        self.start_wall: float | None = None
        self.playing = False
        self.speed_index = 2
        self._arrivals: deque[tuple[float, int]] = deque()

    # -- feeding -----------------------------------------------------------------------------

    def adopt(self, table: pa.Table, fold: ScopedFold, torn_bytes: int, ended: bool, manifest: dict) -> None:
        """Take over the first poll, folded by the follow worker."""
        self.table, self.fold, self.scope = table, fold, fold.scope
        self._settled_rows, self._settled_chunks = table.num_rows, len(table.column(0).chunks)
        self.torn_bytes, self.ended, self.manifest, self.loaded = torn_bytes, ended, manifest, True
        self._note_start(table)
        self._note_ids(table)
        if self.replay is not None:
            self.replay.extend(table)

    def ingest(self, table: pa.Table, torn_bytes: int, ended: bool, now: float) -> None:
        """Fold newly followed events; a replay keeps its cursor."""
        self.torn_bytes, self.ended = torn_bytes, ended
        if not table.num_rows:
            return
        self._note_start(table)
        self._note_ids(table)
        self.table = pa.concat_tables([self.table, table])
        if len(self.table.column(0).chunks) - self._settled_chunks > 64:
            self._settle()
        self.fold.update(table)
        if self.replay is not None:
            self.replay.extend(table)
        self._arrivals.append((now, table.num_rows))

    def _settle(self) -> None:
        """Merge the small chunks of recent polls into one; older chunks are never copied again."""
        old = self.table.slice(0, self._settled_rows)
        recent = self.table.slice(self._settled_rows).combine_chunks()
        self.table = pa.concat_tables([old, recent])
        self._settled_rows = self.table.num_rows
        self._settled_chunks = len(self.table.column(0).chunks)

    def _note_start(self, table: pa.Table) -> None:
        # RunState has no start time filled in; the first event's wall time stands for it.
        if self.start_wall is None and table.num_rows:
            self.start_wall = table.column("wall_time")[0].value / 1e6

    def _note_ids(self, table: pa.Table) -> None:
        if table.num_rows:
            self._rank_ids.update(pc.unique(table.column("rank")).to_pylist())
            self._env_ids.update(pc.unique(table.column("env")).to_pylist())

    # -- what the panels show -----------------------------------------------------------------

    @property
    def state(self) -> RunState:
        return self.replay.state if self.replay is not None else self.fold.state

    @property
    def length(self) -> int:
        return self.table.num_rows

    @property
    def cursor(self) -> int:
        return self.replay.cursor if self.replay is not None else self.table.num_rows

    @property
    def speed(self) -> int:
        return SPEEDS[self.speed_index]

    def events_per_s(self, now: float) -> float | None:
        """Arrival rate over the last few seconds of follow; else the log's average rate."""
        while self._arrivals and now - self._arrivals[0][0] > RATE_WINDOW_S:
            self._arrivals.popleft()
        if len(self._arrivals) >= 2:
            span = self._arrivals[-1][0] - self._arrivals[0][0]
            if span > 0:
                return sum(n for _, n in list(self._arrivals)[1:]) / span
        st = self.state
        if self.start_wall is not None and st.last_wall is not None and st.last_wall > self.start_wall:
            return st.events / (st.last_wall - self.start_wall)
        return None

    # -- replay ------------------------------------------------------------------------------

    def start_replay(self, cursor: int = 0) -> ScopedReplay:
        """A replay at ``cursor`` (cheap only near the start: callers use a worker otherwise)."""
        self.replay = ScopedReplay(self.table, cursor, self.scope)
        self.playing = False
        return self.replay

    def stop_replay(self) -> None:
        self.replay, self.playing = None, False

    def is_cheap(self, cursor: int) -> bool:
        cur = self.cursor
        return (cur <= cursor <= cur + SYNC_EVENTS) or cursor <= SYNC_EVENTS

    def seek(self, cursor: int) -> None:
        if self.replay is not None:
            self.replay.seek(cursor)

    def adopt_replay(self, replay: ScopedReplay) -> None:
        """Swap in a replay folded by a worker, with any events that arrived meanwhile."""
        if replay.table.num_rows < self.table.num_rows:
            replay.extend(self.table.slice(replay.table.num_rows))
        self.replay = replay

    def target(self, move: str) -> int:
        """The cursor a replay move leads to: 'start', 'end', 'step+', 'step-', 'next:<target>',
        'prev:<target>' (targets: panic, rollback, gate_failure, stage_change, epoch)."""
        cur, length = self.cursor, self.length
        if move == "start":
            return 0
        if move == "end":
            return length
        if move in ("step+", "step-"):
            return max(0, min(length, cur + (1 if move == "step+" else -1)))
        direction, name = move.split(":")
        replay = self.replay or ScopedReplay(self.table, 0, self.scope)
        pos = replay.positions(name)
        if direction == "next":
            i = int(np.searchsorted(pos, cur, side="left"))
            return int(pos[i]) + 1 if i < len(pos) else cur
        i = int(np.searchsorted(pos, cur - 1, side="left")) - 1
        return int(pos[i]) + 1 if i >= 0 else 0

    def play_target(self) -> int:
        """Where one play tick moves the cursor; stops playing at the end."""
        nxt = min(self.length, self.cursor + self.speed)
        if nxt >= self.length:
            self.playing = False
        return nxt

    def change_speed(self, delta: int) -> None:
        self.speed_index = max(0, min(len(SPEEDS) - 1, self.speed_index + delta))

    # -- scope: which rank and environment -------------------------------------------------------

    @property
    def ranks(self) -> list[int]:
        """The ranks of the run: those that wrote events, and those its run_started announces."""
        return sorted(self._rank_ids | set(range(self.state.world_size)))

    @property
    def envs(self) -> list[int]:
        """The environments of the run: those seen in events, and those run_started announces."""
        return sorted(self._env_ids | set(range(self.state.num_envs)))

    @property
    def multi_rank(self) -> bool:
        return len(self.ranks) > 1

    @property
    def multi_env(self) -> bool:
        return len(self.envs) > 1

    def scope_after(self, axis: str, delta: int) -> Scope | None:
        """The scope one step along ``axis`` ('rank' or 'env'; env cycles all, 0, 1, ...);
        None when the run has a single rank / environment (the keys do nothing)."""
        base = self.pending or self.scope
        if axis == "rank":
            if not self.multi_rank:
                return None
            ranks = self.ranks
            i = ranks.index(base.rank) if base.rank in ranks else 0
            return Scope(ranks[(i + delta) % len(ranks)], base.env)
        if not self.multi_env:
            return None
        choices: list[int | None] = [None, *self.envs]
        i = choices.index(base.env) if base.env in choices else 0
        return Scope(base.rank, choices[(i + delta) % len(choices)])

    def is_small(self) -> bool:
        """Whether refolding the whole log is quick enough for the UI thread."""
        return self.length <= SYNC_EVENTS

    def adopt_scope(self, fold: ScopedFold, replay: ScopedReplay | None) -> int | None:
        """Show the scope of ``fold`` (folded from the first ``fold.rows`` events, maybe in a worker).

        Events that arrived meanwhile are folded in. Returns the replay cursor still to reach
        (the cursor moved while folding, or the replay began then), or None.
        """
        fold.update(self.table.slice(fold.rows))
        self.fold, self.scope, self.pending = fold, fold.scope, None
        old = self.replay
        self.replay = replay if old is not None else None
        if old is None:
            return None
        if self.replay is None:
            return old.cursor
        self.adopt_replay(self.replay)
        return old.cursor if old.cursor != self.replay.cursor else None


def make_clock(value: float | None) -> Callable[[], float]:
    """A fixed clock for tests and snapshots (None: the real wall clock)."""
    import time

    return time.time if value is None else (lambda: value)
