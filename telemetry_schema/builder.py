"""Turning emitted records into one record batch per kind: pure, no threads, no I/O.

The writer keeps two queues of records: scalars as a flat list, six items a record
(``t, name, value, step, epoch, env``), and typed events as tuples
``(t, event, slot, seed, step, epoch, env)``, ``t`` being the writer's clock reading. ``BatchBuilder.build`` takes what was queued since the last flush and gives a
``Flush``: sequence numbers assigned in clock order (among equal readings scalars first,
then typed events in emission order), and each kind's rows as a batch of its flat schema.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields

import numpy as np
import pyarrow as pa

from telemetry_schema.arrays import from_numpy
from telemetry_schema.events import EVENT_TYPES, KINDS, Scalar
from telemetry_schema.schema import kind_schema

SCALAR_WIDTH = 6
"""Items of one scalar record in the writer's flat list."""
_WALL = pa.timestamp("us", tz="UTC")
_GETTERS = {cls.KIND: operator.attrgetter(*[f.name for f in fields(cls)]) for cls in EVENT_TYPES}


@dataclass
class Flush:
    """The batches of one flush and the sequence numbers they span, ``lo`` to ``hi``."""

    lo: int
    hi: int
    batches: dict[str, pa.RecordBatch] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.hi - self.lo + 1


class BatchBuilder:
    """Builds flushes for one rank; ``seq`` is the next sequence number to assign."""

    def __init__(self, rank: int, t0: float, wall0: float, seq: int = 0) -> None:
        self.rank, self.t0, self.wall0, self.seq = rank, t0, wall0, seq

    def build(self, scalars: list, events: list[tuple]) -> Flush | None:
        """One flush of the records (None when there are none)."""
        w = SCALAR_WIDTH
        ns = len(scalars) // w
        n = ns + len(events)
        if n == 0:
            return None
        t = np.array(scalars[0::w] + [r[0] for r in events], np.float64)
        # stable: equal readings keep scalars first, then events in emission order
        seq = np.empty(n, np.int64)
        seq[np.argsort(t, kind="stable")] = np.arange(self.seq, self.seq + n)
        flush = Flush(self.seq, self.seq + n - 1)
        self.seq += n
        if ns:
            columns = self._envelope(seq[:ns], t[:ns], scalars[3::w], scalars[4::w], scalars[5::w])
            payload = [pa.array(scalars[1::w], pa.string()), from_numpy(np.array(scalars[2::w], np.float64))]
            flush.batches[Scalar.KIND] = pa.RecordBatch.from_arrays(columns + payload, schema=kind_schema(Scalar.KIND))
        by_kind: dict[str, list[int]] = {}
        for i, rec in enumerate(events):
            by_kind.setdefault(rec[1].KIND, []).append(i)
        for kind, index in by_kind.items():
            rows = ns + np.array(index)
            flush.batches[kind] = self._kind_batch(kind, [events[i] for i in index], seq[rows], t[rows])
        return flush

    def _envelope(self, seq, t, step, epoch, env, run_wide: bool = False) -> list[pa.Array]:
        wall = np.rint((self.wall0 + (t - self.t0)) * 1e6).astype(np.int64)
        n = len(seq)
        columns = [from_numpy(seq), from_numpy(wall).view(_WALL),
                   from_numpy(np.full(n, self.rank, np.int16))]
        if not run_wide:
            columns += [from_numpy(np.array(env, np.int16)), from_numpy(np.array(epoch, np.int32)),
                        from_numpy(np.array(step, np.int64))]
        return columns

    def _kind_batch(self, kind: str, recs: list[tuple], seq: np.ndarray, t: np.ndarray) -> pa.RecordBatch:
        schema = kind_schema(kind)
        _, evs, slot, seed, step, epoch, env = zip(*recs)
        columns = self._envelope(seq, t, step, epoch, env, KINDS[kind].RUN_WIDE)
        if KINDS[kind].SLOTTED:
            columns += [pa.array(slot, pa.string()), pa.array(seed, pa.string())]
        getter = _GETTERS[kind]
        rows = [getter(e) for e in evs]
        if rows and not isinstance(rows[0], tuple):
            rows = [(r,) for r in rows]
        payload = list(schema)[len(columns):]
        for f, values in zip(payload, zip(*rows)):
            if pa.types.is_map(f.type):
                values = [list(v.items()) if v is not None else None for v in values]
            columns.append(pa.array(values, f.type))
        return pa.RecordBatch.from_arrays(columns, schema=schema)
