"""Nissa, the telemetry facade: core state changes in, telemetry_schema events out."""

from esper.nissa.events import EventSink, new_run_id, start_run
from esper.nissa.sink import MultiSink, NullSink, Sink

__all__ = ["EventSink", "new_run_id", "start_run", "MultiSink", "NullSink", "Sink"]
