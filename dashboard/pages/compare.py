"""The compare page: any metric of several runs overlaid, their outcomes, and how their
configurations differ.

The metric picker lists every metric any chosen run has (``telemetry_schema.series.metrics``),
narrowed by a regex filter; the curves come from the shared plot series on the chosen x axis
(epoch, step, wall time or compute: cumulative FLOPs), smoothed and on a log scale at will. The
configuration diff is ``telemetry_schema.config.diff`` of the runs' ``run_started`` configs. By
default the newest finished runs are chosen (not a run that crashed after one epoch). The page's
controls are kept across reloads (Dash persistence).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

from dash import Input, Output, State, dash_table, dcc, html, no_update

from telemetry_schema.config import diff
from telemetry_schema.runs import RunSummary
from telemetry_schema.series import SeriesError, metrics, select
from telemetry_schema.state import RunState

from dashboard import inputs
from dashboard.data import RunStore
from dashboard.figures import X_AXES, ChartOptions
from dashboard.metric_figures import compare_metric_figure
from dashboard.pages.run import chart_controls
from dashboard.tables import outcome_rows

DEFAULT_RUNS = 3
"""Runs chosen when the page opens."""
DEFAULT_METRIC = "val_acc"
FINISHED = ("completed",)
"""Statuses of the runs chosen by default: runs that ran to their end."""


def match(path: str):
    return () if path == "/compare" else None


def default_runs(rows: list[RunSummary], limit: int = DEFAULT_RUNS) -> list[str]:
    """The newest finished runs (by start time); the newest readable ones when none finished."""
    def newest(pool):
        return [r.run_id for r in sorted(pool, key=lambda r: r.started or 0.0, reverse=True)][:limit]
    return newest([r for r in rows if r.status in FINISHED]) or newest([r for r in rows if r.status != "error"])


def layout(store: RunStore, search: str = ""):
    chosen = default_runs(store.summaries())
    # every metric of the runs chosen, from the first render: a kept (persisted) pick is then one
    # of the dropdown's options before its callback has answered
    with chosen_states(store, chosen) as states:
        names, _ = metric_choices(states, "")
    return html.Div([
        html.H2("Compare runs"),
        html.Div([dcc.Dropdown(id="compare-runs", options=store.run_ids(), value=chosen,
                               multi=True, placeholder="runs", className="compare-runs")], className="controls"),
        html.Div([dcc.Input(id="compare-filter", type="text", debounce=True, persistence=True,
                            placeholder="filter metrics (regex)", className="metric-filter"),
                  dcc.Dropdown(id="compare-metric", value=DEFAULT_METRIC, clearable=False,
                               options=names if DEFAULT_METRIC in names else [DEFAULT_METRIC, *names],
                               persistence=True, className="metric-pick"),
                  html.Div("", id="compare-filter-error", className="query-error")], className="controls"),
        html.Div(chart_controls("compare-"), className="controls"),
        dcc.Graph(id="g-compare"),
        dash_table.DataTable(id="compare-table", sort_action="native", style_as_list_view=True,
                             style_cell={"textAlign": "left", "padding": "4px 8px"}),
        html.H3("Configuration differences"),
        html.P("", id="compare-config-note", className="muted"),
        dash_table.DataTable(id="compare-config", sort_action="native", filter_action="native",
                             style_as_list_view=True, page_size=30,
                             style_cell={"textAlign": "left", "padding": "3px 6px", "fontFamily": "monospace",
                                         "fontSize": "13px", "whiteSpace": "pre-wrap"}),
    ], className="card")


@contextmanager
def chosen_states(store: RunStore, run_ids: list[str]):
    """The chosen runs' live states by run id (ids that are gone or whose log is broken skipped),
    each run's lock held meanwhile (taken in a fixed order)."""
    entries = []
    for run_id in sorted(set(run_ids or []), key=(run_ids or []).index):
        try:
            entries.append(store.entry(run_id))
        except LookupError:
            continue
    with ExitStack() as stack:
        for entry in sorted(entries, key=lambda e: e.run_id):
            entry.refresh()
            stack.enter_context(entry.lock)
        yield {e.run_id: e.state for e in entries if e.failure() is None}


def metric_choices(states: dict[str, RunState], pattern: str) -> tuple[list[str], str]:
    """(every metric any of the runs has, narrowed by the regex ``pattern``; the filter's error or '')."""
    names = list(dict.fromkeys(n for st in states.values() for n in metrics(st)))
    try:
        return select(names, pattern), ""
    except SeriesError as exc:
        return [], str(exc)


def config_diff(states: dict[str, RunState]) -> tuple[list[dict], list[dict], str]:
    """(columns, rows, note) of the keys whose values differ between the runs' configurations."""
    run_ids = list(states)
    rows = diff([st.config or {} for st in states.values()])
    columns = [{"id": "key", "name": "key"}] + [{"id": f"run{i}", "name": r} for i, r in enumerate(run_ids)]
    data = [{"key": row.key, **{f"run{i}": v for i, v in enumerate(row.values)}} for row in rows]
    if len(run_ids) < 2:
        note = "Choose two or more runs to compare their configurations."
    else:
        note = f"{len(rows)} keys differ" if rows else "The configurations are the same."
    return columns, data, note


def compare_view(store: RunStore, run_ids: list[str], metric: str, opts: ChartOptions | None = None):
    """(overlay figure, outcome rows) of the chosen runs."""
    opts = opts or ChartOptions(max_points=store.config.max_points, uirevision="compare")
    with chosen_states(store, run_ids) as states:
        return compare_metric_figure(states, metric, opts), outcome_rows(states)


def register(app, store: RunStore) -> None:
    @app.callback(Output("compare-runs", "options"), Input("tick", "n_intervals"))
    def refresh_options(_n):
        return store.run_ids()

    @app.callback(Output("compare-metric", "options"), Output("compare-filter-error", "children"),
                  Output("compare-config", "columns"), Output("compare-config", "data"),
                  Output("compare-config-note", "children"),
                  Input("compare-runs", "value"), Input("compare-filter", "value"), Input("tick", "n_intervals"),
                  State("compare-metric", "options"), State("compare-metric", "value"))
    def render_choices(run_ids, pattern, _n, shown, metric):
        with chosen_states(store, inputs.names(run_ids) or []) as states:
            names, error = metric_choices(states, inputs.search(pattern))
            columns, rows, note = config_diff(states)
        picked = inputs.search(metric)
        names += [picked] if picked and picked not in names else []  # the pick stays choosable
        return (no_update if names == shown else names), error, columns, rows, note

    @app.callback(Output("g-compare", "figure"), Output("compare-table", "data"),
                  Input("compare-runs", "value"), Input("compare-metric", "value"), Input("compare-xaxis", "value"),
                  Input("compare-smoothing", "value"), Input("compare-logy", "value"), Input("tick", "n_intervals"),
                  State("theme", "data"))
    def render_compare(run_ids, metric, xaxis, smoothing, logy, _n, theme):
        opts = ChartOptions(xaxis=inputs.choice(xaxis, X_AXES, "epoch"), smoothing=inputs.smoothing(smoothing),
                            max_points=store.config.max_points, uirevision="compare",
                            log_y=inputs.flag(logy, "log"), theme=inputs.theme(theme))
        return compare_view(store, inputs.names(run_ids) or [], inputs.search(metric) or DEFAULT_METRIC, opts)
