"""Any scalar: a picker over every metric a run has (filtered by a regular expression) and a
chart of the chosen one, with the app's x axis, smoothing and y scale.

The names and the filter are telemetry_schema.series' (``metrics``, ``select``), the curves
its ``curves``: the picker and the chart only lay them out.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from telemetry_schema import series
from telemetry_schema.fold import RunState
from telemetry_schema.series import SeriesError, SeriesOptions
from tui import fmt
from tui.widgets.metrics import X_LABELS, metric_spec
from tui.widgets.plot import AsyncPlot


class MetricPicker(Vertical):
    """A regex filter line over metric names and the list of those that match; the highlighted
    name is ``chosen``. Keys: / filter (Enter: back to the list)."""

    BINDINGS = [Binding("slash", "filter", "Filter metrics")]

    class Chosen(Message):
        """The highlighted metric changed."""

        def __init__(self, name: str | None) -> None:
            super().__init__()
            self.name = name

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.names: list[str] = []
        self.pattern = ""
        self.problem = ""
        self.shown: list[str] = []
        self.chosen: str | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="regex over names, e.g. reward/.* (Enter: done)", classes="metric-filter")
        yield Static(classes="metric-count")
        yield OptionList(classes="metric-list")

    def set_names(self, names: list[str]) -> None:
        """The run's metric names (the list is refilled only when they change)."""
        if names != self.names:
            self.names = list(names)
            self._refill()

    def _refill(self) -> None:
        try:
            shown = series.select(self.names, self.pattern)
            self.problem = ""
        except SeriesError as exc:
            shown, self.problem = [], str(exc)
        count = Text(f"{len(shown)} of {len(self.names)} metrics", style="bold")
        if self.problem:
            count.append(f"  {fmt.plain(self.problem)}", style="bold red")
        self.query_one(".metric-count", Static).update(count)
        if shown == self.shown:
            return
        self.shown = shown
        options = self.query_one(".metric-list", OptionList)
        options.clear_options()
        options.add_options([Option(fmt.text(name), id=name) for name in shown])  # names as text, never markup
        if shown:
            options.highlighted = shown.index(self.chosen) if self.chosen in shown else 0
        self._choose(shown[options.highlighted] if shown and options.highlighted is not None else None)

    def _choose(self, name: str | None) -> None:
        if name != self.chosen:
            self.chosen = name
            self.post_message(self.Chosen(name))

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self._choose(event.option.id)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.pattern = event.value.strip()
        self._refill()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(".metric-list", OptionList).focus()

    def action_filter(self) -> None:
        self.query_one(".metric-filter", Input).focus()

    def focus_list(self) -> None:
        self.query_one(".metric-list", OptionList).focus()


def options_line(options: SeriesOptions) -> Text:
    """The chart options and their keys, for the line above a chart."""
    text = Text()
    for label, value, key in (("x", X_LABELS[options.x], "a"), ("smoothing", f"{options.smoothing:g}", "w"),
                              ("log y", "on" if options.log_y else "off", "y")):
        text.append(f"{label}: ")
        text.append(value, style="bold")
        text.append(f" [{key}]  ", style="grey62")
    text.append("filter [/]", style="grey62")
    return text


class ScalarsPanel(Horizontal):
    """The picker beside a chart of the highlighted metric."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._state: RunState | None = None
        self._options = SeriesOptions()

    def compose(self) -> ComposeResult:
        yield MetricPicker(classes="metric-picker")
        with Vertical(classes="metric-chart"):
            yield Static(classes="chart-options")
            yield AsyncPlot(classes="metric-plot")

    def show(self, state: RunState, options: SeriesOptions) -> None:
        self._state, self._options = state, options
        picker = self.query_one(MetricPicker)
        picker.set_names(series.metrics(state))
        self.query_one(".chart-options", Static).update(options_line(options))
        self._draw()

    def _draw(self) -> None:
        name = self.query_one(MetricPicker).chosen
        if self._state is None or name is None:
            return
        self.query_one(AsyncPlot).draw(metric_spec([("", self._state)], name, self._options))

    def on_metric_picker_chosen(self, event: MetricPicker.Chosen) -> None:
        event.stop()
        self._draw()

    def focus_list(self) -> None:
        self.query_one(MetricPicker).focus_list()
