"""The event-log writer: cheap appends on the caller's thread, Arrow batches written off it.

``EventWriter.emit`` (typed events) and ``EventWriter.scalar`` (the hot path) append a
tuple to an in-memory list, without a lock. Pending records become one record batch in
emission order (sequence numbers are assigned there), and a background thread compresses and
appends the batches to the Arrow IPC stream, so the training loop never waits on the disk.

Who turns records into a batch: the background thread every ``flush_interval`` seconds (or,
while fewer than ``small_flush`` records wait, every ``quiet_interval``), and the emitting
thread itself when ``flush_rows`` records are pending. Converting Python objects
to columns needs the GIL, and done on a second thread beside a fast emitter it costs that
emitter about three times as much as doing it in place (the two threads hand the GIL and the
objects' memory back and forth); compression and the write release the GIL and stay on the
background thread. If ``max_pending`` events pile up (the disk cannot keep up), emit writes
on the caller's thread instead of dropping anything; each wait is counted and reported in the
log as a warning and in every heartbeat.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np
import pyarrow as pa

from telemetry_schema.events import EVENT_TYPES, Event, Heartbeat, LogMessage, RunFinished, Scalar
from telemetry_schema.schema import SCHEMA, null_array, zero_buffer

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class WriterConfig:
    flush_interval: float = 0.25
    """Seconds between time-based flushes of a busy log (the latency a live viewer sees)."""
    small_flush: int = 512
    """A time-based flush of fewer pending events than this waits for ``quiet_interval``
    instead: every record batch repeats the whole schema's buffer layout (about 13 KB), so a
    run that emits a few events a second would otherwise write kilobytes per event."""
    quiet_interval: float = 2.0
    """Seconds between time-based flushes of a quiet log (never less than ``flush_interval``)."""
    flush_rows: int = 65_536
    """Pending events that trigger an early flush."""
    max_pending: int = 4_000_000
    """Pending events at which emit waits for the flusher (never drops)."""
    heartbeat_s: float = 5.0
    """Seconds between heartbeats; 0 disables them."""
    compression: str | None = "zstd"
    """IPC buffer compression: 'zstd', 'lz4' or None."""


class EventWriter:
    """Writes events to an Arrow IPC stream at ``sink`` (a path or a ``pyarrow.NativeFile``).

    Set ``writer.epoch`` and ``writer.step`` as the loop advances; events take them unless
    given explicitly. Use as a context manager, or call ``close()``; closing flushes
    everything and writes ``run_finished`` unless one was already emitted.
    """

    def __init__(self, sink, *, rank: int = 0, config: WriterConfig | None = None,
                 clock: Clock = time.perf_counter, wall_clock: Clock = time.time) -> None:
        self.config = config or WriterConfig()
        self.rank = rank
        self.epoch = 0
        self.step = 0
        self._clock = clock
        self._t0 = clock()
        self._wall0 = wall_clock()
        self._owns_sink = not isinstance(sink, pa.NativeFile)
        self._sink = pa.OSFile(str(sink), "wb") if self._owns_sink else sink
        options = pa.ipc.IpcWriteOptions(compression=self.config.compression)
        self._stream = pa.ipc.new_stream(self._sink, SCHEMA, options=options)
        # Emit appends to these lists without a lock (list.extend/append of a tuple is atomic
        # under the GIL); the flusher swaps them out and re-checks a retired list once more
        # later, so an append that raced the swap is still written.
        self._sq: list = []  # flat scalar records: t, name, value, step, epoch, env
        self._eq: list = []  # typed records: (t, event, slot, seed, step, epoch, env)
        self._retired: list[list] = []  # [list_s, list_e, taken_s, taken_e, age]
        self._soft_scalar = self.config.flush_rows * _SCALAR_WIDTH
        self._flush_lock = threading.Lock()  # taking records and building batches
        self._write_lock = threading.Lock()  # writing built batches, in the order built
        self._ready: deque[pa.RecordBatch] = deque()
        self._built = 0  # rows built into batches (under _flush_lock)
        self._last_build = time.monotonic()
        self._wake = threading.Event()
        self._seq = 0
        self.backpressure_waits = 0
        self.events_written = 0  # rows written (under _write_lock)
        self.flusher_cpu_s = 0.0
        """CPU seconds the background writer thread has used (for overhead accounting)."""
        self._finished = False
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="esper-telemetry-flush", daemon=True)
        self._thread.start()

    # -- the emit API ----------------------------------------------------------------------

    def scalar(self, name: str, value: float, *, step: int | None = None,
               epoch: int | None = None, env: int = 0) -> None:
        """Append a named scalar (the hot path: one list extend, no lock)."""
        q = self._sq
        q.extend((self._clock(), name, value, self.step if step is None else step,
                  self.epoch if epoch is None else epoch, env))
        if len(q) >= self._soft_scalar:
            self._on_full()

    def emit(self, event: Event, *, slot: str | None = None, seed: str | None = None,
             epoch: int | None = None, step: int | None = None, env: int = 0) -> None:
        """Append one typed event; ``slot`` and ``seed`` fill the envelope where they apply."""
        if self._closed:
            raise ValueError("emit on a closed EventWriter")
        if isinstance(event, RunFinished):
            self._finished = True
        q = self._eq
        q.append((self._clock(), event, slot, seed, self.step if step is None else step,
                  self.epoch if epoch is None else epoch, env))
        if len(q) >= self.config.flush_rows:
            self._on_full()

    def log(self, level: str, text: str) -> None:
        """Emit a free-form log message."""
        self.emit(LogMessage(level=level, text=text))

    # -- flushing ----------------------------------------------------------------------------

    def _queued(self) -> int:
        """Records emitted and not yet taken into a batch."""
        return len(self._sq) // _SCALAR_WIDTH + len(self._eq)

    def _pending(self) -> int:
        return self._queued() + self._built - self.events_written

    def _on_full(self) -> None:
        """``flush_rows`` records are pending: build them into a batch here (unless a flush is
        already building) and wake the writer thread; past max_pending, write here too."""
        if self._flush_lock.acquire(blocking=False):  # else a flush is building: it takes these
            try:
                self._build_locked()
            finally:
                self._flush_lock.release()
            self._wake.set()
        if self._pending() >= self.config.max_pending:
            # The writer cannot keep up: wait for the disk rather than drop events.
            self.backpressure_waits += 1
            if self.backpressure_waits == 1 or self.backpressure_waits % 1000 == 0:
                self.log("warning", f"telemetry writer backpressure: emit waited for the disk "
                                    f"({self.backpressure_waits} waits so far); no event was dropped")
            self.flush()

    def _run(self) -> None:
        cpu0 = time.thread_time()
        try:
            self._loop()
        finally:
            self.flusher_cpu_s = time.thread_time() - cpu0

    def _loop(self) -> None:
        next_beat = self._clock() + self.config.heartbeat_s
        interval = self.config.flush_interval
        quiet = max(interval, self.config.quiet_interval)
        while not self._closed:
            # Sleep until a flush may be due: a fast emitter builds its own batches (each build
            # restarts the clock), so this thread then only writes; a quiet log is looked at
            # every ``interval`` until it holds a batch's worth or ``quiet`` has passed.
            age = time.monotonic() - self._last_build
            self._wake.wait(interval - age if age < interval else min(interval, max(0.0, quiet - age)))
            self._wake.clear()
            if self.config.heartbeat_s > 0 and self._clock() >= next_beat and not self._closed:
                self.emit(Heartbeat(events_emitted=self._seq + self._pending(),
                                    backpressure_waits=self.backpressure_waits))
                next_beat = self._clock() + self.config.heartbeat_s
            try:
                if flush_due(self.config, time.monotonic() - self._last_build, self._queued()):
                    self.flush()
                else:
                    self._write_ready()
            except BaseException:  # kept in self._error and raised to the caller by flush()
                log.exception("telemetry flush failed")
                return

    def flush(self) -> None:
        """Write every event emitted so far (called by the writer thread; callers may call it too)."""
        with self._flush_lock:
            self._build_locked()
        self._write_ready()

    def _write_ready(self) -> None:
        """Write the batches built so far, in the order they were built."""
        with self._write_lock:
            self._check()
            try:
                while self._ready:
                    batch = self._ready.popleft()
                    self._stream.write_batch(batch)
                    self.events_written += batch.num_rows
                self._sink.flush()
            except BaseException as exc:
                self._error = exc
                raise

    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"telemetry writer failed: {self._error}") from self._error

    def _build_locked(self) -> None:
        """Turn the pending records into the next batch (the caller holds ``_flush_lock``)."""
        self._check()
        self._last_build = time.monotonic()
        try:
            s_flat, e_recs = self._take_records()
            if s_flat or e_recs:
                batch, codes = self._build_batch(s_flat, e_recs)
                if codes is not None and batch.num_rows >= _SEGMENT_ROWS:
                    self._ready.extend(batch.slice(lo, hi - lo) for lo, hi in kind_segments(codes))
                else:
                    self._ready.append(batch)
                self._built += batch.num_rows
        except BaseException as exc:
            self._error = exc
            raise

    def _take_records(self) -> tuple[list, list]:
        """Swap the emit lists out; return every record not yet taken, in order.

        Each swapped-out list stays on ``_retired`` for a few flushes with the length already
        taken, so a record appended by an emitter that fetched the list just before the swap
        is picked up by a later flush instead of being lost. Lengths are read once per list,
        so concurrent appends never tear a column.
        """
        sq, eq = self._sq, self._eq
        self._sq, self._eq = [], []
        self._retired.append([sq, eq, 0, 0, 0])
        s_parts: list[list] = []
        e_recs: list = []
        keep = []
        for entry in self._retired:
            lst_s, lst_e, done_s, done_e, age = entry
            ns = len(lst_s) // _SCALAR_WIDTH * _SCALAR_WIDTH
            ne = len(lst_e)
            if ns > done_s:
                s_parts.append(lst_s[done_s:ns])
            if ne > done_e:
                e_recs.extend(lst_e[done_e:ne])
            entry[2:] = [ns, ne, age + 1]
            if age < 3:
                keep.append(entry)
        self._retired = keep
        s_flat = s_parts[0] if len(s_parts) == 1 else [x for part in s_parts for x in part]
        return s_flat, e_recs

    def _build_batch(self, s_flat: list, e_recs: list) -> tuple[pa.RecordBatch, np.ndarray | None]:
        """One batch of the records, ordered by clock reading and, among equal readings, by
        emission (typed events keep the order they were emitted in; scalars, kept in a list of
        their own, come first); and each row's kind as a code, or None when it holds one kind."""
        parts, emitted = [], []
        if s_flat:
            w = _SCALAR_WIDTH
            payload = pa.StructArray.from_arrays(
                [pa.array(s_flat[1::w], pa.string()), pa.array(s_flat[2::w], pa.float64())],
                fields=list(SCHEMA.field(Scalar.KIND).type))
            env = (s_flat[0::w], s_flat[3::w], s_flat[4::w], s_flat[5::w], None, None)
            parts.append(self._kind_table(Scalar.KIND, env, payload))
            emitted.append(np.arange(-parts[0].num_rows, 0))
        by_kind: dict[str, list] = {}
        for i, rec in enumerate(e_recs):
            by_kind.setdefault(rec[1].KIND, []).append((i, *rec))
        for kind, recs in by_kind.items():
            index, t, events, slot, seed, step, epoch, env = zip(*recs)
            getter = _GETTERS[kind]
            rows = [getter(e) for e in events]
            if rows and not isinstance(rows[0], tuple):
                rows = [(r,) for r in rows]
            payload = _payload_array(kind, rows)
            parts.append(self._kind_table(kind, (t, step, epoch, env, slot, seed), payload))
            emitted.append(np.array(index))
        table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        codes = None
        if len(parts) > 1:
            t = table.column("t").to_numpy()
            order = np.lexsort((np.concatenate(emitted), t))
            table = table.take(pa.array(order))
            codes = np.repeat(np.arange(len(parts)), [p.num_rows for p in parts])[order]
        seq = np.arange(self._seq, self._seq + table.num_rows, dtype=np.int64)
        self._seq += table.num_rows
        table = table.set_column(0, SCHEMA.field("seq"), pa.array(seq))
        return table.combine_chunks().to_batches()[0], codes

    def _kind_table(self, kind, envelope, payload) -> pa.Table:
        t_list, step, epoch, env, slot, seed = envelope
        t = np.array(t_list, np.float64) - self._t0
        n = len(t)
        wall = np.rint((self._wall0 + t) * 1e6).astype(np.int64)
        zero = zero_buffer(n)
        columns = {
            "seq": null_array(pa.int64(), n, zero),  # assigned after the kinds are merged in order
            "wall_time": pa.array(wall, SCHEMA.field("wall_time").type),
            "t": pa.array(t),
            "rank": pa.array(np.full(n, self.rank, np.int16)),
            "env": pa.array(np.array(env, np.int16)),
            "epoch": pa.array(np.array(epoch, np.int32)),
            "step": pa.array(np.array(step, np.int64)),
            "kind": _repeated_string(kind, n),
            "slot": pa.array(slot, pa.string()) if slot is not None else null_array(pa.string(), n, zero),
            "seed": pa.array(seed, pa.string()) if seed is not None else null_array(pa.string(), n, zero),
        }
        cols = [columns[f.name] if f.name in columns else
                (payload if f.name == kind else null_array(f.type, n, zero)) for f in SCHEMA]
        return pa.Table.from_arrays(cols, schema=SCHEMA)

    def close(self, status: str = "completed", reason: str = "") -> None:
        """Write ``run_finished`` (unless already emitted), flush everything, end the stream."""
        if self._closed:
            return
        if not self._finished:
            self.emit(RunFinished(status=status, reason=reason))
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()
        self._stream.close()
        if self._owns_sink:
            self._sink.close()

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(*exit_status(exc_type, exc))


