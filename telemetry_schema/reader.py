"""Reading event logs: follow one kind's stream, and every stream of a run.

``StreamFollower`` reads one stream file from its saved byte offset: each poll returns the
complete batches that arrived since the last. It tells apart a *torn* tail (the bytes end
inside a message: a writer mid-write, or killed; retried at the next poll) from
*corruption* (a complete message that fails its checks: reported once, with the byte offset,
and the stream is read no further).

``RunFollower`` follows every stream of a run directory (every kind, every rank) and shows a
flush only once every kind's batch of it is on disk (each batch names the sequence numbers
its flush spans), so a viewer never sees a stage change before the gate that caused it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from telemetry_schema.codec import Corrupt, Torn, read_message
from telemetry_schema.events import KINDS
from telemetry_schema.schema import KIND_KEY, SchemaVersionError, check_version, conform, empty
from telemetry_schema.tables import KindTables

STREAM_RE = re.compile(r"^(?P<kind>[a-z][a-z0-9_]*)\.rank(?P<rank>\d{1,5})\.arrows$")
EVENTS_DIR = "events"


class LogError(Exception):
    """A log that cannot be read at all; the message is one line naming the file."""


@dataclass
class Batch:
    """A decoded batch of one stream, with the sequence range of the flush it belongs to."""

    kind: str
    batch: pa.RecordBatch
    lo: int
    hi: int


@dataclass
class StreamFollower:
    """Follows one kind's stream file by byte offset; ``poll()`` returns the new batches."""

    path: Path
    offset: int = 0
    schema: pa.Schema | None = None
    kind: str = ""
    version: str | None = None
    events_read: int = 0
    torn_bytes: int = 0
    ended: bool = False
    corrupt: str | None = None
    """Where and how the stream is corrupt (one line), once found; it is read no further."""
    source: Callable[[int], pa.Buffer] | None = field(default=None, repr=False)
    """Where the bytes come from, given the offset: None reads the file at ``path``."""

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def poll(self) -> list[Batch]:
        """Every complete batch past the saved offset. Raises LogError for a file that cannot be
        read, is not an Esper stream, or has an incompatible version."""
        if self.corrupt is not None or self.ended:
            return []
        data = self._read_new_bytes() if self.source is None else self.source(self.offset)
        pos, out = 0, []
        try:
            if self.schema is None:
                msg = read_message(data, 0, None)
                if msg is None:
                    raise Corrupt("stream ends before its schema")
                self._adopt_schema(msg.schema)
                pos = msg.end
            while pos < data.size:
                msg = read_message(data, pos, self.schema)
                if msg is None:
                    self.ended, pos = True, pos + 8
                    break
                out.append(Batch(self.kind, msg.batch, msg.lo, msg.hi))
                pos = msg.end
        except Torn:
            pass
        except Corrupt as exc:
            self.corrupt = f"{self.path}: corrupt at byte {self.offset + pos} ({exc.args[0]})"
        self.offset += pos
        self.torn_bytes = 0 if self.corrupt else data.size - pos
        self.events_read += sum(b.batch.num_rows for b in out)
        return out

    def _adopt_schema(self, schema: pa.Schema) -> None:
        try:
            self.version = check_version(schema, str(self.path))
        except SchemaVersionError as exc:
            raise LogError(str(exc)) from None
        kind = (schema.metadata or {}).get(KIND_KEY, b"").decode("utf-8", errors="replace")
        named = STREAM_RE.match(self.path.name)
        if named and named["kind"] != kind:
            raise LogError(f"{self.path}: a stream of kind {kind[:40]!r} in a file named for {named['kind']!r}")
        self.schema, self.kind = schema, kind

    def _read_new_bytes(self) -> pa.Buffer:
        try:
            with pa.OSFile(str(self.path), "rb") as f:
                size = f.size()
                f.seek(min(self.offset, size))
                return f.read_buffer(size - min(self.offset, size))
        except FileNotFoundError:
            raise LogError(f"{self.path}: no such log file") from None
        except IsADirectoryError:
            raise LogError(f"{self.path}: is a directory, not a log file") from None
        except OSError as exc:
            raise LogError(f"{self.path}: cannot read ({exc.strerror or exc})") from None


@dataclass
class _Pending:
    """Batches of one rank's flush that is not complete on disk yet."""

    rows: int = 0
    batches: list[Batch] = field(default_factory=list)
    since: float = 0.0


