"""The run page: live charts, lifecycle, gates, governor, decisions, events, and the replay bar."""

from __future__ import annotations

import functools

from dash import Input, Output, State, callback_context, dash_table, dcc, html, no_update
from dash.exceptions import PreventUpdate

from telemetry_schema.fold import RunState

from dashboard.data import RunNotFound, RunStore
from dashboard.figures import X_AXES
from dashboard.live import next_cursor
from dashboard.run_view import CHARTS, RunRequest, chart_outputs, cursor_info, header, table_outputs
from dashboard.tables import DECISION_COLUMNS, EVENT_COLUMNS

SPEEDS = (1, 4, 16, 64)


def match(path: str):
    return (path[len("/run/"):],) if path.startswith("/run/") else None


def layout(store: RunStore, raw_id: str):
    try:
        run_id = store.resolve(raw_id)
    except RunNotFound as exc:
        return html.Div([html.H3("Run refused"), html.P(str(exc))], className="card error-card", id="run-refused")
    entry = store.entry(run_id)
    entry.refresh(force=True)
    if entry.error:
        return header(store, run_id, None)
    return html.Div([
        dcc.Store(id="run-id", data=run_id), dcc.Store(id="shipped", data={}),
        html.Div(header(store, run_id, None), id="run-header"),
        controls(), replay_bar(entry.length),
        html.Div([dcc.Graph(id=gid, config={"displaylogo": False}, className="chart", style=chart_style(gid))
                  for gid in CHARTS], className="grid"),
        html.Div([html.H3("Controller decisions"),
                  table("decisions-table", DECISION_COLUMNS, page_size=10)], className="card"),
        html.Div([html.H3("Events"), event_filters(entry.state), table("events-table", EVENT_COLUMNS)],
                 className="card"),
    ])


def chart_style(gid: str) -> dict:
    return {"gridColumn": "1 / -1"} if gid in ("g-swimlane", "g-loss") else {}


def controls() -> html.Div:
    return html.Div([
        html.Label("x-axis"), dcc.RadioItems(id="xaxis", options=[{"label": v.split(" ")[0], "value": k}
                                                                  for k, v in X_AXES.items()],
                                             value="epoch", inline=True),
        html.Label("EMA smoothing"),
        html.Div(dcc.Slider(id="smoothing", min=0, max=0.99, step=0.01, value=0,
                            marks={0: "0", 0.5: "0.5", 0.9: "0.9", 0.99: ".99"}), className="smoothing"),
    ], className="controls card")


def replay_bar(total: int) -> html.Div:
    return html.Div([
        dcc.RadioItems(id="mode", options=[{"label": "Live", "value": "live"}, {"label": "Replay", "value": "replay"}],
                       value="live", inline=True),
        html.Button("Play", id="play", n_clicks=0),
        dcc.Dropdown(id="speed", options=[{"label": f"{s}x", "value": s} for s in SPEEDS], value=1,
                     clearable=False, className="speed"),
        html.Div(dcc.Slider(id="cursor", min=0, max=max(total, 1), step=1, value=total, marks=None,
                            updatemode="mouseup", tooltip={"always_visible": False}), className="scrubber"),
        html.Span(id="cursor-info", className="muted"),
        dcc.Interval(id="replay-timer", interval=500, disabled=True),
    ], className="replay card")


def event_filters(state: RunState) -> html.Div:
    kinds = sorted(state.kind_counts)
    default = [k for k in kinds if k not in ("batch_metrics", "heartbeat", "gradient_stats", "alpha")]
    return html.Div([dcc.Dropdown(id="event-kinds", options=kinds, value=default, multi=True,
                                  placeholder="all kinds"),
                     dcc.Input(id="event-search", type="text", placeholder="search slot, seed, payload…",
                               debounce=True)], className="controls")


def table(tid: str, columns, page_size: int = 15) -> dash_table.DataTable:
    return dash_table.DataTable(
        id=tid, columns=[{"id": c, "name": c} for c in columns], data=[], page_size=page_size,
        sort_action="native", filter_action="native", style_as_list_view=True,
        style_cell={"textAlign": "left", "padding": "3px 6px", "maxWidth": "420px", "overflow": "hidden",
                    "textOverflow": "ellipsis", "fontSize": "13px"}, tooltip_duration=None)


def _int(value) -> int | None:
    """A cursor as sent by the browser (anything not a number counts as absent)."""
    return int(value) if isinstance(value, (int, float)) and value == value else None


def _request(run_id, mode, cursor, xaxis="epoch", smoothing=0.0) -> RunRequest:
    smoothing = float(smoothing) if isinstance(smoothing, (int, float)) else 0.0
    return RunRequest(str(run_id), _int(cursor) if mode == "replay" else None, xaxis or "epoch", smoothing)


def refusing(callback):
    """Run ids come back from the browser: one that does not resolve updates nothing (HTTP 204)."""
    @functools.wraps(callback)
    def wrapper(*args):
        try:
            return callback(*args)
        except RunNotFound:
            raise PreventUpdate from None
    return wrapper


def register(app, store: RunStore) -> None:
    cfg = store.config

    @app.callback(Output("cursor", "max"), Output("cursor", "value"), Output("cursor-info", "children"),
                  Input("tick", "n_intervals"), Input("replay-timer", "n_intervals"), Input("mode", "value"),
                  State("cursor", "value"), State("speed", "value"), State("run-id", "data"))
    @refusing
    def move_cursor(_tick, _play, mode, value, speed, run_id):
        entry = store.entry(str(run_id))
        entry.refresh()
        total = entry.length
        triggers = {prop.split(".")[0] for prop in callback_context.triggered_prop_ids}
        new = next_cursor(triggers, mode, _int(value), total, _int(speed) or 1, cfg.replay_ticks)
        return max(total, 1), (no_update if new == value else new), cursor_info(entry, new if mode == "replay" else None)

    @app.callback(Output("replay-timer", "disabled"), Output("play", "children"), Output("mode", "value"),
                  Input("play", "n_clicks"), State("replay-timer", "disabled"), State("mode", "value"),
                  prevent_initial_call=True)
    def toggle_play(_n, disabled, mode):
        if not disabled:
            return True, "Play", no_update
        return False, "Pause", (no_update if mode == "replay" else "replay")

    @app.callback(Output("run-header", "children"), Input("tick", "n_intervals"), Input("cursor", "value"),
                  State("mode", "value"), State("run-id", "data"), prevent_initial_call=True)
    @refusing
    def refresh_header(_n, cursor, mode, run_id):
        return header(store, str(run_id), _int(cursor) if mode == "replay" else None)

    @app.callback([Output(gid, "figure") for gid in CHARTS] + [Output("shipped", "data"),
                  Output("g-ppo", "style"), Output("g-reward", "style")],
                  Input("cursor", "value"), Input("mode", "value"), Input("xaxis", "value"),
                  Input("smoothing", "value"), State("shipped", "data"), State("run-id", "data"))
    @refusing
    def render_charts(cursor, mode, xaxis, smoothing, shipped, run_id):
        figs, shipped, optional = chart_outputs(store, _request(run_id, mode, cursor, xaxis, smoothing), shipped)
        return figs + [shipped] + optional

    @app.callback(Output("decisions-table", "data"), Output("events-table", "data"),
                  Input("cursor", "value"), Input("mode", "value"), Input("event-kinds", "value"),
                  Input("event-search", "value"), State("run-id", "data"))
    @refusing
    def render_tables(cursor, mode, kinds, search, run_id):
        return table_outputs(store, _request(run_id, mode, cursor), kinds, search or "")
