"""The compare view: two or more runs overlaid on any metric, and how their configurations differ.

Opened from the run picker (m marks runs, c compares them). Each run is read and folded in a
worker; the metric names are every name any of the runs has (telemetry_schema.series), the
curves each run's own, and the differences telemetry_schema.config's ``diff``.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Static

from telemetry_schema import config, series
from telemetry_schema.fold import RunState, fold_tables
from telemetry_schema.rundir import read_run
from tui import fmt
from tui.loader import one_line
from tui.widgets.footer import KeyFooter
from tui.widgets.metrics import metric_spec
from tui.widgets.plot import AsyncPlot
from tui.widgets.scalars import MetricPicker, options_line


def all_metrics(states: list[tuple[str, RunState]]) -> list[str]:
    """Every metric name of any of the runs, in the order the runs list them."""
    return list(dict.fromkeys(name for _, state in states for name in series.metrics(state)))


class CompareScreen(Screen):
    """Esc goes back to the run picker."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self.paths = list(paths)
        self.states: list[tuple[str, RunState]] = []
        self.diff: list[config.DiffRow] = []
        self.error = ""

    def compose(self) -> ComposeResult:
        yield Static(fmt.text(f"reading {len(self.paths)} runs …"), id="compare-title")
        with Horizontal(id="compare-main"):
            yield MetricPicker(classes="metric-picker")
            with Vertical(classes="metric-chart"):
                yield Static(classes="chart-options")
                yield AsyncPlot(classes="metric-plot")
        yield DataTable(id="compare-diff", zebra_stripes=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.load(self.paths)

    @work(thread=True, exclusive=True, group="compare")
    def load(self, paths: list[Path]) -> None:
        try:
            states = [(path.name, fold_tables(read_run(path))) for path in paths]
        except Exception as exc:  # a run that cannot be read is said, never a traceback
            self.app.call_from_thread(self._failed, one_line(exc, paths[0]))
            return
        self.app.call_from_thread(self._loaded, states)

    def _failed(self, text: str) -> None:
        self.error = text
        self.query_one("#compare-title", Static).update(fmt.text(text, style="bold red"))

    def _loaded(self, states: list[tuple[str, RunState]]) -> None:
        self.states = states
        self.diff = config.diff([state.config for _, state in states])
        title = Text(f"comparing {len(states)} runs: ", style="bold")
        title.append(fmt.plain(", ".join(name for name, _ in states)))
        title.append(f"  — {len(self.diff)} config keys differ", style="grey62")
        self.query_one("#compare-title", Static).update(title)
        self._fill_diff()
        self.query_one(MetricPicker).set_names(all_metrics(states))
        self.query_one(MetricPicker).focus_list()
        self.redraw_charts()

    def _fill_diff(self) -> None:
        table = self.query_one("#compare-diff", DataTable)
        table.clear(columns=True)
        table.add_column("config key", key="key")
        for i, (name, _) in enumerate(self.states):
            table.add_column(fmt.text(name), key=f"run{i}")
        for row in self.diff:
            table.add_row(fmt.text(row.key), *(fmt.text(v) for v in row.values))
        if not self.diff:
            table.add_row(fmt.text("the runs' configurations are the same", style="grey50"),
                          *([""] * len(self.states)))

    def redraw_charts(self) -> None:
        """Draw the chosen metric of every run with the app's chart options (keys a, w, y)."""
        options = self.app.chart
        self.query_one(".chart-options", Static).update(options_line(options))
        name = self.query_one(MetricPicker).chosen
        if name is None or not self.states:
            return
        having = [(run, state) for run, state in self.states if name in series.metrics(state)]
        self.query_one(AsyncPlot).draw(metric_spec(having, name, options, by_run=True))

    def on_metric_picker_chosen(self, event: MetricPicker.Chosen) -> None:
        event.stop()
        self.redraw_charts()
