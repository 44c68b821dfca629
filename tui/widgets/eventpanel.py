"""The event-log tab: a filter line, a search box and the virtual event list.

The search applies as you type (once keys pause for ``TYPE_DELAY_S``) and on Enter.
Filtering a long log takes a while (0.05–0.25 s for a text search over a million events), so
beyond ``SYNC_ROWS`` rows it runs in a thread worker: the list keeps showing the previous rows,
the filter line says "searching…", and only the newest search's rows are taken. A newer filter
cancels an older search; events that arrive meanwhile are filtered once its rows are in.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from telemetry_schema.eventlog import EventLog
from telemetry_schema.runmodel import RunModel
from telemetry_schema.search import QueryError
from tui.fmt import plain
from tui.widgets.eventlog import EventFilter, EventList, FilteredRows, filter_rows

SYNC_ROWS = 100_000
"""Filters over more rows than this run in a worker (a few ms below it, on the UI thread)."""
TYPE_DELAY_S = 0.15
"""The search applies as you type, once no key has come for this long (Enter applies at once)."""


class EventLogPanel(Vertical):
    """Keys: / search, t cycle kind, o cycle slot, f follow, Esc clear filters, Enter open."""

    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("t", "cycle_kind", "Kind filter"),
        Binding("o", "cycle_slot", "Slot filter"),
        Binding("f", "toggle_follow", "Follow"),
        Binding("escape", "clear", "Clear filters", show=False),
    ]
    flt: reactive[EventFilter] = reactive(EventFilter, always_update=True)
    follow: reactive[bool] = reactive(True)

    class Filtered(Message):
        """A search worker's rows of [start, limit) for ``flt``; ``request`` tells stale ones apart."""

        def __init__(self, request: int, flt: EventFilter, start: int, limit: int, rows: np.ndarray) -> None:
            super().__init__()
            self.request, self.flt, self.start, self.limit, self.rows = request, flt, start, limit, rows

    def __init__(self, *, sync_rows: int = SYNC_ROWS, type_delay: float = TYPE_DELAY_S, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session: RunModel | None = None
        self.problem = ""
        """Why the search cannot run (a bad query), shown in the filter line."""
        self.sync_rows = sync_rows
        """Filters over at most this many rows run on the UI thread; longer ones in a worker."""
        self.type_delay = type_delay
        """Seconds without a key before the search box's text applies."""
        self._typing: Timer | None = None
        self._filtered = FilteredRows()
        self._request = 0
        self.searching: tuple[EventFilter, int] | None = None
        """(filter, first row) of the search running in a worker, if any."""
        self._replay_cursor: int | None = None
        """The replay cursor last shown: when it moves (a seek, a step, play), the list goes to it."""

    def compose(self) -> ComposeResult:
        yield Static(id="event-filter-line")
        yield Input(placeholder="search events as you type (Enter: done, Esc: clear filters)", id="event-search")
        yield EventList(id="event-list")

    def show(self, session: RunModel) -> None:
        """Show the events below the session's cursor that pass the filter (filtering them here,
        or starting a search in a worker and showing the rows held until it is done)."""
        self.session = session
        limit = session.cursor
        flt = self._scoped(session)
        start = self._filtered.todo(flt, limit)
        try:
            if start is None or limit - start <= self.sync_rows:
                self._cancel_search()
                if start is not None:
                    self._filtered.add(flt, start, limit, filter_rows(session.log, flt, limit, start))
            elif self.searching != (flt, start):  # else the running search goes on; rows come later
                self._request += 1
                self.searching = (flt, start)
                self._search(session.log, flt, start, limit, self._request)
            self.problem = ""
        except QueryError as exc:
            self.problem = str(exc)
            self._filtered.add(flt, 0, limit, np.zeros(0, np.int64))
        rows, count = self._filtered.result()
        cursor = session.cursor if session.replay is not None else None
        moved = cursor is not None and cursor != self._replay_cursor
        self._replay_cursor = cursor
        # the list ends at the replay cursor: its last row is the event the cursor is at
        events = self.query_one(EventList)
        events.set_rows(session.log, rows, count, self.follow)
        if moved:
            events.go_last()
        self._draw_filter_line(count, limit)

    @work(thread=True, exclusive=True, group="event-filter")
    def _search(self, log: EventLog, flt: EventFilter, start: int, limit: int, request: int) -> None:
        try:
            rows = filter_rows(log, flt, limit, start)
        except QueryError:
            rows = np.zeros(0, np.int64)
        if not get_current_worker().is_cancelled:
            self.post_message(self.Filtered(request, flt, start, limit, rows))

    def _cancel_search(self) -> None:
        if self.searching is not None:
            self.searching = None
            self._request += 1
            self.workers.cancel_group(self, "event-filter")

    def on_event_log_panel_filtered(self, msg: Filtered) -> None:
        msg.stop()
        if msg.request != self._request or self.searching is None:
            return  # superseded: a newer search, or a filter settled here since
        self.searching = None
        self._filtered.add(msg.flt, msg.start, msg.limit, msg.rows)
        self._redraw()  # also filters the events that arrived while it ran

    def _scoped(self, session: RunModel) -> EventFilter:
        """The filter, kept to the chosen rank of a multi-rank run and the chosen env."""
        return dataclasses.replace(self.flt, rank=session.scope.rank if session.multi_rank else None,
                                   env=session.scope.env)

    def _draw_filter_line(self, count: int, limit: int) -> None:
        f = self.flt
        text = Text()
        if self.searching is not None:
            text.append(f"searching {limit:,} events…", style="bold yellow")
        else:
            text.append(f"{count:,} of {limit:,} events", style="bold")
        if self.session is not None and self.session.multi_rank:
            text.append(f"  rank {self.session.scope.rank}")
        if self.session is not None and self.session.scope.env is not None:
            text.append(f"  env {self.session.scope.env}")
        text.append(f"  kind: {plain(f.kind) or 'all'} [t]  slot: {plain(f.slot) or 'all'} [o]  search: ")
        text.append(plain(f.text) or "— [/]", style="italic")
        if self.problem:
            text.append(f"  {plain(self.problem)}", style="bold red")
        text.append("  follow: ")
        text.append("on" if self.follow else "off", style="green" if self.follow else "yellow")
        text.append(" [f]")
        self.query_one("#event-filter-line", Static).update(text)

    def _redraw(self) -> None:
        if self.session is not None:
            self.show(self.session)

    def watch_flt(self) -> None:
        self._redraw()

    def watch_follow(self, follow: bool) -> None:
        self.set_class(not follow, "-paused")
        self._redraw()

    def _choices(self, column: str) -> list[str | None]:
        if self.session is None:
            return [None]
        if column == "kind":
            values = sorted(self.session.state.kind_counts)
        else:
            values = list(self.session.state.slot_ids)
        return [None] + values

    def _cycle(self, column: str) -> None:
        choices = self._choices(column)
        current = getattr(self.flt, column)
        nxt = choices[(choices.index(current) + 1) % len(choices)] if current in choices else None
        self.flt = EventFilter(**{**self.flt.__dict__, column: nxt})

    def action_cycle_kind(self) -> None:
        self._cycle("kind")

    def action_cycle_slot(self) -> None:
        self._cycle("slot")

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow

    def action_search(self) -> None:
        box = self.query_one("#event-search", Input)
        box.add_class("-open")
        box.value = self.flt.text
        box.focus()

    def action_clear(self) -> None:
        self._stop_typing()
        self.flt = EventFilter()
        self._close_search()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._stop_typing()
        self._typing = self.set_timer(self.type_delay, lambda: self._apply_text(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._stop_typing()
        self._apply_text(event.value)
        self._close_search()

    def _stop_typing(self) -> None:
        if self._typing is not None:
            self._typing.stop()
            self._typing = None

    def _apply_text(self, value: str) -> None:
        self._typing = None
        if value.strip() != self.flt.text:
            self.flt = EventFilter(self.flt.kind, self.flt.slot, value.strip())

    def _close_search(self) -> None:
        self.query_one("#event-search", Input).remove_class("-open")
        self.query_one(EventList).focus()

    def set_filter(self, kind: str | None = None, slot: str | None = None, text: str = "") -> None:
        self.flt = EventFilter(kind, slot, text)
