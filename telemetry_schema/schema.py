"""The Arrow schema of an Esper event log, derived from the event catalogue.

A log is a table with one row per event: the *envelope* columns, a ``kind`` column, and one
struct column per event kind (named by the kind) that is set on that kind's rows and null
elsewhere. The schema version lives in the schema metadata under ``esper.schema_version``.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_schema.events import EVENT_TYPES, Event

SCHEMA_VERSION = "1.0"
"""major.minor: a reader refuses another major version and accepts any minor."""
VERSION_KEY = b"esper.schema_version"

ENVELOPE: tuple[tuple[str, pa.DataType, str], ...] = (
    ("seq", pa.int64(), "Sequence number, strictly increasing within one stream."),
    ("wall_time", pa.timestamp("us", tz="UTC"), "Wall-clock time the event was emitted."),
    ("t", pa.float64(), "Seconds since the writer started (monotonic clock)."),
    ("rank", pa.int16(), "Distributed rank of the writing process (0 for a single process)."),
    ("env", pa.int16(), "Vectorised environment index (0 for plain training)."),
    ("epoch", pa.int32(), "Epoch of the training loop when the event was emitted."),
    ("step", pa.int64(), "Global optimiser step when the event was emitted."),
    ("kind", pa.string(), "Event kind, e.g. 'stage_changed'; names the struct column holding its fields."),
    ("slot", pa.string(), "Slot id the event concerns, null when none."),
    ("seed", pa.string(), "Seed id the event concerns, null when none."),
)
ENVELOPE_NAMES = tuple(name for name, _, _ in ENVELOPE)


class SchemaVersionError(ValueError):
    """A log written with an incompatible major schema version."""


def arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of one payload field annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType")):
        (inner,) = [a for a in args if a is not type(None)]
        return arrow_type(inner)
    if origin is list:
        return pa.list_(arrow_type(args[0]))
    if origin is dict:
        return pa.map_(arrow_type(args[0]), arrow_type(args[1]))
    simple = {float: pa.float64(), int: pa.int64(), str: pa.string(), bool: pa.bool_()}
    return simple[annotation]


def payload_fields(cls: type[Event]) -> list[pa.Field]:
    """Arrow fields of one kind's payload, each with its documentation as metadata."""
    hints = typing.get_type_hints(cls)
    return [
        pa.field(f.name, arrow_type(hints[f.name]), metadata={"doc": f.metadata["doc"]})
        for f in dataclasses.fields(cls)
    ]


def struct_type(cls: type[Event]) -> pa.StructType:
    return pa.struct(payload_fields(cls))


def build_schema(event_types: tuple[type[Event], ...] = EVENT_TYPES) -> pa.Schema:
    """The full log schema for a catalogue of event types."""
    fields = [pa.field(n, t, metadata={"doc": d}) for n, t, d in ENVELOPE]
    fields += [
        pa.field(cls.KIND, struct_type(cls), metadata={"doc": (cls.__doc__ or "").strip()})
        for cls in event_types
    ]
    return pa.schema(fields, metadata={VERSION_KEY: SCHEMA_VERSION.encode()})


SCHEMA = build_schema()


def check_version(schema: pa.Schema, source: str) -> str:
    """Return the log's schema version, or raise SchemaVersionError naming ``source``."""
    meta = schema.metadata or {}
    raw = meta.get(VERSION_KEY)
    if raw is None:
        raise SchemaVersionError(f"{source}: not an Esper event log (no {VERSION_KEY.decode()} in its schema)")
    version = raw.decode("utf-8", errors="replace")
    major = version.split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        # a corrupt schema can make the version any bytes: the message stays one short line
        shown = version if len(version) <= 32 and version.isprintable() else repr(version[:32]) + "…"
        raise SchemaVersionError(
            f"{source}: schema version {shown} is not supported by this reader "
            f"(reads {SCHEMA_VERSION.split('.')[0]}.x)"
        )
    return version


def zero_buffer(length: int) -> pa.Buffer:
    """A zero-filled buffer big enough to back null arrays of ``length`` rows of any type the
    log uses (values at most 8 bytes wide); ``numpy.zeros`` takes its pages lazily from the
    OS, so untouched zeros cost nothing."""
    return pa.py_buffer(np.zeros((length + 1) * 8, np.uint8))


def null_array(type_: pa.DataType, length: int, zero: pa.Buffer | None = None) -> pa.Array:
    """An all-null array of ``type_`` whose every buffer is the one shared ``zero`` buffer.

    ``pa.nulls`` allocates and clears buffers for every leaf of a struct; a log row carries
    one struct per kind (over a hundred leaves), so the writer's flush and the reader's
    conform build nulls this way instead: the cost no longer grows with the leaf count.
    """
    zero = zero_buffer(length) if zero is None else zero
    if pa.types.is_struct(type_):
        return pa.StructArray.from_buffers(type_, length, [zero], null_count=length,
                                           children=[null_array(f.type, length, zero) for f in type_])
    if pa.types.is_list(type_) or pa.types.is_map(type_):
        # all offsets zero: every row is an empty (and null) list, the child has no rows
        # (pa.nulls, not pa.array([], type_): pa.array imports pandas, 0.2 s, to check its input)
        child = pa.nulls(0, type_).values
        return pa.Array.from_buffers(type_, length, [zero, zero], null_count=length, children=[child])
    if pa.types.is_string(type_) or pa.types.is_binary(type_):
        return pa.Array.from_buffers(type_, length, [zero, zero, zero], null_count=length)
    if pa.types.is_null(type_):
        return pa.nulls(length)
    return pa.Array.from_buffers(type_, length, [zero, zero], null_count=length)


def conform(table: pa.Table) -> pa.Table:
    """Reshape a table of any compatible version to this reader's schema.

    Rows of kinds this reader does not know are dropped; columns it does not know are
    dropped; columns it expects but the log lacks are filled with nulls.
    """
    if table.schema.equals(SCHEMA, check_metadata=False):
        return table  # this reader's own version: nothing to reshape
    known = pa.array([cls.KIND for cls in EVENT_TYPES])
    if table.num_rows and "kind" in table.column_names:
        mask = pc.is_in(table.column("kind"), value_set=known)
        if not pc.all(mask).as_py():
            table = table.filter(mask)
    columns = []
    for field in SCHEMA:
        if field.name in table.column_names:
            col = table.column(field.name)
            if col.type != field.type:
                col = _conform_column(col, field.type)
        else:
            col = null_array(field.type, table.num_rows)
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _conform_column(col: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """Conform a struct column whose fields differ (added or removed in a minor version)."""
    if not pa.types.is_struct(target) or not pa.types.is_struct(col.type):
        return col.cast(target)
    chunks = []
    for chunk in col.chunks:
        children = []
        for field in target:
            idx = chunk.type.get_field_index(field.name)
            child = chunk.field(idx) if idx >= 0 else null_array(field.type, len(chunk))
            children.append(child if child.type == field.type else child.cast(field.type))
        chunks.append(pa.StructArray.from_arrays(children, fields=list(target), mask=chunk.is_null()))
    return pa.chunked_array(chunks, type=target)
