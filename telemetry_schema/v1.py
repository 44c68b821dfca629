"""Format 1 logs: read them into this format's tables, and convert a run directory.

Format 1 kept a single stream per rank (``events.arrows`` or ``events.rank<R>.arrows``) with
one struct column per kind. It is read one message at a time, each batch validated in full
before anything is computed on it, then split by kind into flat tables. A batch that does
not decode ends the read there (its offset is reported).

    python -m telemetry_schema.v1 RUN_DIR      # convert a format 1 run directory in place
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from telemetry_schema.arrays import codes
from telemetry_schema.events import KINDS
from telemetry_schema.schema import conform
from telemetry_schema.tables import KindTables

V1_RE = re.compile(r"^events(\.rank(?P<rank>\d{1,5}))?\.arrows$")
_ERRORS = (pa.ArrowException, ValueError, OSError, EOFError)


class V1Error(Exception):
    """A format 1 log that cannot be read at all (one line)."""


def v1_streams(run_dir: Path) -> list[Path]:
    """The format 1 streams of a run directory, rank 0 first."""
    try:
        found = [p for p in Path(run_dir).iterdir() if V1_RE.match(p.name)]
    except OSError:
        return []
    return sorted(found, key=lambda p: int(V1_RE.match(p.name)["rank"] or 0))


def is_v1(path: Path) -> bool:
    """Whether ``path`` (a file) starts with a format 1 schema."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        schema = pa.ipc.read_schema(pa.ipc.read_message(pa.BufferReader(head)))
    except _ERRORS:
        return False
    return (schema.metadata or {}).get(b"esper.schema_version", b"").startswith(b"1.")


def read_v1(path: Path) -> KindTables:
    """Every complete, valid batch of a format 1 stream, split into flat tables by kind."""
    try:
        data = pa.memory_map(str(path)).read_buffer()
    except OSError as exc:
        raise V1Error(f"{path}: cannot read ({exc.strerror or exc})") from None
    src = pa.BufferReader(data)
    try:
        schema = pa.ipc.read_schema(pa.ipc.read_message(src))
    except _ERRORS:
        raise V1Error(f"{path}: not a readable format 1 log") from None
    parts: dict[str, list[pa.Table]] = {}
    corrupt, good_end = [], src.tell()
    while src.tell() < data.size:
        at = src.tell()
        try:
            msg = pa.ipc.read_message(src)
        except EOFError:
            good_end = data.size
            break
        except _ERRORS:
            break
        try:
            batch = pa.ipc.read_record_batch(msg, schema)
            batch.validate(full=True)
            for kind, table in split(batch).items():
                parts.setdefault(kind, []).append(table)
        except _ERRORS as exc:
            corrupt.append(f"{path}: corrupt at byte {at} ({str(exc).splitlines()[0][:100]})")
            break
        good_end = src.tell()
    tables = {k: pa.concat_tables(v) for k, v in parts.items()}
    return KindTables(tables, corrupt, 0 if corrupt else data.size - good_end)


def split(batch: pa.RecordBatch) -> dict[str, pa.Table]:
    """One format 1 batch as flat tables of this format, by kind."""
    if batch.num_rows == 0 or "kind" not in batch.schema.names:
        return {}
    enc = batch.column("kind").dictionary_encode()
    index = codes(enc)
    out = {}
    for i, kind in enumerate(enc.dictionary.to_pylist()):
        if kind not in KINDS or kind not in batch.schema.names:
            continue
        rows = pa.array(np.flatnonzero(index == i))
        sub = batch.take(rows)
        payload = sub.column(kind)
        names = [n for n in ("seq", "wall_time", "rank", "env", "epoch", "step", "slot", "seed")
                 if n in sub.schema.names]
        columns = [sub.column(n) for n in names]
        names += [f.name for f in payload.type]
        columns += [payload.field(j) for j in range(payload.type.num_fields)]
        out[kind] = conform(pa.Table.from_arrays(columns, names=names), kind)
    return out


def convert(run_dir: Path, flush_rows: int = 65_536) -> list[Path]:
    """Write a format 2 copy of every format 1 stream of ``run_dir`` (the old files stay).

    Each rank's events are cut, in sequence order, into flushes of ``flush_rows`` consecutive
    sequence numbers, as the format 2 writer would have written them."""
    from telemetry_schema.codec import BatchEncoder
    from telemetry_schema.schema import kind_schema
    from telemetry_schema.sinks import DirectorySink

    written = []
    for stream in v1_streams(run_dir):
        rank = int(V1_RE.match(stream.name)["rank"] or 0)
        tables = {k: t.sort_by("seq").combine_chunks() for k, t in read_v1(stream).tables.items() if t.num_rows}
        sink = DirectorySink(Path(run_dir) / "events", rank)
        seqs = {k: t.column("seq").to_numpy() for k, t in tables.items()}
        lo = min((int(s[0]) for s in seqs.values()), default=0)
        hi = max((int(s[-1]) for s in seqs.values()), default=-1)
        encoders = {k: BatchEncoder(kind_schema(k)) for k in tables}
        for kind, encoder in encoders.items():
            sink.create(kind, encoder.schema_message)
            written.append(sink.path(kind))
        for start in range(lo, hi + 1, flush_rows):
            stop = min(start + flush_rows - 1, hi)
            for kind, table in tables.items():
                a, b = np.searchsorted(seqs[kind], [start, stop + 1])
                if b > a:
                    sink.append(kind, encoders[kind].encode(table.slice(a, b - a).to_batches()[0], start, stop))
        sink.close()
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m telemetry_schema.v1 RUN_DIR\n")
        return 2
    run_dir = Path(argv[0])
    if not v1_streams(run_dir):
        sys.stderr.write(f"{run_dir}: no format 1 log (events.arrows) here\n")
        return 2
    try:
        written = convert(run_dir)
    except (V1Error, FileExistsError, OSError) as exc:
        sys.stderr.write(f"error: {str(exc).splitlines()[0]}\n")
        return 1
    sys.stdout.write(f"converted: {len(written)} streams in {run_dir / 'events'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
