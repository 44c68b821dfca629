"""The Esper telemetry contract: event types, Arrow schema, log writer, reader/follower, fold.

Needs only the standard library, numpy and pyarrow; never imports torch or esper.
"""

from telemetry_schema.events import EVENT_TYPES, KINDS, Event
from telemetry_schema.reader import LogError, LogFollower, LogRead, merge_streams, read_log
from telemetry_schema.runlog import RunLog, read_run
from telemetry_schema.schema import SCHEMA, SCHEMA_VERSION, SchemaVersionError
from telemetry_schema.writer import EventWriter, WriterConfig

__all__ = [
    "EVENT_TYPES", "KINDS", "Event", "EventWriter", "WriterConfig", "LogError", "LogFollower",
    "LogRead", "merge_streams", "read_log", "RunLog", "read_run", "SCHEMA", "SCHEMA_VERSION", "SchemaVersionError",
]
