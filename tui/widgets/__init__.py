"""The panels of esper-tui; each has ``show(state, ...)`` and draws one RunState."""
