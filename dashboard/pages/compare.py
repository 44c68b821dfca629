"""The compare page: several runs' epoch curves overlaid, and a table of their outcomes."""

from __future__ import annotations

from contextlib import ExitStack

from dash import Input, Output, dash_table, dcc, html

from dashboard.data import RunStore
from dashboard.figures import COMPARE_METRICS, ChartOptions, compare_figure
from dashboard.tables import outcome_rows


def match(path: str):
    return () if path == "/compare" else None


def layout(store: RunStore, search: str = ""):
    readable = [s.path.name for s in store.summaries() if s.status != "error"]
    return html.Div([
        html.H2("Compare runs"),
        html.Div([dcc.Dropdown(id="compare-runs", options=store.run_ids(), value=readable[:3], multi=True,
                               placeholder="runs"),
                  dcc.Dropdown(id="compare-metric", value="val_acc", clearable=False,
                               options=[{"label": v, "value": k} for k, v in COMPARE_METRICS.items()])],
                 className="controls"),
        dcc.Graph(id="g-compare"),
        dash_table.DataTable(id="compare-table", sort_action="native", style_as_list_view=True,
                             style_cell={"textAlign": "left", "padding": "4px 8px"}),
    ], className="card")


def compare_view(store: RunStore, run_ids: list[str], metric: str):
    """(overlay figure, outcome rows) of the chosen runs, skipping ids that are gone or whose log
    is broken. Every chosen run's lock is held while its state is read (in a fixed order)."""
    entries = []
    for run_id in sorted(set(run_ids or []), key=(run_ids or []).index):
        try:
            entries.append(store.entry(run_id))
        except LookupError:
            continue
    opts = ChartOptions(max_points=store.config.max_points, uirevision="compare")
    with ExitStack() as stack:
        for entry in sorted(entries, key=lambda e: e.run_id):
            entry.refresh()
            stack.enter_context(entry.lock)
        states = {e.run_id: e.state for e in entries if e.failure() is None}
        return compare_figure(states, metric, opts), outcome_rows(states)


def register(app, store: RunStore) -> None:
    @app.callback(Output("compare-runs", "options"), Input("tick", "n_intervals"))
    def refresh_options(_n):
        return store.run_ids()

    @app.callback(Output("g-compare", "figure"), Output("compare-table", "data"),
                  Input("compare-runs", "value"), Input("compare-metric", "value"), Input("tick", "n_intervals"))
    def render_compare(run_ids, metric, _n):
        return compare_view(store, run_ids, metric)
