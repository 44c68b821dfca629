"""A run's events out as tables: one tidy file per event kind, as CSV, Parquet or JSON Lines.

    esper export RUN [--format csv|parquet|jsonl] [--kinds K1,K2] [--out DIR] [--force]

Each kind's events, every rank of a distributed run in one table (merged by wall time, the
``rank`` column kept), become ``<out>/<kind>.<ext>``: the envelope columns (seq, wall_time,
rank, env, epoch, step, and slot and seed for kinds about a slot), then the kind's payload
fields. Values keep the natural form of each format:

- Parquet keeps the Arrow types: UTC timestamps, lists, maps, nulls, NaN and infinities.
- CSV: ``wall_time`` in ISO 8601 (``2026-01-02T03:04:05.123456Z``), lists and maps as JSON
  text, a null as an empty field, floats always written as floats (``1.0``, ``NaN``,
  ``inf``, ``-inf``: what polars, pandas and DuckDB read back as numbers).
- JSON Lines: one object per event; timestamps in ISO 8601, lists as arrays, maps as objects.
  JSON has no NaN or infinity, so those are written as null (Parquet and CSV keep them).

A log with a torn tail or a corrupt stream is exported up to its last whole batch, and each
such problem is returned as a one-line warning. Format 1 run directories are read too. Files
are written whole (a temporary file renamed into place) and existing ones are never replaced
unless asked (``force``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from telemetry_schema.events import KINDS
from telemetry_schema.reader import LogError
from telemetry_schema.rundir import read_run
from telemetry_schema.tables import KindTables

FORMATS = {"csv": ".csv", "parquet": ".parquet", "jsonl": ".jsonl"}
"""Table formats and the extension of their files."""
JSON_ROWS = 16_384
"""Rows converted to JSON at a time (bounds the Python objects alive at once)."""


class ExportError(Exception):
    """An export that cannot be done; the message is one line."""


@dataclass
class Exported:
    """What an export wrote."""

    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    """Each kind's file."""
    rows: dict[str, int] = field(default_factory=dict)
    """Events written per kind."""
    warnings: list[str] = field(default_factory=list)
    """One line per problem found in the log (torn tail, corrupt stream, kind with no events)."""