_SEGMENT_ROWS = 2_048
"""Batches of at least this many rows are written in segments (``kind_segments``)."""


def kind_segments(codes: np.ndarray, min_rows: int = 256, rare_share: int = 1024,
                  max_segments: int = 64) -> list[tuple[int, int]]:
    """Row ranges [lo, hi) to write a big batch in, given each row's kind code.

    A reader decodes, for every row of a record batch, each kind the batch holds. In a big
    flush a few rare events (an epoch's end: epoch metrics, gates, decisions) would make it
    decode every rare kind for tens of thousands of rows. So rows of kinds holding at most
    1/``rare_share`` of the batch are cut out in clusters (rows closer than ``min_rows`` stay
    together), and the runs between them hold only the common kinds. Every range costs a record
    batch's layout (about 10 KB), hence ``min_rows``, and at most ``max_segments`` ranges."""
    n = len(codes)
    rare = np.bincount(codes)[codes] * rare_share <= n
    if not rare.any() or rare.all():
        return [(0, n)]
    rows = np.flatnonzero(rare)
    gaps = np.flatnonzero(np.diff(rows) >= min_rows)
    starts = np.r_[rows[0], rows[gaps + 1]]
    stops = np.r_[rows[gaps], rows[-1]] + 1
    if starts[0] < min_rows:
        starts[0] = 0
    if n - stops[-1] < min_rows:
        stops[-1] = n
    cuts = sorted({0, n, *starts.tolist(), *stops.tolist()})
    if len(cuts) - 1 > max_segments:
        return [(0, n)]
    return list(zip(cuts[:-1], cuts[1:]))


