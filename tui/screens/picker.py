"""The run picker: the runs of a directory, newest first, summarised in a worker.

A run whose log cannot be read, or whose every stream is corrupt (no event read), is shown as
an error with the reason; a run read in part is shown with its status marked corrupt.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Static

from tui import fmt
from telemetry_schema.runs import RunSummary, list_runs, summarize
from tui.widgets.footer import KeyFooter

COLUMNS = ("run", "status", "task", "epochs", "fossil", "pruned", "panics", "events")


def summary_row(s: RunSummary) -> tuple:
    if s.status == "error" or (s.error and not s.events):
        return (s.run_id, Text("error", style="bold red"), Text(s.error, style="red"), "", "", "", "", "")
    status = Text(s.status, style=fmt.STATUS_STYLES.get(s.status, ""))
    if s.error:  # some streams read, others corrupt
        status.append(" corrupt", style="bold red")
    return (s.run_id, status, s.task, str(s.epochs), str(s.fossilized), str(s.pruned),
            Text(str(s.panics), style="red" if s.panics else ""), fmt.si(s.events))


class RunPicker(Screen):
    """Enter opens the highlighted run."""

    BINDINGS = [Binding("j", "cursor('down')", "Down", show=False),
                Binding("k", "cursor('up')", "Up", show=False),
                Binding("q", "app.quit", "Quit")]

    def __init__(self, runs_dir: Path, clock: Callable[[], float] = time.time) -> None:
        """``clock`` gives the wall time the runs' statuses are judged at (the app's)."""
        super().__init__()
        self.runs_dir, self.clock = Path(runs_dir), clock
        self.paths: list[Path] = []

    def compose(self) -> ComposeResult:
        yield Static(f"runs in {self.runs_dir} — Enter opens a run", id="picker-title")
        yield DataTable(id="picker-table", cursor_type="row", zebra_stripes=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        self.paths = list_runs(self.runs_dir)
        for path in self.paths:
            table.add_row(path.name, Text("…", style="grey50"), "", "", "", "", "", "", key=str(path))
        if not self.paths:
            self.query_one("#picker-title", Static).update(f"{self.runs_dir}: no runs found")
        table.focus()
        self.summarize_all(list(self.paths))

    @work(thread=True, exclusive=True, group="picker")
    def summarize_all(self, paths: list[Path]) -> None:
        for path in paths:
            try:
                row = summary_row(summarize(path, self.clock()))
            except Exception as exc:  # one broken run must not stop the picker
                row = summary_row(RunSummary(path, path.name, status="error", error=f"{type(exc).__name__}: {exc}"))
            self.app.call_from_thread(self._fill, path, row)

    def _fill(self, path: Path, row: tuple) -> None:
        table = self.query_one(DataTable)
        for name, cell in zip(COLUMNS, row):
            table.update_cell(str(path), name, cell, update_width=True)

    def action_cursor(self, direction: str) -> None:
        table = self.query_one(DataTable)
        table.action_cursor_down() if direction == "down" else table.action_cursor_up()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(Path(str(event.row_key.value)))
