"""The runs page: every run of the log directory with its status and outcome; sortable.

Its rows are ``telemetry_schema.runs.RunSummary`` (``summary_of`` each run's live fold: the row
``summarize`` makes, as esper-tui's picker shows it); statuses come from ``run_status``."""

from __future__ import annotations

from dash import Input, Output, dash_table, html

from dashboard.data import RunStore
from dashboard.tables import CORRUPT, RUN_COLUMNS, run_rows


def match(path: str):
    return () if path in ("/", "/runs") else None


def layout(store: RunStore, search: str = ""):
    columns = [{"id": cid, "name": name, "presentation": "markdown"} if cid == "run" else {"id": cid, "name": name}
               for cid, name in RUN_COLUMNS]
    rows = run_rows(store.summaries())
    table = dash_table.DataTable(
        id="runs-table", columns=columns, data=rows, tooltip_data=tooltips(rows), sort_action="native",
        sort_by=[{"column_id": "started", "direction": "desc"}], markdown_options={"link_target": "_self"},
        style_cell={"textAlign": "left", "padding": "4px 8px"}, style_as_list_view=True, tooltip_duration=None,
        style_data_conditional=[{"if": {"filter_query": f'{{status}} = "{s}"', "column_id": "status"},
                                 "color": c, "fontWeight": "bold"} for s, c in STATUS_COLORS.items()]
        + [{"if": {"filter_query": f'{{status}} contains "{CORRUPT.strip(" ·")}"', "column_id": "status"},
            "color": STATUS_COLORS["error"], "fontWeight": "bold"}])
    return html.Div([html.H2("Runs"), html.P(f"Log directory: {store.logdir}", className="muted"), table],
                    className="card")


STATUS_COLORS = {"waiting": "#7f7f7f", "running": "#2ca02c", "stalled": "#ff7f0e", "crashed": "#d62728",
                 "error": "#d62728", "completed": "#1f77b4", "failed": "#d62728", "interrupted": "#9467bd"}
"""A colour per ``telemetry_schema.status.STATUSES`` (and 'error': a log that cannot be read)."""


def tooltips(rows: list[dict]) -> list[dict]:
    """What a hover on a row's status says: the run's problem (unreadable, or corrupt streams)."""
    return [{"status": r["problem"]} if r["problem"] else {} for r in rows]


def register(app, store: RunStore) -> None:
    @app.callback(Output("runs-table", "data"), Output("runs-table", "tooltip_data"), Input("tick", "n_intervals"))
    def refresh_runs(_n):
        rows = run_rows(store.summaries())
        return rows, tooltips(rows)
