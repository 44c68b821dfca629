"""A run's events in one order over all kinds: positions for cursors, seeks and event lists.

A reader returns each kind's events in its own table. ``EventLog`` keeps those tables (as
they grow) and the order of every event over all kinds: position ``p`` is the ``p``-th event
of the run. Events of one poll are ordered by sequence number (one rank: a bitmap over the
range, no sort) or by (wall time, rank, sequence number) when several ranks are in it; a
later poll's events come after an earlier poll's, so live and replayed logs agree.

A viewer extends the log on one thread while a worker folds or searches it on another: the
methods that touch its index hold a lock, and a reader sees the log as of some poll.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_schema.arrays import to_numpy
from telemetry_schema.events import KINDS
from telemetry_schema.tables import KindTables


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SETTLE_CHUNKS = 64
"""Chunks a kind's table may gain from polls before they are merged into one."""


class EventLog:
    """Every event read so far, by kind, and each kind's rows' positions in the run's order."""

    def __init__(self, tables: KindTables | None = None) -> None:
        self.tables = KindTables()
        self.kinds: list[str] = []  # kind codes: index into this list
        self._positions: dict[str, list[np.ndarray]] = {}
        self._order_kind: list[np.ndarray] = []
        self._order_row: list[np.ndarray] = []
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.RLock()
        self._settled: dict[str, tuple[int, int]] = {}  # per kind: rows and chunks merged so far
        self.length = 0
        if tables is not None:
            self.extend(tables)

    def __len__(self) -> int:
        return self.length

    def extend(self, new: KindTables) -> None:
        """Append a poll's events after every event already held."""
        with self._lock:
            self._extend(new)

    def _extend(self, new: KindTables) -> None:
        present = [k for k in new.kinds if k in KINDS]
        old = {k: self.tables.table(k).num_rows if k in self.tables.tables else 0 for k in present}
        self.tables = self.tables.extended(new)
        for k in present:
            self._settle(k)
        if not present:
            return
        order = _order([new.tables[k] for k in present])
        n = len(order[0])
        codes = []
        for k in present:
            if k not in self.kinds:
                self.kinds.append(k)
            codes.append(self.kinds.index(k))
        kind_of = np.repeat(np.array(codes, np.int16), [new.tables[k].num_rows for k in present])[order[0]]
        row_of = np.concatenate([np.arange(old[k], old[k] + new.tables[k].num_rows) for k in present])[order[0]]
        for k, pos in zip(present, order[1]):
            self._positions.setdefault(k, []).append(pos + self.length)
        self._order_kind.append(kind_of)
        self._order_row.append(row_of)
        self.length += n
        self._cache.clear()

    def _settle(self, kind: str) -> None:
        """Merge the small chunks that each poll of a live run adds to a kind's table into one,
        once there are ``SETTLE_CHUNKS`` of them: rows merged before are never copied again."""
        table = self.tables.tables[kind]
        done = self._settled.get(kind, (0, 0))
        if table.column(0).num_chunks - done[1] <= SETTLE_CHUNKS:
            return
        recent = table.slice(done[0]).combine_chunks()
        table = pa.concat_tables([table.slice(0, done[0]), recent]) if done[0] else recent
        self.tables.tables[kind] = table
        self._settled[kind] = (table.num_rows, table.column(0).num_chunks)

    def positions(self, kind: str) -> np.ndarray:
        """The positions of ``kind``'s rows, in row order (ascending)."""
        key = "p:" + kind
        with self._lock:
            got = self._cache.get(key)
            if got is None:
                parts = self._positions.get(kind, [])
                got = np.concatenate(parts) if len(parts) > 1 else (parts[0] if parts else np.zeros(0, np.int64))
                self._positions[kind] = [got] if parts else []
                self._cache[key] = got
            return got

    def order(self) -> tuple[np.ndarray, np.ndarray]:
        """For every position: the kind's code (index into ``kinds``) and the row in its table."""
        with self._lock:
            got = self._cache.get("order")
            if got is None:
                kind = np.concatenate(self._order_kind) if self._order_kind else np.zeros(0, np.int16)
                row = np.concatenate(self._order_row) if self._order_row else np.zeros(0, np.int64)
                self._order_kind, self._order_row = ([kind], [row]) if len(kind) else ([], [])
                got = self._cache["order"] = (kind, row)
            return got

    def slice(self, start: int, stop: int) -> KindTables:
        """The events at positions [start, stop), by kind (each kind's rows in order)."""
        out = {}
        with self._lock:
            kinds, tables = list(self.kinds), self.tables.tables
        for kind in kinds:
            pos = self.positions(kind)
            a, b = np.searchsorted(pos, [start, stop])
            if b > a:
                out[kind] = tables[kind].slice(int(a), int(b - a))
        return KindTables(out)

    def rows_before(self, kind: str, cursor: int) -> int:
        """How many of ``kind``'s rows lie before position ``cursor``."""
        return int(np.searchsorted(self.positions(kind), cursor))

    def event(self, position: int) -> tuple[str, dict]:
        """The kind and the fields (envelope and payload) of the event at ``position``; the
        wall time as a UTC datetime (made here: pyarrow's zoned datetimes import pandas)."""
        kind_of, row_of = self.order()
        with self._lock:
            kind = self.kinds[int(kind_of[position])]
            table = self.tables.tables[kind]
        one = table.slice(int(row_of[position]), 1)
        one = one.set_column(1, "wall_time", pc.cast(one.column(1), pa.int64()))
        row = one.to_pylist()[0]
        if row["wall_time"] is not None:
            row["wall_time"] = _EPOCH + timedelta(microseconds=row["wall_time"])
        return kind, row


def _order(tables: list[pa.Table]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The order of the rows of ``tables`` (concatenated) in the run, and for each table the
    positions of its rows in that order."""
    seqs = [to_numpy(t.column("seq")).astype(np.int64) for t in tables]
    ranks = np.concatenate([to_numpy(t.column("rank")) for t in tables])
    positions = _seq_positions(seqs) if len(ranks) and ranks.min() == ranks.max() else None
    if positions is not None:
        perm = np.empty(len(ranks), np.int64)
        perm[np.concatenate(positions)] = np.arange(len(ranks))
        return perm, positions
    wall = np.concatenate([to_numpy(t.column("wall_time").cast(pa.int64())) for t in tables])
    perm = np.lexsort((np.concatenate(seqs), ranks, wall))
    inverse = np.empty(len(perm), np.int64)
    inverse[perm] = np.arange(len(perm))
    bounds = np.cumsum([0] + [len(s) for s in seqs])
    return perm, [inverse[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _seq_positions(seqs: list[np.ndarray]) -> list[np.ndarray] | None:
    """Each row's position in sequence order, by a count over the range of the sequence
    numbers (no sort); None when they repeat or spread too thin for that."""
    lo = min(int(s.min()) for s in seqs if len(s))
    hi = max(int(s.max()) for s in seqs if len(s))
    total = sum(len(s) for s in seqs)
    if hi - lo > 4 * total + 1024:
        return None
    counts = np.bincount(np.concatenate(seqs) - lo, minlength=hi - lo + 1)
    if counts.max() > 1:
        return None
    rank = np.cumsum(counts) - 1
    return [rank[s - lo] for s in seqs]
