"""Reading event logs: replay a whole log, follow a growing one, merge rank streams.

The reader walks the IPC stream one message at a time and keeps the byte offset of the end
of the last complete record batch. A torn tail (a writer killed mid-message) costs only that
message: the reader returns every complete batch and reports how many bytes it could not read.
A follower polls the same way from its saved offset, so a partial tail is retried later.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_schema.arrays import codes
from telemetry_schema.schema import SCHEMA, SchemaVersionError, check_version, conform, null_array

_CONTINUATION = b"\xff\xff\xff\xff"
PARALLEL_BYTES = 2 << 20
"""A poll of this many bytes or more per thread decodes on several threads (see ``_decode``)."""
_READ_ERRORS = (pa.ArrowException, OSError, EOFError, ValueError)


class LogError(Exception):
    """A log that cannot be read at all; the message is one line naming the file."""


@dataclass
class PollResult:
    """What one poll of a log returned."""

    table: pa.Table
    """New events, conformed to this reader's schema, in stream order."""
    torn_bytes: int
    """Bytes after the last complete batch that could not be read (yet)."""
    ended: bool
    """The stream's end-of-stream marker was seen (the writer closed it)."""


@dataclass
class LogFollower:
    """Follows one event stream by byte offset; ``poll()`` returns only the new events."""

    path: Path
    offset: int = 0
    schema: pa.Schema | None = None
    version: str | None = None
    events_read: int = 0
    torn_bytes: int = 0
    ended: bool = False
    threads: int | None = None
    """Threads a big poll decodes on (None: as many as Arrow's CPU pool)."""
    _schema_message: pa.Buffer | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def poll(self) -> PollResult:
        """Read every complete batch past the saved offset.

        Raises LogError for a file that is missing, not an Arrow stream, or of an
        incompatible schema version. An empty file or a partial schema means "no events yet".
        """
        data = self._read_new_bytes()
        src = pa.BufferReader(data)
        consumed = 0
        if self.schema is None:
            if len(data) >= 4 and data[:4].to_pybytes() != _CONTINUATION:
                raise LogError(f"{self.path}: not an Arrow IPC stream (bad leading bytes)")
            try:
                msg = pa.ipc.read_message(src)
            except _READ_ERRORS:
                return self._result([], len(data))
            if msg.type != "schema":
                raise LogError(f"{self.path}: not an Esper event log (stream does not start with a schema)")
            try:
                schema = pa.ipc.read_schema(msg)
            except _READ_ERRORS as exc:
                raise LogError(f"{self.path}: corrupt schema ({str(exc).splitlines()[0]})") from None
            try:
                self.version = check_version(schema, str(self.path))
            except SchemaVersionError as exc:
                raise LogError(str(exc)) from None
            self.schema = schema
            self._schema_message = msg.serialize()
            consumed = src.tell()
        # Split the new bytes into complete messages (no decoding yet), then decode them.
        start, ends = consumed, []
        while consumed < len(data):
            try:
                msg = pa.ipc.read_message(src)
            except EOFError:
                self.ended = True
                break
            except _READ_ERRORS:
                break
            if msg.type != "record batch":
                break
            consumed = src.tell()
            ends.append(consumed)
        batches = self._decode(data, start, ends)
        if len(batches) < len(ends):  # a corrupt message: keep what precedes it
            consumed, self.ended = ends[len(batches) - 1] if batches else start, False
        elif self.ended:
            consumed = len(data)
        self.offset += consumed
        return self._result(batches, len(data) - consumed)

    def _decode(self, data: pa.Buffer, start: int, ends: list[int]) -> list[pa.RecordBatch]:
        """Decode the complete record-batch messages in ``data[start:ends[-1]]``; stops at the
        first message that does not decode.

        A row sets only its own kind's struct column, so a batch holds real values for the few
        kinds it contains, and nulls (hundreds of bytes a row, uncompressed) for every other
        kind. The kinds of each batch are read first; then the batches holding the same kinds,
        wherever they lie, are decoded as streams of just the envelope and those kinds'
        columns, and the other columns are slices of one null array per field over a
        lazily-zeroed buffer, which costs neither decompression nor memory.

        A big poll (a log opened whole) splits those streams into pieces decoded on one thread
        each, as many threads as Arrow's CPU pool: Arrow's own threads share out the buffers
        of one batch at a time, a few kilobytes each, and ran 1.3x faster than one thread
        where whole pieces run 1.8x (1M events, 2 cores).
        """
        if not ends:
            return []
        bounds = [start, *ends]
        # a first poll's bytes begin with the schema: they are a stream already
        whole = data.slice(0, ends[-1]) if start and data.slice(0, start).equals(self._schema_message) \
            else self._substream(data, [(start, ends[-1])])
        kind_columns, kinds = self._batch_kinds(whole, len(ends))
        by_kinds: dict[tuple[str, ...], list[int]] = {}
        for i, k in enumerate(kinds):
            by_kinds.setdefault(k, []).append(i)
        workers = max(1, min(self.threads or pa.cpu_count(), (ends[-1] - start) // PARALLEL_BYTES))
        piece = (ends[-1] - start) / (2 * workers)  # bytes: two pieces a thread evens them out
        pieces: list[tuple[tuple[str, ...], list[int]]] = []
        for k, index in by_kinds.items():
            lo = size = 0
            for j, i in enumerate(index):
                size += bounds[i + 1] - bounds[i]
                if size >= piece or j == len(index) - 1:
                    pieces.append((k, index[lo:j + 1]))
                    lo, size = j + 1, 0
        nulls: dict[int, pa.Array] = {}

        def decode(task: tuple[tuple[str, ...], list[int]]) -> tuple[list[int], list[pa.RecordBatch]]:
            k, index = task
            ranges: list[tuple[int, int]] = []
            for i in index:  # adjacent messages as one range
                if ranges and ranges[-1][1] == bounds[i]:
                    ranges[-1] = (ranges[-1][0], bounds[i + 1])
                else:
                    ranges.append((bounds[i], bounds[i + 1]))
            stream = self._substream(data, ranges)
            return index, self._decode_group(stream, k, [kind_columns[i] for i in index], nulls, workers == 1)

        if workers == 1:
            results = [decode(task) for task in pieces]
        else:
            pieces.sort(key=lambda task: -sum(bounds[i + 1] - bounds[i] for i in task[1]))
            with ThreadPoolExecutor(workers, thread_name_prefix="esper-decode") as pool:
                results = list(pool.map(decode, pieces))
        decoded: list[pa.RecordBatch | None] = [None] * len(kinds)
        for index, group in results:
            for i, batch in zip(index, group):
                decoded[i] = batch
        batches = []
        for batch in decoded:  # up to the first that did not decode
            if batch is None:
                break
            batches.append(batch)
        return batches

    def _substream(self, data: pa.Buffer, ranges: list[tuple[int, int]]) -> pa.Buffer:
        """The schema message followed by the messages in ``data[lo:hi]`` for each range: a
        stream of its own."""
        sink = pa.BufferOutputStream()
        sink.write(self._schema_message)
        for lo, hi in ranges:
            sink.write(data.slice(lo, hi - lo))
        return sink.getvalue()

    def _batch_kinds(self, stream: pa.Buffer, count: int) -> tuple[list[pa.Array], list[tuple[str, ...]]]:
        """Each batch's kind column, and the kinds present in it (decoding only that column).

        All batches are read and encoded in one call each, and the kinds of every batch found
        with numpy: a Python step per batch waited for the interpreter's lock while Textual
        was being imported beside it (1M events: 0.03 s alone, 0.1-0.16 s there). A stream
        that does not read whole is read batch by batch, up to the first that does not decode.
        """
        # one column a batch: Arrow's thread pool costs more than it saves (1M events: 26 -> 13 ms)
        options = pa.ipc.IpcReadOptions(use_threads=False, included_fields=[self.schema.get_field_index("kind")])
        try:
            columns = pa.ipc.open_stream(stream, options=options).read_all().column(0).chunks
        except _READ_ERRORS:
            columns = []
        if len(columns) != count:  # a batch that does not decode: keep those before it
            columns = []
            try:
                reader = pa.ipc.open_stream(stream, options=options)
                for _ in range(count):
                    columns.append(reader.read_next_batch().column(0))
            except (*_READ_ERRORS, StopIteration):
                pass
        if not columns:
            return [], []
        encoded = pc.dictionary_encode(pa.chunked_array(columns)).combine_chunks()
        names = encoded.dictionary.to_pylist()
        batch = np.repeat(np.arange(len(columns)), [len(c) for c in columns])
        kind = codes(encoded)
        present = np.zeros((len(columns), len(names) + 1), bool)
        present[batch, kind] = True  # a null kind (-1) marks the last column, never read
        known = [name if self.schema.get_field_index(name) >= 0 else None for name in names]
        kinds = [tuple(sorted(known[j] for j in np.flatnonzero(row[:-1]) if known[j] is not None))
                 for row in present]
        return columns, kinds

    def _decode_group(self, stream: pa.Buffer, kinds: tuple[str, ...], kind_columns: list[pa.Array],
                      nulls: dict[int, pa.Array], use_threads: bool) -> list[pa.RecordBatch]:
        """Decode the batches of ``stream`` (one per entry of ``kind_columns``, their kind
        columns, already decoded) for just the other envelope columns and ``kinds``; the
        other columns are slices of one null array per field, kept in ``nulls`` for every
        batch of this poll.

        The stream is read in one call and each missing column made once for all of its
        batches (a step per batch and column waited on the interpreter's lock beside
        Textual's import); one that does not read whole is read batch by batch, up to the
        first batch that does not decode.
        """
        schema = self.schema
        kind_index = schema.get_field_index("kind")
        wanted = sorted({i for i, f in enumerate(schema) if not pa.types.is_struct(f.type) and i != kind_index}
                        | {schema.get_field_index(k) for k in kinds})
        options = pa.ipc.IpcReadOptions(use_threads=use_threads, included_fields=wanted)
        lengths = [len(c) for c in kind_columns]
        try:
            part = pa.ipc.open_stream(stream, options=options).read_all()
        except _READ_ERRORS:
            part = None
        if part is not None and all(lengths) and part.num_rows == sum(lengths):
            names = set(part.schema.names)
            columns = [pa.chunked_array(kind_columns, f.type) if i == kind_index
                       else part.column(f.name) if f.name in names
                       else pa.chunked_array([self._nulls(nulls, i, part.num_rows)], f.type)
                       for i, f in enumerate(schema)]
            # the batches come back at the boundaries of the kind columns (one a batch)
            batches = pa.Table.from_arrays(columns, schema=schema).to_batches()
            if [b.num_rows for b in batches] == lengths:
                return batches
        batches = []
        try:
            reader = pa.ipc.open_stream(stream, options=options)
            for kind_column in kind_columns:
                part = reader.read_next_batch()
                n, names = part.num_rows, set(part.schema.names)
                if len(kind_column) != n:
                    raise ValueError("a batch's kind column does not match its length")
                columns = [kind_column if i == kind_index else part.column(f.name) if f.name in names
                           else self._nulls(nulls, i, n) for i, f in enumerate(schema)]
                batches.append(pa.RecordBatch.from_arrays(columns, schema=schema))
        except (*_READ_ERRORS, StopIteration):
            pass
        return batches

    def _nulls(self, nulls: dict[int, pa.Array], index: int, length: int) -> pa.Array:
        """``length`` nulls of field ``index``: a slice of the longest built so far."""
        have = nulls.get(index)
        if have is None or len(have) < length:
            have = nulls[index] = null_array(self.schema.field(index).type, max(length, 65_536))
        return have.slice(0, length)

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

    def _result(self, batches: list[pa.RecordBatch], torn: int) -> PollResult:
        self.torn_bytes = torn
        if batches:
            try:
                table = conform(pa.Table.from_batches(batches, schema=self.schema))
            except _READ_ERRORS as exc:
                raise LogError(f"{self.path}: log does not match the event schema "
                               f"({str(exc).splitlines()[0]})") from None
        else:
            table = SCHEMA.empty_table()
        self.events_read += table.num_rows
        return PollResult(table=table, torn_bytes=torn, ended=self.ended)


@dataclass
class LogRead:
    """A whole log, replayed."""

    path: Path
    table: pa.Table
    events: int
    torn_bytes: int
    version: str | None
    ended: bool


def read_log(path: str | Path) -> LogRead:
    """Replay a whole stream. Raises LogError for a file that holds no readable log."""
    follower = LogFollower(Path(path))
    res = follower.poll()
    if follower.schema is None:
        if res.torn_bytes == 0:
            raise LogError(f"{path}: empty log (no schema written yet)")
        raise LogError(f"{path}: not an Arrow IPC stream (no readable schema)")
    return LogRead(Path(path), res.table, res.table.num_rows, res.torn_bytes, follower.version, res.ended)


def merge_streams(tables: list[pa.Table]) -> pa.Table:
    """Merge the streams of several ranks into one view ordered by time (then rank, seq)."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return SCHEMA.empty_table()
    if len(tables) == 1:
        return tables[0]
    merged = pa.concat_tables(tables)
    order = pc.sort_indices(merged, sort_keys=[("wall_time", "ascending"), ("rank", "ascending"),
                                               ("seq", "ascending")])
    return merged.take(order)


def iter_events(table: pa.Table):
    """Yield (envelope dict, Event) for each row: the log turned back into typed events.

    Meant for small tables (tests, tools); viewers use the vectorised fold instead.
    """
    import dataclasses
    import typing

    from telemetry_schema.events import KINDS

    envelope_names = [f.name for f in SCHEMA if not pa.types.is_struct(f.type)]
    for row in table.to_pylist():
        cls = KINDS[row["kind"]]
        payload = dict(row[row["kind"]] or {})
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if typing.get_origin(hints[f.name]) is dict and payload.get(f.name) is not None:
                payload[f.name] = dict(payload[f.name])
        yield {k: row[k] for k in envelope_names}, cls(**payload)