def parse_kinds(text: str) -> list[str]:
    """'epoch_completed,scalar' -> the kinds named, checked against the catalogue."""
    names = list(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    if not names:
        raise ExportError("--kinds: no kind named (e.g. --kinds epoch_completed,scalar)")
    for name in names:
        if name not in KINDS:
            shown = name if len(name) <= 40 and name.isprintable() else repr(name[:40])
            raise ExportError(f"--kinds: no event kind {shown!r} (kinds: {', '.join(KINDS)})")
    return names


def read_for_export(run: str | Path) -> tuple[KindTables, list[str]]:
    """Every readable event of a run directory, and a warning per problem the read found."""
    path = Path(run)
    if not path.exists():
        raise ExportError(f"{path}: no such run directory")
    if not path.is_dir():
        raise ExportError(f"{path}: not a run directory (a file; export takes the directory the run wrote)")
    try:
        tables = read_run(path)
    except LogError as exc:
        raise ExportError(str(exc)) from None
    return tables, log_warnings(tables)


def log_warnings(tables: KindTables) -> list[str]:
    """One line for each corrupt or refused stream and for torn tails."""
    out = [f"{line}: exported up to its last whole batch" if "corrupt" in line else line
           for line in tables.corrupt]
    if tables.torn_bytes:
        out.append(f"the log ends in {tables.torn_bytes} bytes that do not form a whole batch (a torn tail: "
                   f"the writer was killed or is still writing): exported up to the last whole batch")
    return out


def by_time(table: pa.Table) -> pa.Table:
    """Several ranks' events in one order: by wall time, then rank, then sequence number (a
    single rank's events stay in their stream order)."""
    if table.num_rows < 2 or pc.count_distinct(table.column("rank")).as_py() < 2:
        return table
    return table.sort_by([("wall_time", "ascending"), ("rank", "ascending"), ("seq", "ascending")])


def export_run(run: str | Path, fmt: str = "csv", out: str | Path | None = None,
               kinds: list[str] | None = None, force: bool = False) -> Exported:
    """Write one table per kind of ``run`` (every kind that has events, or ``kinds``) in
    ``fmt`` to ``out`` (default ``<run>/export/<fmt>/``). Raises ExportError."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    tables, warnings = read_for_export(run)
    chosen = kinds if kinds is not None else tables.kinds
    if not chosen:
        raise ExportError(f"{run}: the log holds no whole event yet")
    result = Exported(Path(out) if out is not None else Path(run) / "export" / fmt, warnings=warnings)
    targets = {kind: result.out / f"{kind}{FORMATS[fmt]}" for kind in chosen}
    refuse_existing(list(targets.values()), force)
    make_dir(result.out)
    for kind, path in targets.items():
        table = by_time(tables.table(kind))
        if not table.num_rows:
            result.warnings.append(f"no {kind} events in this run: {path.name} has no rows")
        write_table(table, path, fmt)
        result.files[kind], result.rows[kind] = path, table.num_rows
    return result


def refuse_existing(paths: list[Path], force: bool) -> None:
    """Raise unless every path is free (or ``force``)."""
    taken = [p for p in paths if p.exists() or p.is_symlink()]
    if taken and not force:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise ExportError(f"{taken[0]} exists{more}: --force overwrites")


def make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot write to {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write to {path}: permission denied")


def write_table(table: pa.Table, path: Path, fmt: str) -> None:
    """Write ``table`` to ``path`` whole: a temporary file renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if fmt == "parquet":
            pq.write_table(table, tmp)
        elif fmt == "csv":
            pcsv.write_csv(csv_table(table), tmp)
        else:
            write_jsonl(table, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None


# -- CSV ------------------------------------------------------------------------------------

def csv_table(table: pa.Table) -> pa.Table:
    """``table`` with every column in a form CSV holds: timestamps in ISO 8601, floats as
    text readers take for floats, lists and maps as JSON text."""
    columns = []
    for f in table.schema:
        col = table.column(f.name)
        if pa.types.is_timestamp(f.type):
            col = iso_times(col)
        elif pa.types.is_floating(f.type):
            col = float_text(col)
        elif pa.types.is_nested(f.type):
            col = pa.array([None if v is None else json.dumps(v, ensure_ascii=False)
                            for v in json_values(col)], pa.string())
        columns.append(col)
    return pa.Table.from_arrays(columns, names=table.column_names)


def iso_times(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """UTC timestamps as ISO 8601 text with microseconds and a 'Z'."""
    return pc.strftime(pc.cast(col, pa.timestamp("us", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")


def float_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Floats as the shortest text that reads back to the same value, always recognisable as a
    float: '1.0' (not '1'), 'NaN', 'inf', '-inf'."""
    text = pc.cast(col, pa.string())
    integral = pc.match_substring_regex(text, r"^-?[0-9]+$")
    text = pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)
    return pc.replace_substring_regex(text, r"^-?nan$", "NaN")


# -- JSON -----------------------------------------------------------------------------------

def json_values(col: pa.ChunkedArray) -> list:
    """A column as JSON-ready Python values: maps as dicts, non-finite floats as None."""
    return [_json_safe(v, is_map) for v, is_map in
            ((v, pa.types.is_map(col.type)) for v in col.to_pylist())]


def _json_safe(value, is_map: bool = False):
    if value is None:
        return None
    if is_map:
        return {k: _json_safe(v) for k, v in value}
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_jsonl(table: pa.Table, path: Path) -> None:
    """One JSON object per row, in order, ``JSON_ROWS`` rows at a time."""
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, table.num_rows, JSON_ROWS):
            part = table.slice(start, JSON_ROWS)
            columns = {name: _json_column(part.column(name)) for name in part.column_names}
            names = list(columns)
            for row in zip(*columns.values()):
                f.write(json.dumps(dict(zip(names, row)), ensure_ascii=False, allow_nan=False))
                f.write("\n")


def _json_column(col: pa.ChunkedArray) -> list:
    if pa.types.is_timestamp(col.type):
        return iso_times(col).to_pylist()
    if pa.types.is_floating(col.type):
        finite = pc.is_finite(col)
        return pc.if_else(finite, col, pa.scalar(None, col.type)).to_pylist()
    if pa.types.is_nested(col.type):
        return json_values(col)
    return col.to_pylist()
