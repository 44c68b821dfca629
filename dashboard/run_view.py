"""What the run page shows, as functions of (store, run id, selection, cursor, options).

The run page's callbacks call these and return their results. Chart outputs go through
``live.prepare``/``live.diff`` so a growing run ships only what changed; the prepared charts
are memoised per run, so clients polling the same run at the same point share one build.

A selection (rank, env) picks the fold the page shows. Run-global events (the learner's PPO
updates, run start and end) carry env 0, so an env's own fold lacks them: those come from the
selected rank's fold of every env (``Selection.run_scope``) whatever env is viewed.
"""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go
from dash import html, no_update

from telemetry_schema.fold import RunState

from dashboard import figures, lifecycle_figures
from dashboard.data import RunEntry, RunStore, run_status
from dashboard.live import diff, prepare
from dashboard.safe import css_name, text
from dashboard.selection import ALL_ENVS, DEFAULT, Choices, RankAlerts, Selection
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
    "g-actions": figures.action_figure,
}
FIRST_CHARTS = ("g-loss", "g-acc")
"""The charts of the first screen: built and drawn first. The rest (``LATER_CHARTS``) are built and
drawn by a second callback chained after the first one's answer, so the browser paints these
two without waiting for the eight others."""
LATER_CHARTS = tuple(gid for gid in CHARTS if gid not in FIRST_CHARTS)
RUN_SCOPED = ("g-ppo",)
"""Charts of run-global events, drawn from the selected rank's fold of every env."""
SHIPPED_SELECTION = "_selection"
"""Key of the shipped record that says which selection the browser's figures show."""


@dataclass(frozen=True)
class RunRequest:
    """What a run-page callback asks for."""

    run_id: str
    cursor: int | None = None
    """Events to replay (None: live, everything read so far)."""
    xaxis: str = "epoch"
    smoothing: float = 0.0
    sel: Selection = DEFAULT
    """The rank and env shown."""


def build_charts(state: RunState, opts: figures.ChartOptions, run: RunState | None = None,
                 gids=tuple(CHARTS)) -> dict[str, go.Figure]:
    """The charts ``gids`` (default: every chart of the run page), by graph id; ``run`` (default
    ``state``) feeds the run-scoped ones."""
    run = run or state
    return {gid: CHARTS[gid](run if gid in RUN_SCOPED else state, opts) for gid in gids}


def chart_outputs(store: RunStore, req: RunRequest, shipped: dict | None,
                  gids=tuple(CHARTS)) -> tuple[list, dict, list[dict]]:
    """(figure or Patch per chart of ``gids``, in that order, new shipped records of those charts,
    styles of the optional policy panels: PPO updates, rewards, action mix).

    ``shipped`` describes what the browser holds of these charts; each group of charts drawn by
    its own callback keeps its own record."""
    gids = tuple(gids)
    entry = store.entry(req.run_id)
    opts = figures.ChartOptions(xaxis=req.xaxis, smoothing=float(req.smoothing or 0),
                                max_points=store.config.max_points, g2_threshold=store.config.g2_threshold,
                                uirevision=req.run_id)
    with entry.view(req.cursor, req.sel) as state:
        run = entry.state_at(req.cursor, req.sel.run_scope)
        if entry.error:
            return [go.Figure() for _ in gids], {}, [{"display": "none"}] * 3
        # clients polling the same run and selection at the same point share one build
        key = (req.sel, state.events, run.events, req.cursor, opts.xaxis, opts.smoothing, gids)
        charts, optional = entry.memo(key, lambda: _prepared(state, run, opts, gids))
    # figures of another selection are no base for a patch: send every chart whole
    same = (shipped or {}).get(SHIPPED_SELECTION) == req.sel.key()
    shipped = dict(shipped or {}) if same else {}
    shipped[SHIPPED_SELECTION] = req.sel.key()
    outputs = []
    for gid, (data, meta) in charts.items():
        outputs.append(diff(data, meta, shipped.get(gid)))
        shipped[gid] = meta
    return outputs, shipped, optional


def _prepared(state: RunState, run: RunState, opts: figures.ChartOptions, gids: tuple[str, ...]):
    charts = {gid: prepare(fig) for gid, fig in build_charts(state, opts, run, gids).items()}
    # the panels stay whatever env is viewed: PPO updates are the run's, rewards each env's
    optional = [{} if len(run.ppo) else {"display": "none"}, {} if len(run.rewards) else {"display": "none"},
                {} if len(run.ppo) else {"display": "none"}]  # the action mix: a learned policy's panel
    return charts, optional


