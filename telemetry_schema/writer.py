"""The event-log writer: cheap appends on the caller's thread, batches written off it.

``EventWriter.scalar`` (the hot path) and ``EventWriter.emit`` (typed events) append to a
list, without a lock. A flush takes everything queued, builds one batch per kind
(``builder.BatchBuilder``, pure), encodes each with its checksum (``codec.BatchEncoder``)
and appends it to that kind's stream (``sinks``). A background thread flushes every
``flush_interval`` seconds while a batch's worth waits and every ``quiet_interval`` otherwise,
and sends heartbeats; an emitter that finds ``flush_rows`` records waiting builds them into a
batch itself (converting Python objects needs the interpreter lock, and doing it on a second
thread beside a fast emitter costs that emitter more than doing it in place).

Time comes from an injected clock. ``EventWriter(..., background=False)`` starts no thread:
a test drives the flusher with ``tick()`` under a fake clock.

When a write fails (a full disk), the stream is truncated to its last complete batch and
the writer stops: the next ``emit`` raises ``TelemetryError`` (``on_error="raise"``), or
every later event is dropped and counted (``on_error="drop"``), as the caller chose.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from telemetry_schema.builder import SCALAR_WIDTH, BatchBuilder, Flush
from telemetry_schema.codec import BatchEncoder
from telemetry_schema.endings import ending
from telemetry_schema.events import Event, Heartbeat, LogMessage, RunFinished
from telemetry_schema.schema import kind_schema
from telemetry_schema.sinks import DirectorySink, MemorySink, TelemetryError
from telemetry_schema.summary import Tally

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class WriterConfig:
    flush_interval: float = 0.25
    """Seconds between time-based flushes of a busy log (the latency a live viewer sees)."""
    small_flush: int = 256
    """A time-based flush of fewer pending events than this waits for ``quiet_interval``
    instead: every record batch costs a few hundred bytes of layout, so a run that emits a
    few events a second would otherwise write far more layout than data."""
    quiet_interval: float = 2.0
    """Seconds between time-based flushes of a quiet log (never less than ``flush_interval``)."""
    flush_rows: int = 65_536
    """Pending events that make the emitter build a batch itself."""
    max_pending: int = 4_000_000
    """Pending events at which emit waits for the writer (never drops)."""
    heartbeat_s: float = 5.0
    """Seconds between heartbeats; 0 disables them."""
    compress_rows: int = 64
    """Batches of at least this many rows are zstd-compressed; smaller ones are not."""
    on_error: str = "raise"
    """After a failed write: 'raise' (the next emit raises TelemetryError) or 'drop' (later
    events are dropped and counted in ``dropped``)."""
    summary_every: float = 5.0
    """Seconds between updates of the run's summary file (when the writer keeps one)."""