class RunFollower:
    """Follows every stream of a run directory; ``poll()`` returns the new events by kind."""

    def __init__(self, run_dir: str | Path, *, clock=time.monotonic, hold_s: float = 10.0) -> None:
        """A flush whose batches are not all on disk after ``hold_s`` seconds is shown anyway
        (its writer died between two of them)."""
        self.run_dir = Path(run_dir)
        self.streams: dict[Path, StreamFollower] = {}
        self.refused: dict[Path, str] = {}
        self._clock = clock
        self._hold_s = hold_s
        self._pending: dict[tuple[int, int, int], _Pending] = {}

    def stream_files(self) -> list[Path]:
        return stream_files(self.run_dir)

    def poll(self, final: bool = False) -> KindTables:
        """New events of every stream. ``final``: the run is being read whole or its writer is
        gone, so a flush that is not complete on disk is shown as it is."""
        for path in self.stream_files():
            if path not in self.streams and path not in self.refused:
                problem = outside(path, self.run_dir)
                if problem:
                    self.refused[path] = problem
                else:
                    self.streams[path] = StreamFollower(path)
        if not self.streams and not self.run_dir.is_dir():
            raise LogError(f"{self.run_dir}: no such run directory")
        for path, follower in self.streams.items():
            rank = int(STREAM_RE.match(path.name)["rank"])
            for b in follower.poll():
                key = (rank, b.lo, b.hi)
                entry = self._pending.setdefault(key, _Pending(since=self._clock()))
                entry.rows += b.batch.num_rows
                entry.batches.append(b)
        return self._release(final)

    def _release(self, final: bool) -> KindTables:
        """The flushes that are whole on disk, or held long enough, or of a rank with a corrupt
        or refused stream (whose rows will never come: waiting ``hold_s`` for them only delays)."""
        now = self._clock()
        broken = {int(STREAM_RE.match(p.name)["rank"]) for p, f in self.streams.items() if f.corrupt}
        broken |= {int(STREAM_RE.match(p.name)["rank"]) for p in self.refused}
        out: dict[str, list[pa.RecordBatch]] = {}
        for key in sorted(self._pending):
            entry = self._pending[key]
            rank, lo, hi = key
            if entry.rows < hi - lo + 1 and not final and now - entry.since < self._hold_s and rank not in broken:
                continue
            del self._pending[key]
            for b in entry.batches:
                if b.kind in KINDS:
                    out.setdefault(b.kind, []).append(b.batch)
        return KindTables({kind: _merge_ranks(batches, kind) for kind, batches in out.items()})

    @property
    def torn_bytes(self) -> int:
        return sum(f.torn_bytes for f in self.streams.values())

    @property
    def corrupt(self) -> list[str]:
        """One line for each corrupt or refused stream."""
        return [f.corrupt for f in self.streams.values() if f.corrupt] + list(self.refused.values())

    @property
    def ended(self) -> bool:
        """Every stream was closed by its writer."""
        return bool(self.streams) and all(f.ended for f in self.streams.values())

    @property
    def pending(self) -> int:
        """Events read but held back until their flush is whole on disk."""
        return sum(e.rows for e in self._pending.values())


def _merge_ranks(batches: list[pa.RecordBatch], kind: str) -> pa.Table:
    """One kind's new batches as a table of this reader's schema, in (wall time, rank, seq)
    order when several ranks are in it."""
    try:
        tables = [conform(pa.Table.from_batches([b]), kind) for b in batches]
    except (pa.ArrowException, ValueError) as exc:
        raise LogError(f"{kind}: a batch does not match the event schema ({str(exc).splitlines()[0]})") from None
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    ranks = table.column("rank")
    if len(tables) > 1 and pc.min(ranks).as_py() != pc.max(ranks).as_py():
        order = pc.sort_indices(table, sort_keys=[("wall_time", "ascending"), ("rank", "ascending"),
                                                  ("seq", "ascending")])
        table = table.take(order)
    return table


def stream_files(run_dir: Path) -> list[Path]:
    """The stream files of a run directory (``events/<kind>.rank<R>.arrows``), sorted."""
    events = Path(run_dir) / EVENTS_DIR
    try:
        names = [p for p in events.iterdir() if STREAM_RE.match(p.name)]
    except OSError:
        return []
    return sorted(names, key=lambda p: (int(STREAM_RE.match(p.name)["rank"]), p.name))


def outside(path: Path, root: Path) -> str | None:
    """Why ``path`` may not be read as part of ``root`` (a link leading out of it), or None."""
    if not path.is_symlink():
        return None
    try:
        target = path.resolve(strict=True)
        target.relative_to(Path(root).resolve(strict=True))
    except (OSError, ValueError, RuntimeError):
        return f"{path}: a link that leads outside the run directory; not read"
    return None


def read_stream(path: str | Path) -> KindTables:
    """One stream file read whole (its kind only)."""
    follower = StreamFollower(Path(path))
    batches = follower.poll()
    if follower.schema is None:
        if follower.corrupt:
            raise LogError(follower.corrupt)
        raise LogError(f"{path}: empty log (no schema written yet)")
    kind = follower.kind
    if kind not in KINDS:
        return KindTables({})
    tables = {kind: _merge_ranks([b.batch for b in batches], kind) if batches else empty(kind)}
    return KindTables(tables, corrupt=[follower.corrupt] if follower.corrupt else [],
                      torn_bytes=follower.torn_bytes)


def read_memory(sink) -> KindTables:
    """Every event a writer wrote to a ``MemorySink``."""
    out = {}
    for kind, data in sink.streams.items():
        follower = StreamFollower(Path(f"<memory>/{kind}.rank{sink.rank}.arrows"),
                                  source=lambda offset, d=data: pa.py_buffer(bytes(d[offset:])))
        batches = [b.batch for b in follower.poll()]
        if follower.corrupt:
            raise LogError(follower.corrupt)
        if batches and kind in KINDS:
            out[kind] = _merge_ranks(batches, kind)
    return KindTables(out)


def probe(path: Path) -> None:
    """Refuse a file that is not an Esper log, reading only its first message: raises LogError
    (one line). An empty file, or one whose schema is not all written yet, passes: a writer
    may be starting. Format 1 logs pass (they are read by ``v1.py``)."""
    from telemetry_schema.v1 import is_v1

    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
    except OSError as exc:
        raise LogError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not head or is_v1(Path(path)):
        return
    try:
        msg = read_message(pa.py_buffer(head), 0, None)
    except Torn:
        return
    except Corrupt as exc:
        raise LogError(f"{path}: not an Esper event log ({exc.args[0]})") from None
    if msg is None:
        raise LogError(f"{path}: not an Esper event log (ends before its schema)")
    StreamFollower(Path(path))._adopt_schema(msg.schema)