def header(store: RunStore, run_id: str, cursor: int | None, sel: Selection = DEFAULT) -> html.Div:
    entry = store.entry(run_id)
    with entry.view(cursor, sel) as st:
        run = entry.state_at(cursor, sel.run_scope)
        if entry.error:
            return html.Div([html.H3(f"Run {run_id}: cannot read its log"), html.P(entry.error)],
                            className="card error-card", id="run-error")
        status = run_status(entry.state, store.clock())
        facts = [("status", status), ("task", text(run.task)), ("topology", text(run.topology)),
                 *_selection_facts(entry.choices(), sel), ("epoch", st.epoch),
                 ("step", st.step), ("events", f"{st.events:,}"), ("best val acc", _pct(st.best_val_acc())),
                 ("fossilized", st.seeds_fossilized()), ("pruned", st.seeds_pruned()), ("panics", st.panics()),
                 ("torn bytes", entry.follower.torn_bytes)]
        slots = [html.Span(f"{text(s.slot_id)}: {text(s.stage)}" + (f" a={s.alpha:.2f}" if s.seed_id else ""),
                           className=f"slot stage-{css_name(s.stage)}") for s in st.slots.values() if s.slot_id != "?"]
        alerts = entry.alerts()
    return html.Div([
        html.H2(run_id, id="run-title"),
        html.Div([html.Span([html.B(f"{k}: "), str(v)], className=f"fact fact-{k.replace(' ', '-')}")
                  for k, v in facts], className="facts", id="run-facts"),
        html.Div(slots, className="slots"),
        rank_banner(alerts),
    ], className="card")


def _selection_facts(choices: Choices, sel: Selection) -> list[tuple[str, object]]:
    facts = []
    if choices.multi_rank:
        facts.append(("rank", f"{sel.rank} of {len(choices.ranks)}"))
    if choices.multi_env:
        facts.append(("env", "all" if sel.env is None else f"{sel.env} of {len(choices.envs)}"))
    return facts


def rank_banner(alerts: RankAlerts) -> html.Div:
    """The warning of a distributed run whose ranks disagree or went quiet (hidden when none)."""
    if not alerts:
        return html.Div(id="rank-banner", style={"display": "none"})
    lines = []
    if alerts.divergence:
        lines.append(html.P(["Ranks disagree: ", alerts.divergence], className="rank-divergence"))
    lines += [html.P(f"Rank {r} is silent: its last event is {behind:,.0f} s older than the newest of any rank.",
                     className="rank-silent") for r, behind in alerts.silent]
    lines += [html.P(f"Rank {r} has written no events.", className="rank-silent") for r in alerts.missing]
    return html.Div([html.B("Distributed run check"), *lines], id="rank-banner", className="rank-banner")


def selector_props(choices: Choices) -> tuple[list, dict, list, dict]:
    """(rank options, rank picker style, env options, env picker style): a picker with one
    choice is hidden."""
    def shown(on: bool) -> dict:
        return {} if on else {"display": "none"}
    ranks = [{"label": f"rank {r}", "value": r} for r in choices.ranks]
    envs = [{"label": "all envs", "value": ALL_ENVS}] + [{"label": f"env {e}", "value": e} for e in choices.envs]
    return ranks, shown(choices.multi_rank), envs, shown(choices.multi_env)


def selector_update(choices: Choices, rank_options, env_options) -> tuple:
    """``selector_props`` for a poll, or no_update for all four while the browser's options are
    current (re-sent options re-render the dropdowns, closing one a user has open)."""
    props = selector_props(choices)
    if props[0] == rank_options and props[2] == env_options:
        return (no_update,) * 4
    return props


def env_value(sel: Selection):
    """The env dropdown's value of a selection."""
    return ALL_ENVS if sel.env is None else sel.env


def sync_selection(choices: Choices, rank, env, search: str | None, triggers) -> tuple:
    """(URL query, rank value, env value) keeping the dropdowns and the URL in step.

    A changed URL alone (back/forward) sets the dropdowns; otherwise the dropdowns write the
    URL. ``triggers`` holds every input that fired: Dash may batch several into one call.
    """
    search = search or ""
    if "run-url.search" in triggers and not {"sel-rank.value", "sel-env.value"} & set(triggers):
        sel = choices.from_query(search)
        return (_changed(sel.query(), search), _changed(sel.rank, rank), _changed(env_value(sel), env))
    sel = choices.parse(rank, env)
    return _changed(sel.query(), search), no_update, no_update


def _changed(new, old):
    return no_update if new == old else new


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2f}%"


def cursor_info(entry: RunEntry, cursor: int | None, sel: Selection = DEFAULT) -> str:
    total = entry.length
    if cursor is None or cursor >= total:
        return f"live: {total:,} events"
    with entry.view(cursor, sel) as st:
        return f"replay: event {cursor:,} / {total:,} (epoch {st.epoch}, {fmt_time(st.last_wall)})"


def table_outputs(store: RunStore, req: RunRequest, kinds: list[str] | None, search: str) -> tuple[list, list]:
    entry = store.entry(req.run_id)
    cfg = store.config
    with entry.view(req.cursor, req.sel) as st:
        decisions = decision_rows(st, cfg.decision_rows)
        table = entry.table()  # immutable: searched below without holding the run's lock
        rank = req.sel.rank if entry.choices().multi_rank else None
    return decisions, event_rows(table, req.cursor, kinds, search, cfg.event_rows, rank=rank, env=req.sel.env)
