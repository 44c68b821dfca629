"""The runs page: every run of the log directory with its status and outcome; sortable, and
filtered by name or task, status and tag (``telemetry_schema.runs.matches``, as esper-tui's
picker filters; the filters are kept across reloads). The tags cell is editable: a
comma-separated text, written to the run's tags.json as the picker's ``t`` writes it.

Its rows are ``telemetry_schema.runs.RunSummary`` (``RunStore.summaries``: the row ``summarize``
makes, as esper-tui's picker shows it); statuses come from ``run_status``."""

from __future__ import annotations

import hashlib
import json

from dash import Input, Output, State, dash_table, dcc, html
from dash.exceptions import PreventUpdate

from telemetry_schema.runs import RunSummary, matches
from telemetry_schema.status import STATUSES
from telemetry_schema.tags import TagError, parse_tags, write_tags

from dashboard import inputs
from dashboard.data import RunNotFound, RunStore
from dashboard.tables import CORRUPT, RUN_COLUMNS, run_rows


def match(path: str):
    return () if path in ("/", "/runs") else None


def layout(store: RunStore, search: str = ""):
    columns = [{"id": cid, "name": name, "presentation": "markdown"} if cid == "run"
               else {"id": cid, "name": name, "editable": True} if cid == "tags" else {"id": cid, "name": name}
               for cid, name in RUN_COLUMNS]
    summaries = store.summaries()
    rows = run_rows(summaries)
    table = dash_table.DataTable(
        id="runs-table", columns=columns, data=rows, tooltip_data=tooltips(rows), sort_action="native",
        sort_by=[{"column_id": "started", "direction": "desc"}], markdown_options={"link_target": "_self"},
        style_cell={"textAlign": "left", "padding": "4px 8px"}, style_as_list_view=True, tooltip_duration=None,
        style_data_conditional=[{"if": {"filter_query": f'{{status}} = "{s}"', "column_id": "status"},
                                 "color": c, "fontWeight": "bold"} for s, c in STATUS_COLORS.items()]
        + [{"if": {"filter_query": f'{{status}} contains "{CORRUPT.strip(" ·")}"', "column_id": "status"},
            "color": STATUS_COLORS["error"], "fontWeight": "bold"}])
    return html.Div([html.H2("Runs"), html.P(f"Log directory: {store.logdir}", className="muted"),
                     filters(summaries), html.P(count_note(len(rows), len(rows)), id="runs-count", className="muted"),
                     html.P("", id="runs-tag-note", className="muted"),
                     dcc.Store(id="runs-digest", data=None),
                     table], className="card")


def filters(summaries: list[RunSummary]) -> html.Div:
    """Text (run id or task), status and tag filters, kept across reloads."""
    return html.Div([
        dcc.Input(id="runs-filter", type="text", debounce=True, placeholder="filter by name or task",
                  persistence=True, className="metric-filter"),
        dcc.Dropdown(id="runs-status", options=[*STATUSES, "error"], value=None, placeholder="any status",
                     persistence=True, className="picker"),
        dcc.Dropdown(id="runs-tag", options=tag_options(summaries), value=None, placeholder="any tag",
                     persistence=True, className="picker"),
    ], className="controls")


def tag_options(summaries: list[RunSummary]) -> list[str]:
    return sorted({t for s in summaries for t in s.tags})


def _digest(obj) -> str:
    return hashlib.blake2b(json.dumps(obj, default=str).encode(), digest_size=12).hexdigest()


def count_note(shown: int, total: int) -> str:
    return f"{total} runs" if shown == total else f"{shown} of {total} runs"


def filtered(summaries: list[RunSummary], text, status, tag) -> list[RunSummary]:
    """The rows the filters pass (a value the page could not have sent filters nothing)."""
    text, status, tag = inputs.search(text), inputs.search(status), inputs.search(tag)
    return [s for s in summaries if matches(s, text, status, tag)]


STATUS_COLORS = {"waiting": "#7f7f7f", "running": "#2ca02c", "stalled": "#ff7f0e", "crashed": "#d62728",
                 "error": "#d62728", "completed": "#1f77b4", "failed": "#d62728", "interrupted": "#9467bd"}
"""A colour per ``telemetry_schema.status.STATUSES`` (and 'error': a log that cannot be read)."""


def tag_edits(data, previous) -> dict[str, str]:
    """The tags cells the user changed: run id -> the cell's new text. Rows are matched by run
    id; a row the page could not have sent (not a dict, a run id or tags not a string) is skipped."""
    if not isinstance(data, list) or not isinstance(previous, list):
        return {}
    before = {r.get("run_id"): r.get("tags") for r in previous if isinstance(r, dict)}
    out = {}
    for row in data:
        if not isinstance(row, dict):
            continue
        run_id, tags = row.get("run_id"), row.get("tags")
        if isinstance(run_id, str) and isinstance(tags, str) and run_id in before and before[run_id] != tags:
            out[run_id] = inputs.search(tags)
    return out


def save_tags(store: RunStore, edits: dict[str, str]) -> str:
    """Write each edited run's tags; one line saying what was written, or why not."""
    notes = []
    for run_id, cell in edits.items():
        try:
            run_id = store.resolve(run_id)
            clean = write_tags(store.logdir / run_id, parse_tags(cell))
            notes.append(f"{run_id}: " + (f"tags {', '.join(clean)}" if clean else "tags cleared"))
        except (RunNotFound, TagError, OSError) as exc:
            notes.append(" ".join(str(exc).split()))
    return "; ".join(notes)


def tooltips(rows: list[dict]) -> list[dict]:
    """What a hover on a row's status says: the run's problem (unreadable, or corrupt streams)."""
    return [{"status": r["problem"]} if r["problem"] else {} for r in rows]


def register(app, store: RunStore) -> None:
    @app.callback(Output("runs-table", "data"), Output("runs-table", "tooltip_data"), Output("runs-count", "children"),
                  Output("runs-tag", "options"), Output("runs-digest", "data"), Input("tick", "n_intervals"),
                  Input("runs-filter", "value"), Input("runs-status", "value"), Input("runs-tag", "value"),
                  State("runs-digest", "data"))
    def refresh_runs(_n, text, status, tag, shown):
        summaries = store.summaries()
        rows = run_rows(filtered(summaries, text, status, tag))
        out = (rows, tooltips(rows), count_note(len(rows), len(summaries)), tag_options(summaries))
        digest = _digest(out)
        # a poll that changes nothing sends nothing (a thousand rows re-sent each second cost more than listing them)
        if digest == shown:
            raise PreventUpdate
        return (*out, digest)

    @app.callback(Output("runs-tag-note", "children"), Output("runs-digest", "data", allow_duplicate=True),
                  Input("runs-table", "data_timestamp"), State("runs-table", "data"),
                  State("runs-table", "data_previous"), prevent_initial_call=True)
    def edit_tags(_stamp, data, previous):
        edits = tag_edits(data, previous)
        if not edits:
            raise PreventUpdate
        # the digest is cleared so the next poll sends the rows again: the tags as written (a
        # refused edit goes back to the run's tags)
        return save_tags(store, edits), None
