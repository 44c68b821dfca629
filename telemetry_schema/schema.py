"""The Arrow schemas of an Esper event log (format 2), derived from the event catalogue.

A log holds one Arrow IPC stream per event kind and rank. Each stream is a flat table: the
*envelope* columns (sequence number, wall time, rank, environment, epoch, step, and for the
kinds that concern a slot, the slot and seed ids) followed by the kind's payload fields as
columns of their own. The schema metadata names the format version
(``esper.schema_version``) and the kind (``esper.kind``).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

import pyarrow as pa

from telemetry_schema.events import EVENT_TYPES, KINDS, Event

SCHEMA_VERSION = "2.0"
"""major.minor: a reader refuses another major version (format 1 is read by ``v1.py``) and
accepts any minor."""
VERSION_KEY = b"esper.schema_version"
KIND_KEY = b"esper.kind"

ENVELOPE: tuple[tuple[str, pa.DataType, str], ...] = (
    ("seq", pa.int64(), "Sequence number, strictly increasing over all kinds of one rank's streams."),
    ("wall_time", pa.timestamp("us", tz="UTC"), "Wall-clock time the event was emitted."),
    ("rank", pa.int16(), "Distributed rank of the writing process (0 for a single process)."),
    ("env", pa.int16(), "Vectorised environment index (0 for plain training)."),
    ("epoch", pa.int32(), "Epoch of the training loop when the event was emitted."),
    ("step", pa.int64(), "Global optimiser step when the event was emitted."),
)
SLOT_ENVELOPE: tuple[tuple[str, pa.DataType, str], ...] = (
    ("slot", pa.string(), "Slot id the event concerns (kinds about a slot only); null when none."),
    ("seed", pa.string(), "Seed id the event concerns (kinds about a slot only); null when none."),
)
ENVELOPE_NAMES = tuple(name for name, _, _ in ENVELOPE + SLOT_ENVELOPE)


class SchemaVersionError(ValueError):
    """A log written with an incompatible major schema version."""


def arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of one payload field annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return arrow_type(inner)
    if origin is list:
        return pa.list_(arrow_type(args[0]))
    if origin is dict:
        return pa.map_(arrow_type(args[0]), arrow_type(args[1]))
    simple = {float: pa.float64(), int: pa.int64(), str: pa.string(), bool: pa.bool_()}
    return simple[annotation]


def payload_fields(cls: type[Event]) -> list[pa.Field]:
    """Arrow fields of one kind's payload, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [pa.field(f.name, arrow_type(hints[f.name])) for f in dataclasses.fields(cls)]


RUN_WIDE_ENVELOPE = ("seq", "wall_time", "rank")
"""The envelope of kinds about the whole process (run start and end, heartbeats)."""


def envelope_fields(cls: type[Event]) -> list[pa.Field]:
    """The envelope columns of one kind: all but the environment, epoch and step for a
    run-wide kind; the slot and seed only for kinds about a slot."""
    spec = ENVELOPE + (SLOT_ENVELOPE if cls.SLOTTED else ())
    if cls.RUN_WIDE:
        spec = tuple(e for e in spec if e[0] in RUN_WIDE_ENVELOPE)
    return [pa.field(name, dtype) for name, dtype, _ in spec]


@functools.cache
def kind_schema(kind: str) -> pa.Schema:
    """The flat schema of one kind's stream (raises KeyError for an unknown kind)."""
    cls = KINDS[kind]
    return pa.schema(envelope_fields(cls) + payload_fields(cls),
                     metadata={VERSION_KEY: SCHEMA_VERSION.encode(), KIND_KEY: kind.encode()})


def check_version(schema: pa.Schema, source: str) -> str:
    """Return the log's schema version, or raise SchemaVersionError naming ``source``."""
    meta = schema.metadata or {}
    raw = meta.get(VERSION_KEY)
    if raw is None:
        raise SchemaVersionError(f"{source}: not an Esper event log (no {VERSION_KEY.decode()} in its schema)")
    version = raw.decode("utf-8", errors="replace")
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        # a corrupt schema can make the version any bytes: the message stays one short line
        shown = version if len(version) <= 32 and version.isprintable() else repr(version[:32]) + "…"
        raise SchemaVersionError(
            f"{source}: schema version {shown} is not supported by this reader "
            f"(reads {SCHEMA_VERSION.split('.')[0]}.x; format 1 logs are converted on open)")
    return version


def conform(table: pa.Table, kind: str) -> pa.Table:
    """Reshape one kind's table of any compatible minor version to this reader's schema:
    columns it does not know are dropped, columns it expects but the log lacks are nulls,
    and a column of another type is cast (raising ArrowInvalid when it cannot be)."""
    target = kind_schema(kind)
    if table.schema.equals(target, check_metadata=False):
        return table.replace_schema_metadata(target.metadata)
    columns = []
    for f in target:
        if f.name in table.column_names:
            col = table.column(f.name)
            columns.append(col if col.type == f.type else col.cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=target)


def empty(kind: str) -> pa.Table:
    """An empty table of ``kind``."""
    return kind_schema(kind).empty_table()


def all_kinds() -> tuple[str, ...]:
    return tuple(cls.KIND for cls in EVENT_TYPES)
