"""Nissa, the telemetry facade: core state changes in, telemetry_schema events out."""

from esper.nissa.events import EventSink, start_run
from telemetry_schema.rundir import new_run_id
from esper.nissa.sink import MultiSink, NullSink, Sink

__all__ = ["EventSink", "new_run_id", "start_run", "MultiSink", "NullSink", "Sink"]
