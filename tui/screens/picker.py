"""The run picker: the runs of a directory, newest first, summarised in a worker.

A run whose log cannot be read, or whose every stream is corrupt (no event read), is shown as
an error with the reason; a run read in part is shown with its status marked corrupt.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static

from tui import fmt
from telemetry_schema.runs import RunSummary, list_runs, matches, parse_filter, summarize
from telemetry_schema.tags import TagError, parse_tags, write_tags
from tui.screens.compare import CompareScreen
from tui.widgets.footer import KeyFooter

COLUMNS = ("run", "status", "task", "epochs", "fossil", "pruned", "panics", "events", "tags")


def summary_row(s: RunSummary) -> tuple:
    """The picker's cells; every string from a run.json or a log as Text (DataTable parses a str
    cell as markup)."""
    tags = fmt.text(", ".join(s.tags), style="cyan")
    if s.status == "error" or (s.error and not s.events):
        return (fmt.text(s.run_id), Text("error", style="bold red"), fmt.text(s.error, style="red"),
                "", "", "", "", "", tags)
    status = fmt.text(s.status, style=fmt.STATUS_STYLES.get(s.status, ""))
    if s.error:  # some streams read, others corrupt
        status.append(" corrupt", style="bold red")
    return (fmt.text(s.run_id), status, fmt.text(s.task), str(s.epochs), str(s.fossilized), str(s.pruned),
            Text(str(s.panics), style="red" if s.panics else ""), fmt.si(s.events), tags)


class RunPicker(Screen):
    """Enter opens the highlighted run; ``/`` filters the list (text in a run's id or task,
    ``status:NAME``, ``tag:NAME``: ``runs.parse_filter``, as the dashboard's runs page filters);
    ``t`` sets the highlighted run's tags."""

    BINDINGS = [Binding("j", "cursor('down')", "Down", show=False),
                Binding("k", "cursor('up')", "Up", show=False),
                Binding("m", "mark", "Mark"),
                Binding("c", "compare", "Compare marked"),
                Binding("slash", "ask('filter')", "Filter"),
                Binding("t", "ask('tags')", "Tag"),
                Binding("escape", "close_input", "Close", show=False),
                Binding("q", "app.quit", "Quit")]

    def __init__(self, runs_dir: Path, clock: Callable[[], float] = time.time) -> None:
        """``clock`` gives the wall time the runs' statuses are judged at (the app's)."""
        super().__init__()
        self.runs_dir, self.clock = Path(runs_dir), clock
        self.paths: list[Path] = []
        self.marked: list[Path] = []
        """Runs marked for the compare view, in the order they were marked."""
        self.summaries: dict[Path, RunSummary] = {}
        self.filter_text = ""
        """The list's filter (``runs.parse_filter``)."""
        self.asking = ""
        """What the input box is open for: 'filter', 'tags' or ''."""

    def compose(self) -> ComposeResult:
        yield Static(fmt.text(f"runs in {self.runs_dir} — Enter opens a run"), id="picker-title")
        yield DataTable(id="picker-table", cursor_type="row", zebra_stripes=True)
        yield Input(id="picker-input", classes="hidden")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column(" ", key="mark")
        for name in COLUMNS:
            table.add_column(name, key=name)
        self.paths = list_runs(self.runs_dir)
        for path in self.paths:
            table.add_row(" ", fmt.text(path.name), Text("…", style="grey50"), "", "", "", "", "", "", "",
                          key=str(path))
        if not self.paths:
            self.query_one("#picker-title", Static).update(fmt.text(f"{self.runs_dir}: no runs found"))
        table.focus()
        self.summarize_all(list(self.paths))

    @work(thread=True, exclusive=True, group="picker")
    def summarize_all(self, paths: list[Path]) -> None:
        for path in paths:
            try:
                summary = summarize(path, self.clock())
            except Exception as exc:  # one broken run must not stop the picker
                summary = RunSummary(path, path.name, status="error", error=f"{type(exc).__name__}: {exc}")
            self.app.call_from_thread(self._fill, path, summary)

    def _fill(self, path: Path, summary: RunSummary) -> None:
        self.summaries[path] = summary
        if not self._shown(path):
            self._refilter()
            return
        table = self.query_one(DataTable)
        for name, cell in zip(COLUMNS, summary_row(summary)):
            table.update_cell(str(path), name, cell, update_width=True)

    def _shown(self, path: Path) -> bool:
        """Whether a run passes the filter (a run not summarised yet passes on its name alone)."""
        text, status, tag = parse_filter(self.filter_text)
        summary = self.summaries.get(path)
        if summary is None:
            return not (status or tag) and (not text or text.lower() in path.name.lower())
        return matches(summary, text, status, tag)

    def _refilter(self) -> None:
        """Rebuild the table with the runs that pass the filter, in the same order."""
        table = self.query_one(DataTable)
        table.clear()
        shown = [p for p in self.paths if self._shown(p)]
        for path in shown:
            summary = self.summaries.get(path)
            cells = summary_row(summary) if summary else (fmt.text(path.name), Text("…", style="grey50"),
                                                          *[""] * (len(COLUMNS) - 2))
            mark = Text("●", style="bold cyan") if path in self.marked else " "
            table.add_row(mark, *cells, key=str(path))
        title = f"runs in {self.runs_dir} — Enter opens a run"
        if self.filter_text:
            title += f" — filter {self.filter_text!r}: {len(shown)} of {len(self.paths)}"
        self.query_one("#picker-title", Static).update(fmt.text(title))

    def action_ask(self, what: str) -> None:
        """Open the input box for the filter or for the highlighted run's tags."""
        box = self.query_one("#picker-input", Input)
        if what == "tags":
            path = self._highlighted()
            if path is None:
                return
            summary = self.summaries.get(path)
            box.value = ", ".join(summary.tags) if summary else ""
            box.placeholder = f"tags of {path.name}, comma separated (empty: none)"
        else:
            box.value, box.placeholder = self.filter_text, "text, status:NAME, tag:NAME"
        self.asking = what
        box.remove_class("hidden")
        box.focus()

    def action_close_input(self) -> None:
        box = self.query_one("#picker-input", Input)
        box.add_class("hidden")
        self.asking = ""
        self.query_one(DataTable).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.asking == "filter":
            self.filter_text = event.value.strip()
            self._refilter()
        elif self.asking == "tags":
            path = self._highlighted()
            tags = parse_tags(event.value)
            try:
                if path is not None:
                    clean = write_tags(path, tags)
                    summary = self.summaries.get(path)
                    if summary is not None:
                        self.summaries[path] = dataclasses.replace(summary, tags=tuple(clean))
                        self._fill(path, self.summaries[path])
            except (TagError, OSError) as exc:
                self.notify(fmt.plain(str(exc)), severity="error", timeout=6)
                return
        self.action_close_input()

    def action_cursor(self, direction: str) -> None:
        table = self.query_one(DataTable)
        table.action_cursor_down() if direction == "down" else table.action_cursor_up()

    def _highlighted(self) -> Path | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return Path(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))

    def action_mark(self) -> None:
        """Mark the highlighted run for comparing (or unmark it)."""
        path = self._highlighted()
        if path is None:
            return
        if path in self.marked:
            self.marked.remove(path)
        else:
            self.marked.append(path)
        self.query_one(DataTable).update_cell(str(path), "mark", Text("●", style="bold cyan") if path in self.marked else " ")

    def action_compare(self) -> None:
        if len(self.marked) < 2:
            self.notify("mark two or more runs with m, then press c to compare them", timeout=4)
            return
        self.app.push_screen(CompareScreen(self.marked))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(Path(str(event.row_key.value)))
