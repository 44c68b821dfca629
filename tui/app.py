"""EsperApp: the main screen (header, tabbed panels, footer), live follow and replay control."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Static, TabbedContent, TabPane
from textual.css.query import NoMatches
from textual.worker import get_current_worker

import dataclasses

from telemetry_schema import runmodel, series
from telemetry_schema.config import run_config
from telemetry_schema.series import SeriesOptions
from telemetry_schema.runmodel import RunModel, Scope, ScopedFold, ScopedReplay, refold
from tui import fmt
from tui.loader import Prefetch, one_line
from tui.messages import EventsArrived, Loaded, Refolded, ReplayReady, SourceFailed
from tui.screens.detail import EventDetail, SeedDetail
from tui.screens.help import HelpScreen
from tui.screens.picker import RunPicker
from tui.source import Target
from tui.widgets.eventlog import EventList, event_fields
from tui.widgets.eventpanel import EventLogPanel
from tui.widgets.footer import KeyFooter
from tui.widgets.header import RunHeader
from tui.widgets.history import DecisionsTable, GatesTable, GovernorTable, HistoryTable
from tui.widgets.config import ConfigTable
from tui.widgets.metrics import SMOOTHING, MetricsGrid
from tui.widgets.scalars import ScalarsPanel
from tui.widgets.policy import PolicyPanel
from tui.widgets.scopebar import ScopeBar
from tui.widgets.slots import SlotsTable, slot_of_key
from tui.widgets.timeline import Timeline

TABS = ("tab-slots", "tab-metrics", "tab-gates", "tab-governor", "tab-decisions", "tab-events", "tab-policy",
        "tab-scalars", "tab-config")
FOCUS = {"tab-slots": "#slots", "tab-gates": "#gates", "tab-governor": "#governor",
         "tab-decisions": "#decisions", "tab-events": "#event-list", "tab-scalars": "#scalars .metric-list",
         "tab-config": "#config"}
"""The widget that takes the keys when a tab is shown."""
REFRESH_S = 0.2
"""Least seconds between two redraws of the panels (events arriving faster are batched)."""
METRICS_REFRESH_S = 1.0
"""Least seconds between two redraws of the plots while following."""


class EsperApp(App):
    """Follows or replays one run. ``clock`` gives the wall time used for status and ages."""

    CSS_PATH = "esper.tcss"
    TITLE = "esper-tui"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("r", "toggle_replay", "Replay"),
        Binding("space", "play", "Play/Pause"),
        Binding("n", "rank(1)", "Rank"),
        Binding("N", "rank(-1)", "Prev rank", show=False),
        Binding("e", "env(1)", "Env"),
        Binding("E", "env(-1)", "Prev env", show=False),
        Binding("a", "chart_x", "X axis"),
        Binding("w", "chart_smoothing", "Smooth"),
        Binding("y", "chart_log", "Log y"),
        *[Binding(str(i + 1), f"tab('{tab}')", tab[4:].title(), show=False) for i, tab in enumerate(TABS)],
        Binding("l,right", "next_tab(1)", "Next tab", show=False),
        Binding("h,left", "next_tab(-1)", "Prev tab", show=False),
        Binding("plus,equals_sign", "speed(1)", "Faster", show=False),
        Binding("minus", "speed(-1)", "Slower", show=False),
        Binding("full_stop", "move('step+')", "Step", show=False),
        Binding("comma", "move('step-')", "Step back", show=False),
        Binding("right_square_bracket", "move('next:epoch')", "Next epoch", show=False),
        Binding("left_square_bracket", "move('prev:epoch')", "Prev epoch", show=False),
        Binding("g", "move('start')", "Start", show=False),
        Binding("G", "move('end')", "End", show=False),
        Binding("p", "move('next:panic')", "Next panic", show=False),
        Binding("P", "move('prev:panic')", "Prev panic", show=False),
        Binding("x", "move('next:gate_failure')", "Next gate failure", show=False),
        Binding("X", "move('prev:gate_failure')", "Prev gate failure", show=False),
        Binding("s", "move('next:stage_change')", "Next stage change", show=False),
        Binding("S", "move('prev:stage_change')", "Prev stage change", show=False),
    ]

    def __init__(self, target: Target, *, replay: bool = False, clock: Callable[[], float] = time.time,
                 poll_interval: float = 0.2, prefetch: Prefetch | None = None,
                 on_first_screen: Callable[[], None] | None = None) -> None:
        """``on_first_screen`` is called once, after the first paint of the run's state (or
        of the run picker, or of an error)."""
        super().__init__()
        self.target, self.start_replay, self.clock = target, replay, clock
        self._on_first_screen = on_first_screen
        if prefetch is None and target.kind != "runs":
            prefetch = Prefetch(target)
        self.prefetch = prefetch
        self.poll_interval = poll_interval
        self.session = RunModel()
        self.error = ""
        self._dirty = False
        self._last_refresh = 0.0
        self._last_metrics = 0.0
        self._request = 0
        self._scope_request = 0
        self._multi = (False, False)  # (ranks, envs): whether the rank / env keys apply
        self._stop = threading.Event()
        self.chart = SeriesOptions()
        """The x axis, smoothing and y scale of every time chart (keys a, w, y)."""

    def compose(self) -> ComposeResult:
        # the terminal's size class before the widgets are styled, not a restyle of them all
        self.set_class(self._big(self.size), "-big", update=False)
        yield RunHeader(id="header")
        yield ScopeBar(id="scope")
        yield Static(id="banner")
        with TabbedContent(id="tabs"):
            with TabPane("1 Slots", id="tab-slots"):
                yield SlotsTable(id="slots")
                yield Timeline(id="timeline")
                yield MetricsGrid(("acc", "loss", "ratio"), id="overview")
            with TabPane("2 Metrics", id="tab-metrics"):
                yield MetricsGrid(id="metrics")
            with TabPane("3 Gates", id="tab-gates"):
                yield GatesTable(id="gates")
            with TabPane("4 Governor", id="tab-governor"):
                yield GovernorTable(id="governor")
            with TabPane("5 Decisions", id="tab-decisions"):
                yield DecisionsTable(id="decisions")
            with TabPane("6 Events", id="tab-events"):
                yield EventLogPanel(id="events")
            with TabPane("7 Policy", id="tab-policy"):
                yield PolicyPanel(id="policy")
            with TabPane("8 Scalars", id="tab-scalars"):
                yield ScalarsPanel(id="scalars")
            with TabPane("9 Config", id="tab-config"):
                yield ConfigTable(id="config")
        yield KeyFooter()

    def on_mount(self) -> None:
        self._main = self.screen  # panels live here even while a picker or dialog is on top
        self.set_interval(0.1, self._tick)
        self._show_banner(f"loading {self.target.path} …")
        if self.target.kind == "runs":
            self.push_screen(RunPicker(self.target.path, self.clock), self._picked)
            self.call_after_refresh(self._first_screen_shown)
        else:
            self.follow()

    def _first_screen_shown(self) -> None:
        callback, self._on_first_screen = self._on_first_screen, None
        if callback is not None:
            callback()

    def on_unmount(self) -> None:
        self._stop.set()

    def _picked(self, path: Path | None) -> None:
        if path is None:
            self.exit()
            return
        self.target = Target("run", path)
        self.prefetch = Prefetch(self.target)
        self.follow()

    # -- following ---------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="follow")
    def follow(self) -> None:
        """Poll the log: the first poll is folded here; later ones are posted as small tables."""
        worker = get_current_worker()
        first = None
        while first is None and not worker.is_cancelled:
            first = self.prefetch.result(timeout=0.1)
        if first is None:
            return
        if first.error:
            self.post_message(SourceFailed(first.error))
            return
        source = first.source
        self.post_message(Loaded(first.log, first.fold, source.torn_bytes, source.ended, source.manifest(),
                                 list(source.corrupt)))
        torn, corrupt = source.torn_bytes, len(source.corrupt)
        while not source.ended and not worker.is_cancelled and not self._stop.wait(self.poll_interval):
            try:
                new = source.poll()
            except Exception as exc:  # any failure is shown, never a silent stop
                self.post_message(SourceFailed(one_line(exc, self.target.path)))
                return
            if new.num_rows or source.torn_bytes != torn or source.ended or len(source.corrupt) != corrupt:
                torn, corrupt = source.torn_bytes, len(source.corrupt)
                self.post_message(EventsArrived(new, torn, source.ended, list(source.corrupt)))

    def on_loaded(self, msg: Loaded) -> None:
        self.session.adopt(msg.log, msg.fold, msg.torn_bytes, msg.ended, msg.manifest, msg.corrupt)
        if self.start_replay:
            self.session.start_replay(0)
        self.refresh_panels(force=True)
        self.call_after_refresh(self._first_screen_shown)

    def on_events_arrived(self, msg: EventsArrived) -> None:
        self.session.ingest(msg.chunk, msg.torn_bytes, msg.ended, self.clock(), msg.corrupt)
        self._dirty = True

    def on_source_failed(self, msg: SourceFailed) -> None:
        self.error = msg.text
        self.refresh_panels(force=True)
        self.call_after_refresh(self._first_screen_shown)

    # -- drawing -----------------------------------------------------------------------------

    def _tick(self) -> None:
        try:
            if self.session.playing:
                self._go(self.session.play_target())
            now = time.monotonic()
            if now - self._last_refresh >= (REFRESH_S if self._dirty else 1.0) and self.session.loaded:
                self.refresh_panels()
        except NoMatches:  # shutting down: the panels are gone
            pass

    def refresh_panels(self, force: bool = False) -> None:
        """Redraw the header and the visible tab from the session's state."""
        self._dirty = False
        now = time.monotonic()
        self._last_refresh = now
        session, state = self.session, self.session.state
        self._main.query_one(RunHeader).show(session, self.clock(), self.target.path.name)
        self._main.query_one(ScopeBar).show(session, self.clock())
        if (session.multi_rank, session.multi_env) != self._multi:
            self._multi = (session.multi_rank, session.multi_env)
            self.refresh_bindings()
        self._update_banner()
        active = self._main.query_one(TabbedContent).active
        if active == "tab-slots":
            self._main.query_one(SlotsTable).show(state)
            self._main.query_one(Timeline).show(state)
            if self.has_class("-big") and self._metrics_due(force, now):
                self._main.query_one("#overview", MetricsGrid).show(state, self.chart)
        elif active == "tab-metrics":
            if self._metrics_due(force, now):
                self._main.query_one("#metrics", MetricsGrid).show(state, self.chart)
        elif active == "tab-scalars":
            if self._metrics_due(force, now):
                self._main.query_one(ScalarsPanel).show(state, self.chart)
        elif active == "tab-config":
            self._main.query_one(ConfigTable).show(run_config(state.config, session.manifest))
        elif active == "tab-events":
            self._main.query_one(EventLogPanel).show(session)
        elif active:
            self._main.query_one(f"#{active[4:]}").show(state)

    def _metrics_due(self, force: bool, now: float) -> bool:
        """Plots are the costly part of a redraw: at most once a second while following."""
        if force or now - self._last_metrics >= METRICS_REFRESH_S or self.session.replay is not None:
            self._last_metrics = now
            return True
        return False

    @staticmethod
    def _big(size) -> bool:
        return size.width >= 120 and size.height >= 40

    def on_resize(self, event) -> None:
        big = self._big(event.size)
        if big != self.has_class("-big"):
            self.set_class(big, "-big")
            if self.session.loaded:
                self.call_after_refresh(self.refresh_panels, True)

    def _update_banner(self) -> None:
        if self.error:
            self._show_banner(self.error, "error")
        elif not self.session.loaded:
            self._show_banner(f"loading {self.target.path} …")
        elif self.session.length == 0:
            self._show_banner(f"waiting for the first events in {self.target.path} …")
        else:
            self._show_banner("")

    def _show_banner(self, text: str, kind: str = "info") -> None:
        banner = self._main.query_one("#banner", Static)
        banner.update(fmt.text(text))  # errors and paths may hold anything: never markup
        banner.set_class(bool(text), "-shown")
        banner.set_class(kind == "error", "-error")

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        target = FOCUS.get(event.pane.id or "")
        if target:
            self._main.query_one(target).focus()
        if self.session.loaded:
            self.refresh_panels(force=True)

    # -- replay ------------------------------------------------------------------------------

    def _go(self, cursor: int) -> None:
        """Move the replay cursor (starting a replay if needed); far folds go to a worker."""
        s = self.session
        if s.replay is None and cursor <= runmodel.SYNC_EVENTS:
            s.start_replay(cursor)
        elif s.replay is not None and s.is_cheap(cursor):
            s.seek(cursor)
        else:
            self._request += 1
            self._build_replay(s.log, cursor, s.scope, self._request)
            return
        self.refresh_panels(force=True)

    @work(thread=True, exclusive=True, group="seek")
    def _build_replay(self, log, cursor: int, scope: Scope, request: int) -> None:
        self.post_message(ReplayReady(ScopedReplay(log, cursor, scope), request))

    def on_replay_ready(self, msg: ReplayReady) -> None:
        if msg.request != self._request:
            return
        if msg.replay.scope != self.session.scope:  # another rank / env was chosen meanwhile
            self._go(msg.replay.cursor)
            return
        self.session.adopt_replay(msg.replay)
        self.refresh_panels(force=True)

    def action_move(self, move: str) -> None:
        """Move the replay cursor; a seek that finds nothing says so and stays put."""
        if not self.session.loaded:
            return
        missing = self.session.missing(move)
        if missing:
            self.notify(missing, timeout=3)
            return
        self._go(self.session.target(move))

    def action_toggle_replay(self) -> None:
        if self.session.replay is not None:
            self._request += 1
            self.session.stop_replay()
            self.refresh_panels(force=True)
        elif self.session.loaded:
            self._go(self.session.length)

    def action_play(self) -> None:
        s = self.session
        if not s.loaded:
            return
        if s.replay is None:
            self._go(0)
        if s.cursor >= s.length:
            s.seek(0)
        s.playing = not s.playing
        self.refresh_panels(force=True)

    def action_speed(self, delta: int) -> None:
        self.session.change_speed(delta)
        self.refresh_panels()

    # -- rank and environment ----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The rank / env keys (and their footer hints) exist only for runs with several."""
        if action == "rank":
            return self.session.multi_rank
        if action == "env":
            return self.session.multi_env
        return True

    def action_rank(self, delta: int) -> None:
        self._rescope(self.session.scope_after("rank", delta))

    def action_env(self, delta: int) -> None:
        self._rescope(self.session.scope_after("env", delta))

    def _rescope(self, scope: Scope | None) -> None:
        """Refold the events already read for ``scope``: here for short logs, else in a worker."""
        s = self.session
        if scope is None or not s.loaded:
            return
        self._scope_request += 1
        cursor = s.cursor if s.replay is not None else None
        if s.is_small():
            self._adopt_scope(*refold(s.log, scope, cursor))
            return
        s.pending = scope
        self._refold(s.log, scope, cursor, self._scope_request)
        self.refresh_panels(force=True)

    @work(thread=True, exclusive=True, group="scope")
    def _refold(self, log, scope: Scope, cursor: int | None, request: int) -> None:
        self.post_message(Refolded(*refold(log, scope, cursor), request))

    def on_refolded(self, msg: Refolded) -> None:
        if msg.request == self._scope_request:
            self._adopt_scope(msg.fold, msg.replay)

    def _adopt_scope(self, fold: ScopedFold, replay: ScopedReplay | None) -> None:
        goto = self.session.adopt_scope(fold, replay)
        for widget in (*self._main.query(HistoryTable), *self._main.query(MetricsGrid)):
            widget.reset()
        if goto is not None:
            self._go(goto)
        self.refresh_panels(force=True)

    # -- chart options ---------------------------------------------------------------------------

    def x_axes(self) -> list[str]:
        """The x axes this run can be drawn on: FLOPs only once its epochs carry them."""
        have_flops = "flops_cumulative" in series.metrics(self.session.fold.state)
        return [x for x in series.X_AXES if x != "flops" or have_flops]

    def _set_chart(self, **changes) -> None:
        self.chart = dataclasses.replace(self.chart, **changes)
        for screen in self.screen_stack:
            if hasattr(screen, "redraw_charts"):
                screen.redraw_charts()
        if self.session.loaded:
            self.refresh_panels(force=True)

    def action_chart_x(self) -> None:
        axes = self.x_axes()
        i = axes.index(self.chart.x) if self.chart.x in axes else -1
        self._set_chart(x=axes[(i + 1) % len(axes)])

    def action_chart_smoothing(self) -> None:
        i = SMOOTHING.index(self.chart.smoothing) if self.chart.smoothing in SMOOTHING else -1
        self._set_chart(smoothing=SMOOTHING[(i + 1) % len(SMOOTHING)])

    def action_chart_log(self) -> None:
        self._set_chart(log_y=not self.chart.log_y)

    # -- navigation and dialogs --------------------------------------------------------------

    def action_tab(self, tab: str) -> None:
        self._main.query_one(TabbedContent).active = tab

    def action_next_tab(self, delta: int) -> None:
        tabs = self._main.query_one(TabbedContent)
        tabs.active = TABS[(TABS.index(tabs.active) + delta) % len(TABS)]

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    @on(SlotsTable.RowSelected, "#slots")
    def _open_seed(self, event: SlotsTable.RowSelected) -> None:
        self.push_screen(SeedDetail(self.session.state, slot_of_key(event.row_key.value)))

    @on(EventList.Opened)
    def _open_event(self, event: EventList.Opened) -> None:
        self.push_screen(EventDetail(*event_fields(self.session.log, event.row)))
