"""What the run page shows, as functions of (store, run id, selection, cursor, options).

The run page's callbacks call these and return their results. Chart outputs go through
``live.prepare``/``live.diff`` so a growing run ships only what changed; the prepared charts
are memoised per run, so clients polling the same run at the same point share one build.

A scope (``runmodel.Scope``: rank, env) picks the fold the page shows. Its state is what
``ScopedFold`` makes of it: an environment's view takes the run-wide facts (the learner's PPO
updates, run start and end, which carry env 0 or no env) from its rank's whole fold, so the PPO
panel shows the run's updates whatever env is viewed.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import plotly.graph_objects as go
from dash import html, no_update

from telemetry_schema.config import flatten
from telemetry_schema.fold import RunState
from telemetry_schema.replay import TARGETS, seek_position
from telemetry_schema.runmodel import Scope
from telemetry_schema.search import QueryError
from telemetry_schema.series import SeriesError, metrics, select
from telemetry_schema.status import is_live, progress, run_status, usage

from dashboard import figures, lifecycle_figures, metric_figures
from dashboard.data import RunEntry, RunStore
from dashboard.live import diff, prepare
from dashboard.safe import css_name, text
from dashboard.selection import ALL_ENVS, DEFAULT, Choices, RankAlerts, scope_key, scope_query
from dashboard.tables import decision_rows, event_rows, find_events, fmt_time

CHARTS = {
    "g-loss": figures.loss_figure,
    "g-acc": figures.accuracy_figure,
    "g-alpha": figures.alpha_figure,
    "g-ratio": figures.ratio_figure,
    "g-swimlane": lifecycle_figures.swimlane_figure,
    "g-gates": lifecycle_figures.gates_figure,
    "g-params": figures.params_figure,
    "g-system": metric_figures.system_figure,
    "g-ppo": figures.ppo_figure,
    "g-reward": figures.reward_figure,
    "g-actions": figures.action_figure,
}
FIRST_CHARTS = ("g-loss", "g-acc")
"""The charts of the first screen: built and drawn first. The rest (``LATER_CHARTS``) are built and
drawn by a second callback chained after the first one's answer, so the browser paints these
two without waiting for the eight others."""
LATER_CHARTS = tuple(gid for gid in CHARTS if gid not in FIRST_CHARTS)
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
    scope: Scope = DEFAULT
    """The rank and env shown."""
    log_y: bool = False
    """Log y axes on the time charts."""
    theme: str = "light"
    """The browser's colour scheme: 'light' or 'dark'."""

    def options(self, store: RunStore) -> figures.ChartOptions:
        return figures.ChartOptions(xaxis=self.xaxis, smoothing=float(self.smoothing or 0),
                                    max_points=store.config.max_points, g2_threshold=store.config.g2_threshold,
                                    uirevision=self.run_id, log_y=self.log_y, theme=self.theme)


def build_charts(state: RunState, opts: figures.ChartOptions, gids=tuple(CHARTS)) -> dict[str, go.Figure]:
    """The charts ``gids`` (default: every chart of the run page), by graph id."""
    return {gid: CHARTS[gid](state, opts) for gid in gids}


def chart_outputs(store: RunStore, req: RunRequest, shipped: dict | None,
                  gids=tuple(CHARTS)) -> tuple[list, dict, list[dict]]:
    """(figure or Patch per chart of ``gids``, in that order, new shipped records of those charts,
    styles of the optional policy panels: PPO updates, rewards, action mix).

    ``shipped`` describes what the browser holds of these charts; each group of charts drawn by
    its own callback keeps its own record."""
    gids = tuple(gids)
    entry = store.entry(req.run_id)
    opts = req.options(store)
    with entry.view(req.cursor, req.scope) as state:
        if entry.failure():
            return [go.Figure() for _ in gids], {}, [{"display": "none"}] * 3
        # clients polling the same run and scope at the same point share one build: live, the
        # state is the fold of every event read so far; in replay, of the first ``cursor``
        point = entry.length if req.cursor is None or req.cursor >= entry.length else req.cursor
        key = (req.scope, point, opts, gids)
        charts, optional = entry.memo(key, lambda: _prepared(state, opts, gids))
    # figures of another scope are no base for a patch: send every chart whole
    same = (shipped or {}).get(SHIPPED_SELECTION) == scope_key(req.scope)
    shipped = dict(shipped or {}) if same else {}
    shipped[SHIPPED_SELECTION] = scope_key(req.scope)
    outputs = []
    for gid, (data, meta) in charts.items():
        outputs.append(diff(data, meta, shipped.get(gid)))
        shipped[gid] = meta
    return outputs, shipped, optional


