"""The run page: live charts, lifecycle, gates, governor, system use, any metric through the
metric picker, decisions, events, the run's configuration, and the replay bar.

A run that has ended opens on its final state (replay mode, the cursor at the end); one that
goes on opens live. The chart options (x axis, smoothing, log scale) and the picked metrics are
kept by the browser (Dash persistence): a reload shows the same view.

Distributed and PPO runs get a rank and an env dropdown; the choice is kept in the URL query
(``/run/<id>?rank=1&env=2``), so a view can be shared, and every value the browser sends back
is checked against the run (a bad one updates nothing).
"""

from __future__ import annotations

import functools

from dash import Input, Output, State, callback_context, dash_table, dcc, html, no_update
from dash.exceptions import PreventUpdate

from telemetry_schema.runmodel import Scope

from dashboard import inputs
from dashboard.data import RunNotFound, RunStore
from dashboard.figures import X_AXES
from dashboard.live import next_cursor
from dashboard.run_view import (CHARTS, FIRST_CHARTS, LATER_CHARTS, SEEK_NAMES, SEEKS, RunRequest, chart_outputs,
                                config_rows, cursor_info, env_value, header, metric_chart, metric_names, opens_final,
                                seek_id, seek_target, selector_props, selector_update, sync_selection, table_outputs)
from dashboard.selection import BadSelection, Choices
from dashboard.tables import DECISION_COLUMNS, EVENT_COLUMNS

SPEEDS = (1, 4, 16, 64)
MAX_PICKED = 12
"""Most metrics the metric chart overlays."""


def match(path: str):
    return (path[len("/run/"):],) if path.startswith("/run/") else None


def layout(store: RunStore, raw_id: str, search: str = ""):
    try:
        run_id = store.resolve(raw_id)
    except RunNotFound as exc:
        return html.Div([html.H3("Run refused"), html.P(str(exc))], className="card error-card", id="run-refused")
    entry = store.entry(run_id)
    entry.refresh(force=True)
    if entry.failure():
        return header(store, run_id, None)
    choices = entry.choices()
    scope = choices.from_query(search)  # a value the run lacks is dropped (the URL is then corrected)
    final = opens_final(entry)
    return html.Div([
        dcc.Store(id="run-id", data=run_id),
        dcc.Store(id="shipped", data={}), dcc.Store(id="shipped-later", data={}),  # one per chart group
        dcc.Store(id="live-total", data=entry.length),  # the log's length as last polled
        dcc.Location(id="run-url", refresh=False),  # the query only: no reload, no re-route
        html.Div(header(store, run_id, None, scope), id="run-header"),
        controls(choices, scope), replay_bar(entry.length, cursor_info(entry, None), final),
        html.Div([dcc.Graph(id=gid, config={"displaylogo": False}, className="chart", style=chart_style(gid))
                  for gid in CHARTS], className="grid"),
        metric_card(metric_names(store, RunRequest(run_id, scope=scope), "")[0]),
        html.Div([html.H3("Controller decisions"),
                  table("decisions-table", DECISION_COLUMNS, page_size=10)], className="card"),
        html.Div([html.H3(["Events ", html.Span("", id="events-count", className="count")]), event_filters(entry.log.kinds), table("events-table", EVENT_COLUMNS)],
                 className="card"),
        config_card(config_rows(store, run_id)),
    ])


def metric_card(names: list[str]) -> html.Div:
    """Any metric the run logged (its own scalars, system use, per-slot series...): a regex
    filter over the names, the picker (offering ``names`` from the first render, so a kept pick
    is one of its options before its callback answers), and their chart."""
    return html.Div([
        html.H3("Metrics"),
        html.Div([dcc.Input(id="metric-filter", type="text", debounce=True, className="metric-filter",
                            placeholder="filter names (regex, e.g. reward/.*)", persistence=True),
                  dcc.Dropdown(id="metric-pick", options=names, value=[], multi=True, placeholder="pick metrics",
                               className="metric-pick", persistence=True),
                  html.Div("", id="metric-filter-error", className="query-error")], className="controls"),
        dcc.Graph(id="g-metrics", config={"displaylogo": False}),
    ], className="card")


def config_card(rows: list[dict]) -> html.Div:
    """The run's whole configuration, one dotted key a row (filterable, as plain text)."""
    return html.Div([
        html.H3("Configuration"),
        html.P("No configuration logged yet." if not rows else f"{len(rows)} keys", id="config-note",
               className="muted"),
        dash_table.DataTable(id="config-table", columns=[{"id": "key", "name": "key"}, {"id": "value", "name": "value"}],
                             data=rows, page_size=25, filter_action="native", sort_action="native",
                             style_as_list_view=True,
                             style_cell={"textAlign": "left", "padding": "3px 6px", "fontSize": "13px",
                                         "whiteSpace": "pre-wrap", "fontFamily": "monospace"}),
    ], className="card", id="config-card")


