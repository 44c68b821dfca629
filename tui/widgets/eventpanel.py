"""The event-log tab: a filter line, a search box and the virtual event list."""

from __future__ import annotations

import dataclasses

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Input, Static

from tui.session import Session
from tui.widgets.eventlog import EventFilter, EventList, FilteredRows


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

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session: Session | None = None
        self._filtered = FilteredRows()

    def compose(self) -> ComposeResult:
        yield Static(id="event-filter-line")
        yield Input(placeholder="search events (Enter to apply, Esc to cancel)", id="event-search")
        yield EventList(id="event-list")

    def show(self, session: Session) -> None:
        self.session = session
        limit = session.cursor
        rows, count = self._filtered.update(session.table, self._scoped(session), limit)
        self.query_one(EventList).set_rows(session.table, rows, count, self.follow)
        self._draw_filter_line(count, limit)

    def _scoped(self, session: Session) -> EventFilter:
        """The filter, kept to the chosen rank of a multi-rank run and the chosen env."""
        return dataclasses.replace(self.flt, rank=session.scope.rank if session.multi_rank else None,
                                   env=session.scope.env)

    def _draw_filter_line(self, count: int, limit: int) -> None:
        f = self.flt
        text = Text()
        text.append(f"{count:,} of {limit:,} events", style="bold")
        if self.session is not None and self.session.multi_rank:
            text.append(f"  rank {self.session.scope.rank}")
        if self.session is not None and self.session.scope.env is not None:
            text.append(f"  env {self.session.scope.env}")
        text.append(f"  kind: {f.kind or 'all'} [t]  slot: {f.slot or 'all'} [o]  search: ")
        text.append(f.text or "— [/]", style="italic")
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
        self.flt = EventFilter()
        self._close_search()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.flt = EventFilter(self.flt.kind, self.flt.slot, event.value.strip())
        self._close_search()

    def _close_search(self) -> None:
        self.query_one("#event-search", Input).remove_class("-open")
        self.query_one(EventList).focus()

    def set_filter(self, kind: str | None = None, slot: str | None = None, text: str = "") -> None:
        self.flt = EventFilter(kind, slot, text)
