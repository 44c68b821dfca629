"""The Esper telemetry contract: event types, Arrow schemas, log writer, readers, run-state fold.

Needs only the standard library, numpy and pyarrow; never imports torch or esper.
"""

from telemetry_schema.events import EVENT_TYPES, KINDS, Event
from telemetry_schema.reader import LogError, RunFollower, StreamFollower
from telemetry_schema.rundir import create_run, read_run
from telemetry_schema.schema import SCHEMA_VERSION, SchemaVersionError, kind_schema
from telemetry_schema.sinks import MemorySink, TelemetryError
from telemetry_schema.tables import KindTables
from telemetry_schema.writer import EventWriter, WriterConfig

__all__ = [
    "EVENT_TYPES", "KINDS", "Event", "EventWriter", "WriterConfig", "LogError", "RunFollower",
    "StreamFollower", "create_run", "read_run", "SCHEMA_VERSION", "SchemaVersionError",
    "kind_schema", "MemorySink", "TelemetryError", "KindTables",
]
