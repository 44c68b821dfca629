"""A whole run read back as one flat table per event kind: the API for tools and tests.

``read_run(run_dir)`` reads every rank's stream of a run directory (or one log file) and
returns a ``RunLog``: ``table(kind)`` is that kind's events as a flat Arrow table (the
envelope columns followed by the kind's payload fields, ranks merged in time order) and
``rows(kind)`` the same as a list of dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from telemetry_schema.events import KINDS
from telemetry_schema.reader import LogError, read_log
from telemetry_schema.schema import ENVELOPE_NAMES, SCHEMA, struct_type


@dataclass
class RunLog:
    """Every event of a run, by kind."""

    path: Path
    tables: dict[str, pa.Table] = field(default_factory=dict)

    def table(self, kind: str) -> pa.Table:
        """``kind``'s events as a flat table (empty, with the kind's columns, when none)."""
        if kind not in KINDS:
            raise KeyError(f"unknown event kind {kind!r}")
        got = self.tables.get(kind)
        return got if got is not None else flat_schema(kind).empty_table()

    def rows(self, kind: str) -> list[dict]:
        """``kind``'s events as dicts of envelope and payload fields, in time order."""
        return self.table(kind).to_pylist()

    @property
    def kinds(self) -> list[str]:
        """The kinds that have at least one event."""
        return sorted(k for k, t in self.tables.items() if t.num_rows)


def flat_schema(kind: str) -> pa.Schema:
    """The flat schema of one kind: envelope columns (without ``kind``) then payload fields."""
    envelope = [f for f in SCHEMA if f.name in ENVELOPE_NAMES and f.name != "kind"]
    return pa.schema(envelope + list(struct_type(KINDS[kind])))


def split_kinds(table: pa.Table) -> dict[str, pa.Table]:
    """A wide table (one struct column per kind) split into one flat table per kind."""
    out: dict[str, pa.Table] = {}
    envelope = [n for n in ENVELOPE_NAMES if n != "kind"]
    kinds = table.column("kind").unique().to_pylist() if table.num_rows else []
    for kind in kinds:
        if kind not in KINDS:
            continue
        sub = table.filter(pa.compute.equal(table.column("kind"), kind))
        payload = sub.column(kind).combine_chunks()
        columns = [sub.column(n) for n in envelope] + [payload.field(f.name) for f in payload.type]
        out[kind] = pa.Table.from_arrays(columns, schema=flat_schema(kind))
    return out


def read_run(path: str | Path) -> RunLog:
    """Read a run directory (every rank) or one log file. Raises LogError when nothing is readable."""
    from telemetry_schema.rundir import stream_paths
    from telemetry_schema.reader import merge_streams

    path = Path(path)
    files = stream_paths(path) if path.is_dir() else [path]
    if not files:
        raise LogError(f"{path}: no event log in this directory")
    merged = merge_streams([read_log(p).table for p in files])
    return RunLog(path, split_kinds(merged))