def _prepared(state: RunState, opts: figures.ChartOptions, gids: tuple[str, ...]):
    charts = {gid: prepare(fig) for gid, fig in build_charts(state, opts, gids).items()}
    # PPO updates are the run's whatever env is viewed (an env's view takes them from its rank)
    shown = [len(state.ppo), len(state.rewards), len(state.ppo)]  # the action mix: a learned policy's panel
    return charts, [{} if n else {"display": "none"} for n in shown]


def header(store: RunStore, run_id: str, cursor: int | None, scope: Scope = DEFAULT) -> html.Div:
    """The run's title, facts (status, scope, progress, outcome, torn tail), slots, and the
    banners of corrupt streams and of ranks that disagree; an error card when the run cannot
    be shown at all."""
    entry = store.entry(run_id)
    with entry.view(cursor, scope) as st:
        failure = entry.failure()
        if failure:
            return html.Div([html.H3(f"Run {run_id}: cannot read its log"), html.P(failure)],
                            className="card error-card", id="run-error")
        replaying = cursor is not None and cursor < entry.length
        # a replay shows the run as it was at the cursor (as esper-tui's header does); else as it is now
        now = (st.last_wall or entry.clock()) if replaying else entry.clock()
        status = run_status(st, now) if replaying else entry.status()
        facts = [("status", status), ("task", text(st.task)), ("topology", text(st.topology)),
                 *_selection_facts(entry.choices(), scope), *_progress_facts(st, now),
                 ("step", st.step), ("events", f"{st.events:,}"), ("best val acc", _pct(st.best_val_acc())),
                 ("fossilized", st.seeds_fossilized()), ("pruned", st.seeds_pruned()), ("panics", st.panics()),
                 ("torn bytes", entry.model.torn_bytes)]
        slots = [html.Span(f"{text(s.slot_id)}: {text(s.stage)}" + (f" a={s.alpha:.2f}" if s.seed_id else ""),
                           className=f"slot stage-{css_name(s.stage)}") for s in st.slots.values() if s.slot_id != "?"]
        alerts, corrupt = entry.alerts(), list(entry.corrupt)
    return html.Div([
        html.H2(run_id, id="run-title"),
        html.Div([html.Span([html.B(f"{k}: "), str(v)], className=f"fact fact-{k.replace(' ', '-')}")
                  for k, v in facts], className="facts", id="run-facts"),
        html.Div(slots, className="slots"),
        corrupt_banner(corrupt),
        rank_banner(alerts),
    ], className="card")


def _progress_facts(st: RunState, now: float) -> list[tuple[str, object]]:
    """('epoch', '12/40') and, while the run goes on, ('time left', '3m 20s')."""
    prog = progress(st, now)
    facts = [("epoch", prog.label().removeprefix("epoch "))]
    if prog.left_s is not None:
        facts.append(("time left", fmt_duration(prog.left_s)))
    return facts + usage(st).parts()


def fmt_duration(seconds: float) -> str:
    """'1h 02m', '3m 20s', '45s'."""
    s = int(round(max(0.0, seconds)))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def opens_final(entry: RunEntry) -> bool:
    """Whether a run page opens on the run's final state (replay mode, cursor at the end)
    rather than following it live: the run has ended (or can no longer write)."""
    return entry.ended or not is_live(entry.status())


def corrupt_banner(corrupt: list[str]) -> html.Div:
    """The streams found corrupt (hidden when none). A torn tail (a write under way, or cut short
    by a killed writer) is no corruption: it is the 'torn bytes' fact."""
    if not corrupt:
        return html.Div(id="corrupt-banner", style={"display": "none"})
    return html.Div([html.B("Corrupt log: what follows the corruption in these streams is not shown"),
                     *[html.P(line, className="corrupt-stream") for line in corrupt]],
                    id="corrupt-banner", className="corrupt-banner")


def _selection_facts(choices: Choices, scope: Scope) -> list[tuple[str, object]]:
    facts = []
    if choices.multi_rank:
        facts.append(("rank", f"{scope.rank} of {len(choices.ranks)}"))
    if choices.multi_env:
        facts.append(("env", "all" if scope.env is None else f"{scope.env} of {len(choices.envs)}"))
    return facts


def rank_banner(alerts: RankAlerts) -> html.Div:
    """The warning of a distributed run whose ranks disagree or went quiet (hidden when none)."""
    if not alerts:
        return html.Div(id="rank-banner", style={"display": "none"})
    lines = [html.P(["Ranks disagree: ", d.describe()], className="rank-divergence") for d in alerts.divergences]
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


def env_value(scope: Scope):
    """The env dropdown's value of a scope."""
    return ALL_ENVS if scope.env is None else scope.env


