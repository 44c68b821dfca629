"""The help screen: every key of the app, grouped."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("general", (
        ("?", "this help"), ("q", "quit (close a dialog)"), ("Esc", "close a dialog"),
        ("1-9", "tabs: slots, metrics, gates, governor, decisions, events, policy, scalars, config"),
        ("h / l, ← / →", "previous / next tab"), ("j / k, ↓ / ↑", "move in a table or list"),
        ("Tab", "move focus"), ("Enter", "open the seed of a slot / the fields of an event"),
    )),
    ("rank / environment (runs with several)", (
        ("n / N", "next / previous rank of a distributed run"),
        ("e / E", "next / previous environment of a PPO run (all, 0, 1, …)"),
        ("", "the header says which one is shown; ✗ marks a rank that diverged from rank 0"),
        ("", "PPO updates and run status are run-wide; the event log (6) keeps to the chosen rank and env"),
    )),
    ("replay", (
        ("r", "replay on / off (--replay starts in it)"), ("space", "play / pause"),
        ("+ / -", "faster / slower"), (". / ,", "step one event forward / back"),
        ("] / [", "next / previous epoch"), ("g / G", "jump to the first / last event"),
        ("p / P", "next / previous governor panic"), ("x / X", "next / previous gate failure"),
        ("s / S", "next / previous stage change"),
    )),
    ("charts (every time chart: metrics, scalars, compare, seed detail)", (
        ("a", "x axis: epoch, step, wall seconds, cumulative FLOPs (when the run logs them)"),
        ("w", "smoothing: exponential moving average 0, 0.6, 0.9, 0.99"), ("y", "log y axis on / off"),
        ("/", "scalars (8) and compare: filter metric names by a regular expression, e.g. reward/.*"),
        ("↑ / ↓", "scalars (8) and compare: pick the metric to plot"),
    )),
    ("run picker", (
        ("m", "mark / unmark a run"), ("c", "compare the marked runs: any metric overlaid, config differences"),
        ("Esc", "back from compare to the picker; closes the filter or tag box"),
        ("/", "filter the runs: text in the id or task, status:NAME, tag:NAME (Enter applies)"),
        ("t", "set the highlighted run's tags, comma separated (written to its tags.json)"),
    )),
    ("event log", (
        ("/", "text search, as you type (Enter closes the box)"), ("t", "cycle kind filter"), ("o", "cycle slot filter"),
        ("f", "follow new events on / off"), ("Esc", "clear filters"),
        ("PgUp / PgDn, ctrl+b / ctrl+f", "page up / down"), ("Home / End", "first / last event"),
    )),
)


def help_table() -> Table:
    table = Table(title="esper-tui keys", expand=True, show_header=False)
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("does")
    for section, keys in KEYS:
        table.add_row(f"[bold magenta]{section}[/]", "")
        for key, does in keys:
            table.add_row(key, does)
    return table


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static(help_table(), id="help-table")