def chart_style(gid: str) -> dict:
    return {"gridColumn": "1 / -1"} if gid in ("g-swimlane", "g-loss") else {}


def controls(choices: Choices, scope: Scope) -> html.Div:
    rank_options, rank_style, env_options, env_style = selector_props(choices)
    return html.Div([
        html.Div([html.Label("rank"), dcc.Dropdown(id="sel-rank", options=rank_options, value=scope.rank,
                                                   clearable=False, searchable=False, className="picker")],
                 id="rank-pick", className="pick", style=rank_style),
        html.Div([html.Label("env"), dcc.Dropdown(id="sel-env", options=env_options, value=env_value(scope),
                                                  clearable=False, searchable=False, className="picker")],
                 id="env-pick", className="pick", style=env_style),
        *chart_controls(),
    ], className="controls card")


def chart_controls(prefix: str = "") -> list:
    """The x axis, smoothing and log scale of every time chart, kept across reloads (Dash
    persistence). ``prefix`` names another page's copies (the compare page's)."""
    return [
        html.Label("x-axis"), dcc.RadioItems(id=f"{prefix}xaxis", options=[{"label": v.split(" ")[0], "value": k}
                                                                           for k, v in X_AXES.items()],
                                             value="epoch", inline=True, persistence=True),
        html.Label("EMA smoothing"),
        html.Div(dcc.Slider(id=f"{prefix}smoothing", min=0, max=0.99, step=0.01, value=0, persistence=True,
                            marks={0: "0", 0.5: "0.5", 0.9: "0.9", 0.99: ".99"}), className="smoothing"),
        dcc.Checklist(id=f"{prefix}logy", options=[{"label": "log scale", "value": "log"}], value=[], inline=True,
                      persistence=True),
    ]


def replay_bar(total: int, info: str, final: bool = False) -> html.Div:
    """Live or replay, the player, the scrubber, and the seek buttons. ``final``: the run has
    ended, so the bar starts in replay at the last event (the run's final state)."""
    return html.Div([
        dcc.RadioItems(id="mode", options=[{"label": "Live", "value": "live"}, {"label": "Replay", "value": "replay"}],
                       value="replay" if final else "live", inline=True),
        html.Button("Play", id="play", n_clicks=0),
        dcc.Dropdown(id="speed", options=[{"label": f"{s}x", "value": s} for s in SPEEDS], value=1,
                     clearable=False, className="speed"),
        html.Div(dcc.Slider(id="cursor", min=0, max=max(total, 1), step=1, value=total, marks=None,
                            updatemode="mouseup", tooltip={"always_visible": False}), className="scrubber"),
        html.Span(info, id="cursor-info", className="muted"),
        dcc.Interval(id="replay-timer", interval=500, disabled=True),
        dcc.Store(id="seek-to", data=None),
        html.Div([html.Button(("◀ " if d == "prev" else "") + SEEK_NAMES[t] + (" ▶" if d == "next" else ""),
                              id=seek_id(d, t), n_clicks=0, className="seek",
                              title=f"{'previous' if d == 'prev' else 'next'} {SEEK_NAMES[t]}")
                  for d, t in SEEKS] + [html.Span("", id="seek-note", className="muted")], className="seeks"),
    ], className="replay card")


QUERY_HELP = ("text, /regex/, field:value (contains), field=value, field>n (also <, >=, <=); "
              "every term must match, e.g. kind:gate passed:false")


def event_filters(kinds: list[str]) -> html.Div:
    """The kinds to list and the search box (``telemetry_schema.search``'s query language), with
    the line that says why a query cannot be run."""
    kinds = sorted(kinds)
    default = [k for k in kinds if k not in ("batch_metrics", "heartbeat", "gradient_stats", "alpha", "system")]
    return html.Div([dcc.Dropdown(id="event-kinds", options=kinds, value=default, multi=True,
                                  placeholder="all kinds"),
                     dcc.Input(id="event-search", type="text", debounce=True, className="event-search",
                               placeholder="search events (e.g. kind:gate passed:false)"),
                     html.Small(QUERY_HELP, className="muted"),
                     html.Div("", id="event-search-error", className="query-error")], className="controls")


def table(tid: str, columns, page_size: int = 15) -> dash_table.DataTable:
    return dash_table.DataTable(
        id=tid, columns=[{"id": c, "name": c} for c in columns], data=[], page_size=page_size,
        sort_action="native", filter_action="native", style_as_list_view=True,
        style_cell={"textAlign": "left", "padding": "3px 6px", "maxWidth": "420px", "overflow": "hidden",
                    "textOverflow": "ellipsis", "fontSize": "13px"}, tooltip_duration=None)


