"""The runs page: every run of the log directory with its status and outcome; sortable."""

from __future__ import annotations

from dash import Input, Output, dash_table, html

from dashboard.data import RunStore
from dashboard.tables import RUN_COLUMNS, run_rows


def match(path: str):
    return () if path in ("/", "/runs") else None


def layout(store: RunStore, search: str = ""):
    columns = [{"id": cid, "name": name, "presentation": "markdown"} if cid == "run" else {"id": cid, "name": name}
               for cid, name in RUN_COLUMNS]
    table = dash_table.DataTable(
        id="runs-table", columns=columns, data=run_rows(store.summaries()), sort_action="native",
        sort_by=[{"column_id": "started", "direction": "desc"}], markdown_options={"link_target": "_self"},
        style_cell={"textAlign": "left", "padding": "4px 8px"}, style_as_list_view=True,
        style_data_conditional=[{"if": {"filter_query": f'{{status}} = "{s}"', "column_id": "status"},
                                 "color": c, "fontWeight": "bold"} for s, c in STATUS_COLORS.items()])
    return html.Div([html.H2("Runs"), html.P(f"Log directory: {store.logdir}", className="muted"), table],
                    className="card")


STATUS_COLORS = {"running": "#2ca02c", "stalled": "#ff7f0e", "crashed": "#d62728", "error": "#d62728",
                 "finished": "#1f77b4"}


def register(app, store: RunStore) -> None:
    @app.callback(Output("runs-table", "data"), Input("tick", "n_intervals"))
    def refresh_runs(_n):
        return run_rows(store.summaries())
