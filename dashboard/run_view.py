"""What the run page shows, as functions of (store, run id, cursor, options).

The run page's callbacks call these and return their results. Chart outputs go through
``live.prepare``/``live.diff`` so a growing run ships only what changed; the prepared charts
are memoised per run, so clients polling the same run at the same point share one build.
"""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go
from dash import html

from telemetry_schema.fold import RunState

from dashboard import figures, lifecycle_figures
from dashboard.data import RunEntry, RunStore, run_status
from dashboard.live import diff, prepare
from dashboard.tables import decision_rows, event_rows, fmt_time

CHARTS = {
    "g-loss": figures.loss_figure,
    "g-acc": figures.accuracy_figure,
    "g-alpha": figures.alpha_figure,
    "g-ratio": figures.ratio_figure,
    "g-swimlane": lifecycle_figures.swimlane_figure,
    "g-gates": lifecycle_figures.gates_figure,
    "g-params": figures.params_figure,
    "g-ppo": figures.ppo_figure,
    "g-reward": figures.reward_figure,
}


@dataclass(frozen=True)
class RunRequest:
    """What a run-page callback asks for."""

    run_id: str
    cursor: int | None = None
    """Events to replay (None: live, everything read so far)."""
    xaxis: str = "epoch"
    smoothing: float = 0.0


def build_charts(state: RunState, opts: figures.ChartOptions) -> dict[str, go.Figure]:
    """Every chart of the run page, by graph id."""
    return {gid: fn(state, opts) for gid, fn in CHARTS.items()}


def chart_outputs(store: RunStore, req: RunRequest, shipped: dict | None) -> tuple[list, dict, list[dict]]:
    """(figure or Patch per chart, new shipped records, styles of the optional PPO/reward panels)."""
    entry = store.entry(req.run_id)
    opts = figures.ChartOptions(xaxis=req.xaxis, smoothing=float(req.smoothing or 0),
                                max_points=store.config.max_points, g2_threshold=store.config.g2_threshold,
                                uirevision=req.run_id)
    with entry.view(req.cursor) as state:
        if entry.error:
            return [go.Figure() for _ in CHARTS], {}, [{"display": "none"}] * 2
        # clients polling the same run at the same point share one build
        key = (state.events, req.cursor, opts.xaxis, opts.smoothing)
        charts, optional = entry.memo(key, lambda: _prepared(state, opts))
    shipped = dict(shipped or {})
    outputs = []
    for gid, (data, meta) in charts.items():
        outputs.append(diff(data, meta, shipped.get(gid)))
        shipped[gid] = meta
    return outputs, shipped, optional


def _prepared(state: RunState, opts: figures.ChartOptions):
    charts = {gid: prepare(fig) for gid, fig in build_charts(state, opts).items()}
    optional = [{} if len(state.ppo) else {"display": "none"}, {} if len(state.rewards) else {"display": "none"}]
    return charts, optional


def header(store: RunStore, run_id: str, cursor: int | None) -> html.Div:
    entry = store.entry(run_id)
    with entry.view(cursor) as st:
        if entry.error:
            return html.Div([html.H3(f"Run {run_id}: cannot read its log"), html.P(entry.error)],
                            className="card error-card", id="run-error")
        status = run_status(entry.state, store.clock())
        facts = [("status", status), ("task", st.task), ("topology", st.topology), ("epoch", st.epoch),
                 ("step", st.step), ("events", f"{st.events:,}"), ("best val acc", _pct(st.best_val_acc())),
                 ("fossilized", st.seeds_fossilized()), ("pruned", st.seeds_pruned()), ("panics", st.panics()),
                 ("torn bytes", entry.follower.torn_bytes)]
        slots = [html.Span(f"{s.slot_id}: {s.stage}" + (f" a={s.alpha:.2f}" if s.seed_id else ""),
                           className=f"slot stage-{s.stage.lower()}") for s in st.slots.values() if s.slot_id != "?"]
    return html.Div([
        html.H2(run_id, id="run-title"),
        html.Div([html.Span([html.B(f"{k}: "), str(v)], className=f"fact fact-{k.replace(' ', '-')}")
                  for k, v in facts], className="facts", id="run-facts"),
        html.Div(slots, className="slots"),
    ], className="card")


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2f}%"


def cursor_info(entry: RunEntry, cursor: int | None) -> str:
    total = entry.length
    if cursor is None or cursor >= total:
        return f"live: {total:,} events"
    with entry.view(cursor) as st:
        return f"replay: event {cursor:,} / {total:,} (epoch {st.epoch}, {fmt_time(st.last_wall)})"


def table_outputs(store: RunStore, req: RunRequest, kinds: list[str] | None, search: str) -> tuple[list, list]:
    entry = store.entry(req.run_id)
    cfg = store.config
    with entry.view(req.cursor) as st:
        decisions = decision_rows(st, cfg.decision_rows)
        table = entry.table()  # immutable: searched below without holding the run's lock
    return decisions, event_rows(table, req.cursor, kinds, search, cfg.event_rows)