def flush_due(config: WriterConfig, since_build: float, queued: int) -> bool:
    """Whether the writer thread flushes now, ``since_build`` seconds after the last batch was
    built, with ``queued`` records waiting: a batch's worth after ``flush_interval``, anything
    after ``quiet_interval``."""
    if since_build >= max(config.flush_interval, config.quiet_interval):
        return True
    return since_build >= config.flush_interval and queued >= config.small_flush


def exit_status(exc_type, exc) -> tuple[str, str]:
    """(status, reason) of a run leaving a ``with`` block: completed, interrupted or failed."""
    if exc_type is None:
        return "completed", ""
    if issubclass(exc_type, KeyboardInterrupt):
        return "interrupted", "KeyboardInterrupt"
    return "failed", f"{exc_type.__name__}: {exc}"


_SCALAR_WIDTH = 6
_GETTERS = {cls.KIND: operator.attrgetter(*[f.name for f in fields(cls)]) for cls in EVENT_TYPES}


def _repeated_string(text: str, n: int) -> pa.Array:
    """``n`` copies of ``text`` as a string array, built from its buffers (no Python list)."""
    raw = text.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(raw)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)])


def _payload_array(kind: str, rows: list[tuple]) -> pa.StructArray:
    stype = SCHEMA.field(kind).type
    columns = list(zip(*rows))
    children = []
    for field, values in zip(stype, columns):
        if pa.types.is_map(field.type):
            values = [list(v.items()) if v is not None else None for v in values]
        children.append(pa.array(values, field.type))
    return pa.StructArray.from_arrays(children, fields=list(stype))
