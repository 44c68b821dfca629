"""The run's configuration as a table of dotted keys and values (telemetry_schema.config)."""

from __future__ import annotations

from textual.widgets import DataTable

from telemetry_schema import config
from tui import fmt


class ConfigTable(DataTable):
    """Every key of the run's configuration with its value, as text (never markup)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._shown: list[tuple[str, str]] | None = None

    def on_mount(self) -> None:
        self.add_column("key", key="key")
        self.add_column("value", key="value")

    def show(self, cfg: dict) -> None:
        rows = config.flatten(cfg)
        if rows == self._shown:
            return
        self._shown = rows
        self.clear()
        for key, value in rows:
            self.add_row(fmt.text(key), fmt.text(value), key=key)
        if not rows:
            self.add_row(fmt.text("no configuration in this run", style="grey50"), "")