def sync_selection(choices: Choices, rank, env, search: str | None, triggers) -> tuple:
    """(URL query, rank value, env value) keeping the dropdowns and the URL in step.

    A changed URL alone (back/forward) sets the dropdowns; otherwise the dropdowns write the
    URL. ``triggers`` holds every input that fired: Dash may batch several into one call.
    """
    search = search or ""
    if "run-url.search" in triggers and not {"sel-rank.value", "sel-env.value"} & set(triggers):
        scope = choices.from_query(search)
        return (_changed(scope_query(scope), search), _changed(scope.rank, rank), _changed(env_value(scope), env))
    scope = choices.parse(rank, env)
    return _changed(scope_query(scope), search), no_update, no_update


def _changed(new, old):
    return no_update if new == old else new


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2f}%"


def cursor_info(entry: RunEntry, cursor: int | None, scope: Scope = DEFAULT) -> str:
    total = entry.length
    if cursor is None or cursor >= total:
        return f"{'final' if opens_final(entry) else 'live'}: {total:,} events"
    with entry.view(cursor, scope) as st:
        return f"replay: event {cursor:,} / {total:,} (epoch {st.epoch}, {fmt_time(st.last_wall)})"


def table_outputs(store: RunStore, req: RunRequest, kinds: list[str] | None,
                  query: str) -> tuple[list, list, str, str]:
    """(decision rows, event rows, the query's error or '', how many events it found): the
    events before the cursor that ``query`` finds (the query language both viewers share), of
    the chosen kinds and scope; the table lists the newest of them. A query that cannot be run
    shows its one-line error and no rows."""
    entry = store.entry(req.run_id)
    cfg = store.config
    with entry.view(req.cursor, req.scope) as st:
        decisions = decision_rows(st, cfg.decision_rows)
        stop = entry.length if req.cursor is None else min(req.cursor, entry.length)
        rank = req.scope.rank if entry.choices().multi_rank else None
    # searched without holding the run's lock: the log only grows, and ``stop`` bounds what is read
    try:
        found = find_events(entry.log, query, kinds, stop, rank=rank, env=req.scope.env)
    except QueryError as exc:
        return decisions, [], str(exc), ""
    shown = min(len(found), cfg.event_rows)
    count = f"({len(found):,} found" + (f", newest {shown:,} shown)" if shown < len(found) else ")")
    return decisions, event_rows(entry.log, found, cfg.event_rows), "", count


SEEKS = tuple((direction, target) for target in ("panic", "gate_failure", "stage_change") for direction in ("prev", "next"))
"""The replay bar's seek buttons: (direction, ``replay.TARGETS`` name)."""
SEEK_NAMES = MappingProxyType({"panic": "panic", "gate_failure": "gate failure", "stage_change": "stage change"})


def seek_id(direction: str, target: str) -> str:
    return f"seek-{direction}-{target.replace('_', '-')}"


def seek_target(store: RunStore, run_id: str, scope: Scope, cursor: int | None, direction: str,
                target: str) -> tuple[int, str]:
    """(the cursor a seek button leads to from ``cursor`` (None: the end), a note when there is
    nowhere to go). The events sought keep to the scope shown, as the TUI's seeks do."""
    entry = store.entry(run_id)
    entry.refresh()
    with entry.lock:
        total = entry.length
        here = total if cursor is None else min(cursor, total)
        if target not in TARGETS:
            return here, ""
        replay = entry.replay_of(scope)
        new = seek_position(replay.positions(target), here, direction)
    if new == here:
        return here, f"no {'later' if direction == 'next' else 'earlier'} {SEEK_NAMES.get(target, target)}"
    return new, ""


def config_rows(store: RunStore, run_id: str) -> list[dict]:
    """The run's whole configuration (its ``run_started`` config), one row per dotted key."""
    entry = store.entry(run_id)
    with entry.view() as st:
        return [{"key": k, "value": v} for k, v in flatten(st.config or {})]


def metric_names(store: RunStore, req: RunRequest, pattern: str) -> tuple[list[str], str]:
    """(every metric of the scope shown whose name matches the regex ``pattern``, the filter's
    one-line error or '')."""
    entry = store.entry(req.run_id)
    with entry.view(None, req.scope) as st:
        names = metrics(st)
    try:
        return select(names, pattern), ""
    except SeriesError as exc:
        return [], str(exc)


def metric_chart(store: RunStore, req: RunRequest, names: list[str]) -> go.Figure:
    """The metric picker's chart of the picked metrics, as of the request's cursor."""
    entry = store.entry(req.run_id)
    with entry.view(req.cursor, req.scope) as st:
        if entry.failure():
            return go.Figure()
        point = entry.length if req.cursor is None or req.cursor >= entry.length else req.cursor
        opts = req.options(store)
        return entry.memo((req.scope, point, opts, ("metrics", tuple(names))),
                          lambda: metric_figures.metric_figure(st, names, opts))
