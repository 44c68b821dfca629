"""esper-tui: a Textual terminal viewer of Esper runs (live follow and replay).

Reads logs only through ``telemetry_schema``; never imports ``esper`` or ``torch``.
"""