class EventWriter:
    """Writes events to one stream per kind in ``sink`` (a directory, or a ``MemorySink``).

    Set ``writer.epoch`` and ``writer.step`` as the loop advances; events take them unless
    given explicitly. Use as a context manager, or call ``close()``; closing flushes
    everything and writes ``run_finished`` unless one was already emitted.
    """

    def __init__(self, sink: str | Path | DirectorySink | MemorySink, *, rank: int = 0,
                 config: WriterConfig | None = None, clock: Clock = time.perf_counter,
                 wall_clock: Clock = time.time, background: bool = True,
                 summary_dir: str | Path | None = None) -> None:
        """``summary_dir``: keep that run directory's summary.json current (rank 0 of a run)."""
        self.config = config or WriterConfig()
        if self.config.on_error not in ("raise", "drop"):
            raise ValueError(f"on_error must be 'raise' or 'drop', not {self.config.on_error!r}")
        self.rank = rank
        self.epoch = 0
        self.step = 0
        self.sink = sink if isinstance(sink, (DirectorySink, MemorySink)) else DirectorySink(sink, rank)
        self._clock = clock
        self._builder = BatchBuilder(rank, clock(), wall_clock())
        self._encoders: dict[str, BatchEncoder] = {}
        # Emit appends to these lists without a lock (list.extend/append of a tuple is one
        # operation under the interpreter lock); a build takes records from their front.
        self._sq: list = []  # flat scalar records: t, name, value, step, epoch, env
        self._eq: list = []  # typed records: (t, event, slot, seed, step, epoch, env)
        self._soft_scalar = self.config.flush_rows * SCALAR_WIDTH
        self._ready: deque[Flush] = deque()
        self._build_lock = threading.Lock()  # taking records and building flushes
        self._write_lock = threading.Lock()  # writing built flushes, in the order built
        self._built = 0  # rows built into flushes
        self._last_build = clock()
        self._next_beat = clock() + self.config.heartbeat_s
        self.events_written = 0
        self.backpressure_waits = 0
        self.dropped = 0
        self.error: TelemetryError | None = None
        self.tally = Tally() if summary_dir is not None else None
        self._summary_dir = Path(summary_dir) if summary_dir is not None else None
        self._summary_at = float("-inf")
        self._error_raised = False  # raised to an emitter already (close does not raise it again)
        self.flusher_cpu_s = 0.0
        """CPU seconds the background writer thread has used (for overhead accounting)."""
        self._finished = False
        self._closed = False
        self._wake = threading.Event()
        self._thread = None
        if background:
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
        """Append one typed event; ``slot`` and ``seed`` fill the envelope of kinds about a slot."""
        if self.error is not None:
            if self.config.on_error == "raise":
                self._error_raised = True
                raise self.error
            self.dropped += 1
            return
        if self._closed:
            raise ValueError("emit on a closed EventWriter")
        if (slot is not None or seed is not None) and not event.SLOTTED:
            raise ValueError(f"{event.KIND} events do not concern a slot: no slot or seed")
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

    @property
    def events_emitted(self) -> int:
        """Events emitted so far (written or not yet)."""
        return self._builder.seq + self._queued()

    # -- flushing ----------------------------------------------------------------------------

    def _queued(self) -> int:
        return len(self._sq) // SCALAR_WIDTH + len(self._eq)

    def _pending(self) -> int:
        return self._queued() + self._built - self.events_written

    def _on_full(self) -> None:
        """``flush_rows`` records wait: build them here (unless a build is running) and wake the
        writer thread; past ``max_pending``, write here too."""
        if self._build_lock.acquire(blocking=False):
            try:
                self._build_locked()
            finally:
                self._build_lock.release()
            self._wake.set()
        if self._pending() >= self.config.max_pending:
            self.backpressure_waits += 1  # the disk cannot keep up: wait for it, drop nothing
            if self.backpressure_waits == 1 or self.backpressure_waits % 1000 == 0:
                self.log("warning", f"telemetry writer backpressure: emit waited for the disk "
                                    f"({self.backpressure_waits} waits so far); no event was dropped")
            self.flush()

    def _run(self) -> None:
        cpu0 = time.thread_time()
        try:
            while not self._closed:
                self._wake.wait(self._wait_s())
                self._wake.clear()
                if not self._closed:
                    self.tick()
        except TelemetryError:
            pass  # kept in self.error; the emitter sees it
        except BaseException:
            log.exception("telemetry writer thread failed")
        finally:
            self.flusher_cpu_s = time.thread_time() - cpu0

    def _wait_s(self) -> float:
        """Seconds until a flush or heartbeat may be due."""
        since = self._clock() - self._last_build
        quiet = max(self.config.flush_interval, self.config.quiet_interval)
        wait = self.config.flush_interval - since if since < self.config.flush_interval else \
            min(self.config.flush_interval, max(0.0, quiet - since))
        if self.config.heartbeat_s > 0:
            wait = min(wait, max(0.0, self._next_beat - self._clock()))
        return max(wait, 0.001)

    def tick(self) -> None:
        """One pass of the writer thread's work at the clock's present reading: a heartbeat if
        one is due, then a flush if one is due, else a write of what emitters built."""
        if self.error is not None:
            return
        now = self._clock()
        if self.config.heartbeat_s > 0 and now >= self._next_beat:
            self.emit(Heartbeat(events_emitted=self.events_emitted,
                                backpressure_waits=self.backpressure_waits))
            self._next_beat = now + self.config.heartbeat_s
        if flush_due(self.config, now - self._last_build, self._queued()):
            self.flush()
        else:
            self._write_ready()

    def flush(self) -> None:
        """Write every event emitted so far (raises TelemetryError if the log cannot be written)."""
        try:
            with self._build_lock:
                self._build_locked()
            self._write_ready()
        except TelemetryError:
            if threading.current_thread() is not self._thread:
                self._error_raised = True  # the caller has it: close need not raise it again
            raise

    def _build_locked(self) -> None:
        self._last_build = self._clock()
        built = self._builder.build(*self._take_records())
        if built is not None:
            self._ready.append(built)
            self._built += built.rows

    def _take_records(self) -> tuple[list, list]:
        """Take every record emitted so far, in order, from the front of the emit lists.

        The lists are never replaced: an emitter may hold one while it appends. Copying the
        first ``n`` items and deleting them are each one operation under the interpreter lock,
        and an append only ever adds at the end, so nothing appended meanwhile is lost.
        """
        sq, eq = self._sq, self._eq
        ns, ne = len(sq), len(eq)
        s_flat, e_recs = sq[:ns], eq[:ne]
        del sq[:ns], eq[:ne]
        return s_flat, e_recs

    def _write_ready(self) -> None:
        with self._write_lock:
            if self.error is not None:
                raise self.error
            try:
                while self._ready:
                    flush = self._ready[0]
                    for kind, batch in flush.batches.items():
                        self._write_batch(kind, batch, flush)
                    self._ready.popleft()
                    self.events_written += flush.rows
                    if self.tally is not None:
                        self.tally.add(flush.batches)
                self._write_summary()
            except TelemetryError as exc:
                self._fail(exc)
                raise

    def _write_summary(self, force: bool = False) -> None:
        """Update the run's summary file, at most every ``summary_every`` seconds (or now)."""
        if self.tally is None or not (force or self._clock() - self._summary_at >= self.config.summary_every):
            return
        self._summary_at = self._clock()
        try:
            self.tally.write(self._summary_dir)
        except OSError as exc:  # a list falls back to reading the log; the log itself is intact
            log.warning("cannot update %s/summary.json: %s", self._summary_dir, exc)

    def _write_batch(self, kind: str, batch, flush: Flush) -> None:
        encoder = self._encoders.get(kind)
        if encoder is None:
            encoder = self._encoders[kind] = BatchEncoder(kind_schema(kind), self.config.compress_rows)
        if not self.sink.has(kind):
            self.sink.create(kind, encoder.schema_message)
        self.sink.append(kind, encoder.encode(batch, flush.lo, flush.hi))

    def _fail(self, exc: TelemetryError) -> None:
        if self.error is None:
            self.error = exc
            log.error("telemetry stopped: %s", exc)
        self.dropped += self._pending()
        self._ready.clear()

    def close(self, status: str = "completed", reason: str = "") -> None:
        """Write ``run_finished`` (unless already emitted), flush everything, end the streams.

        Raises TelemetryError when the log could not be written and no emit has raised it yet
        (the log still ends at its last complete batch).
        """
        if self._closed:
            return
        if not self._finished and self.error is None:
            self.emit(RunFinished(status=status, reason=reason))
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            if self.error is None:
                self.flush()
        except TelemetryError:
            pass  # kept in self.error
        finally:
            self.sink.close()
            self._write_summary(force=True)
        if self.error is not None and self.config.on_error == "raise" and not self._error_raised:
            self._error_raised = True
            raise self.error

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(*exit_status(exc_type, exc))


def flush_due(config: WriterConfig, since_build: float, queued: int) -> bool:
    """Whether the writer thread flushes now, ``since_build`` seconds after the last batch was
    built, with ``queued`` records waiting: a batch's worth after ``flush_interval``, anything
    after ``quiet_interval``."""
    if since_build >= max(config.flush_interval, config.quiet_interval):
        return True
    return since_build >= config.flush_interval and queued >= config.small_flush


def exit_status(exc_type, exc) -> tuple[str, str]:
    """(status, reason) of a run leaving a ``with`` block: completed, interrupted or failed."""
    return ending(exc_type, exc)