def _selection(store: RunStore, run_id, rank, env) -> Scope:
    """The dropdowns' values checked against the run (``BadSelection`` when it lacks them)."""
    return store.entry(str(run_id)).choices().parse(rank, env)


def _request(store: RunStore, run_id, mode, cursor, rank, env, xaxis="epoch", smoothing=0.0, logy=None,
             theme=None) -> RunRequest:
    """The view a callback's inputs ask for, every value checked (``dashboard.inputs``)."""
    return RunRequest(str(run_id), inputs.cursor(cursor) if mode == "replay" else None,
                      inputs.choice(xaxis, X_AXES, "epoch"), inputs.smoothing(smoothing),
                      _selection(store, run_id, rank, env), inputs.flag(logy, "log"), inputs.theme(theme))


def refusing(callback):
    """Run ids, ranks and envs come back from the browser: one that the log directory or the
    run does not have updates nothing (HTTP 204)."""
    @functools.wraps(callback)
    def wrapper(*args):
        try:
            return callback(*args)
        except (RunNotFound, BadSelection):
            raise PreventUpdate from None
    return wrapper


def _triggers() -> set[str]:
    """Every input that fired this call (Dash batches inputs that change together)."""
    return set(callback_context.triggered_prop_ids)


def register(app, store: RunStore) -> None:
    cfg = store.config

    # The poll tick never outputs the cursor: when calls of one callback overlap, the one requested
    # last wins in the browser (even with no_update), so a tick requested while "enter replay"
    # (cursor -> 0) was in flight put the cursor back. Ticks publish the log's length; the cursor
    # follows it when live.
    @app.callback(Output("cursor", "max"), Output("live-total", "data"), Input("tick", "n_intervals"),
                  State("mode", "value"), State("live-total", "data"), State("run-id", "data"))
    @refusing
    def poll_length(_tick, mode, shown, run_id):
        entry = store.entry(str(run_id))
        entry.refresh()
        total = entry.length
        return max(total, 1), (total if mode != "replay" and total != shown else no_update)

    @app.callback(Output("cursor", "max", allow_duplicate=True), Output("cursor", "value"),
                  Input("live-total", "data"), Input("replay-timer", "n_intervals"), Input("mode", "value"),
                  Input("seek-to", "data"), State("cursor", "value"), State("speed", "value"), State("run-id", "data"),
                  prevent_initial_call=True)
    @refusing
    def move_cursor(_total, _play, mode, seek, value, speed, run_id):
        entry = store.entry(str(run_id))
        entry.refresh()  # rate-limited: the length as of now, not as of the poll that fired this
        total = entry.length
        triggers = {prop.split(".")[0] for prop in _triggers()}
        sought = inputs.cursor(inputs.record(seek).get("cursor")) if "seek-to" in triggers else None
        new = (min(sought, total) if sought is not None else
               next_cursor(triggers, mode, inputs.cursor(value), total, inputs.choice(speed, SPEEDS, 1),
                           cfg.replay_ticks))
        return max(total, 1), (no_update if new == value else new)  # the new value never exceeds the max

    @app.callback(Output("replay-timer", "disabled"), Output("play", "children"), Output("mode", "value"),
                  Input("play", "n_clicks"), State("replay-timer", "disabled"), State("mode", "value"),
                  prevent_initial_call=True)
    def toggle_play(_n, disabled, mode):
        if not disabled:
            return True, "Play", no_update
        return False, "Pause", (no_update if mode == "replay" else "replay")

    @app.callback(Output("run-header", "children"), Output("cursor-info", "children"), Output("sel-rank", "options"),
                  Output("rank-pick", "style"), Output("sel-env", "options"), Output("env-pick", "style"),
                  Input("tick", "n_intervals"), Input("cursor", "value"), Input("sel-rank", "value"),
                  Input("sel-env", "value"), State("mode", "value"), State("run-id", "data"),
                  State("sel-rank", "options"), State("sel-env", "options"), prevent_initial_call=True)
    @refusing
    def refresh_header(_n, cursor, rank, env, mode, run_id, rank_options, env_options):
        req = _request(store, run_id, mode, cursor, rank, env)
        entry = store.entry(req.run_id)
        pickers = selector_update(entry.choices(), rank_options, env_options)
        return header(store, req.run_id, req.cursor, req.scope), cursor_info(entry, req.cursor, req.scope), *pickers

    @app.callback(Output("run-url", "search"), Output("sel-rank", "value"), Output("sel-env", "value"),
                  Input("sel-rank", "value"), Input("sel-env", "value"), Input("run-url", "search"),
                  State("run-id", "data"))
    @refusing
    def sync_url(rank, env, search, run_id):
        return sync_selection(store.entry(str(run_id)).choices(), rank, env, inputs.path(search, ""), _triggers())

    @app.callback(Output("seek-to", "data"), Output("mode", "value", allow_duplicate=True),
                  Output("seek-note", "children"),
                  [Input(seek_id(d, t), "n_clicks") for d, t in SEEKS],
                  State("cursor", "value"), State("mode", "value"), State("sel-rank", "value"), State("sel-env", "value"),
                  State("run-id", "data"), prevent_initial_call=True)
    @refusing
    def seek(*args):
        cursor, mode, rank, env, run_id = args[len(SEEKS):]
        fired = [t for t in _triggers() if t.startswith("seek-")]
        if not fired:
            raise PreventUpdate
        direction, target = next((d, t) for d, t in SEEKS if seek_id(d, t) == fired[0].split(".")[0])
        req = _request(store, run_id, mode, cursor, rank, env)
        new, note = seek_target(store, req.run_id, req.scope, req.cursor, direction, target)
        if note:
            return no_update, no_update, note
        return {"cursor": new, "n": sum(a or 0 for a in args[:len(SEEKS)] if isinstance(a, int))}, "replay", ""

    view_inputs = [Input("cursor", "value"), Input("mode", "value"), Input("xaxis", "value"),
                   Input("smoothing", "value"), Input("sel-rank", "value"), Input("sel-env", "value"),
                   Input("logy", "value")]

    # Two stages: the first screen's charts, then the others. The second callback takes the
    # first's shipped record as an input, so Dash calls it only once the first has answered
    # (on opening the page and on every later change alike): the browser draws the first
    # screen without waiting for the eight charts below it.
    @app.callback([Output(gid, "figure") for gid in FIRST_CHARTS] + [Output("shipped", "data")],
                  *view_inputs, State("shipped", "data"), State("run-id", "data"), State("theme", "data"))
    @refusing
    def render_charts(cursor, mode, xaxis, smoothing, rank, env, logy, shipped, run_id, theme):
        req = _request(store, run_id, mode, cursor, rank, env, xaxis, smoothing, logy, theme)
        figs, shipped, _ = chart_outputs(store, req, inputs.record(shipped), FIRST_CHARTS)
        return figs + [shipped]

    @app.callback([Output(gid, "figure") for gid in LATER_CHARTS] + [Output("shipped-later", "data"),
                  Output("g-ppo", "style"), Output("g-reward", "style"), Output("g-actions", "style")],
                  *view_inputs, Input("shipped", "data"), State("shipped-later", "data"), State("run-id", "data"),
                  State("theme", "data"))
    @refusing
    def render_later_charts(cursor, mode, xaxis, smoothing, rank, env, logy, _first, shipped, run_id, theme):
        req = _request(store, run_id, mode, cursor, rank, env, xaxis, smoothing, logy, theme)
        figs, shipped, optional = chart_outputs(store, req, inputs.record(shipped), LATER_CHARTS)
        return figs + [shipped] + optional

    @app.callback(Output("decisions-table", "data"), Output("events-table", "data"),
                  Output("event-search-error", "children"), Output("events-count", "children"),
                  Input("cursor", "value"), Input("mode", "value"), Input("event-kinds", "value"),
                  Input("event-search", "value"), Input("sel-rank", "value"), Input("sel-env", "value"),
                  State("run-id", "data"))
    @refusing
    def render_tables(cursor, mode, kinds, query, rank, env, run_id):
        return table_outputs(store, _request(store, run_id, mode, cursor, rank, env), inputs.names(kinds),
                             inputs.search(query))

    @app.callback(Output("metric-pick", "options"), Output("metric-filter-error", "children"),
                  Input("tick", "n_intervals"), Input("metric-filter", "value"), Input("sel-rank", "value"),
                  Input("sel-env", "value"), State("metric-pick", "options"), State("metric-pick", "value"),
                  State("run-id", "data"))
    @refusing
    def list_metrics(_n, pattern, rank, env, shown, picked, run_id):
        req = _request(store, run_id, "live", None, rank, env)
        names, error = metric_names(store, req, inputs.search(pattern))
        names += [p for p in inputs.names(picked) or [] if p not in names]  # a pick stays choosable
        return (no_update if names == shown else names), error

    @app.callback(Output("g-metrics", "figure"), *view_inputs, Input("metric-pick", "value"),
                  State("run-id", "data"), State("theme", "data"))
    @refusing
    def render_metrics(cursor, mode, xaxis, smoothing, rank, env, logy, picked, run_id, theme):
        req = _request(store, run_id, mode, cursor, rank, env, xaxis, smoothing, logy, theme)
        return metric_chart(store, req, (inputs.names(picked) or [])[:MAX_PICKED])
