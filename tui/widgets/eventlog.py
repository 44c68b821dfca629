"""The event log: every event of the run, filtered by kind, slot and a search, drawn lazily.

Only the rows on screen are ever turned into Python objects, so a log of millions of events
scrolls as fast as a short one; filters are telemetry_schema's search, vectorised over each
kind's table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from telemetry_schema.eventlog import EventLog
from telemetry_schema.schema import ENVELOPE_NAMES
from telemetry_schema.search import quote, search
from tui.fmt import plain

KIND_STYLES = {"governor_panic": "bold red", "governor_rollback": "bold yellow", "gate_evaluated": "cyan",
               "stage_changed": "magenta", "seed_fossilized": "bold green", "seed_pruned": "red",
               "controller_decision": "blue", "heartbeat": "grey50", "batch_metrics": "grey70",
               "run_started": "bold", "run_finished": "bold"}


@dataclass(frozen=True)
class EventFilter:
    kind: str | None = None
    slot: str | None = None
    text: str = ""
    """A query of telemetry_schema's search language (substring, /regex/, field:value, ...)."""
    rank: int | None = None
    """Only this rank's events (set from the chosen rank of a multi-rank run)."""
    env: int | None = None
    """Only this environment's events (set from the chosen env of a PPO run)."""

    def active(self) -> bool:
        return bool(self.kind or self.slot or self.text) or self.rank is not None or self.env is not None

    def query(self) -> str:
        """The whole filter as one search query."""
        terms = [f"kind={quote(self.kind)}"] if self.kind else []
        terms += [f"slot={quote(self.slot)}"] if self.slot else []
        return " ".join(terms + [self.text])


def filter_rows(log: EventLog, flt: EventFilter, limit: int, start: int = 0) -> np.ndarray | None:
    """Positions in [start, limit) of the events that pass the filter; None when every event
    does. Raises QueryError for a query that cannot run."""
    if not flt.active():
        return None
    return search(log, flt.query(), rank=flt.rank, env=flt.env, start=start, stop=limit)


class FilteredRows:
    """The filtered row indices of a growing table, extended incrementally.

    ``update`` filters here; a caller that filters elsewhere (a worker) asks ``todo`` which rows
    still need filtering and hands the result back to ``add``."""

    def __init__(self) -> None:
        self.flt = EventFilter()
        self.done = 0
        self.rows: np.ndarray | None = None

    def update(self, log: EventLog, flt: EventFilter, limit: int) -> tuple[np.ndarray | None, int]:
        """(positions or None for all, number of rows shown) for positions below ``limit``."""
        start = self.todo(flt, limit)
        if start is not None:
            self.add(flt, start, limit, filter_rows(log, flt, limit, start))
        return self.result()

    def todo(self, flt: EventFilter, limit: int) -> int | None:
        """The first row that ``flt`` must still be run on to cover the rows below ``limit``
        (0: all of them, for a new filter); None when the rows are up to date. Settles at once
        what needs no filtering: no filter at all, or a lower limit (a replay moved back)."""
        if not flt.active():
            self.flt, self.rows, self.done = flt, None, limit
            return None
        if flt != self.flt or self.rows is None:
            return 0
        if limit < self.done:
            self.rows = self.rows[:np.searchsorted(self.rows, limit)]
            self.done = limit
        return self.done if limit > self.done else None

    def add(self, flt: EventFilter, start: int, limit: int, rows: np.ndarray) -> bool:
        """Take the rows of [start, limit) that pass ``flt``; False (and nothing taken) when they
        no longer fit: a range that does not continue the rows held."""
        if start == 0:
            self.flt, self.rows, self.done = flt, rows, limit
            return True
        if flt != self.flt or self.rows is None or start != self.done:
            return False
        self.rows = np.concatenate([self.rows, rows])
        self.done = limit
        return True

    def result(self) -> tuple[np.ndarray | None, int]:
        """(row indices or None for all, number of rows shown) as filtered so far."""
        return (None, self.done) if self.rows is None else (self.rows, len(self.rows))


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, list):
        if v and isinstance(v[0], tuple):  # a map
            return "{" + ",".join(f"{k}:{_value(x)}" for k, x in v) + "}"
        return "[" + ",".join(_value(x) for x in v[:6]) + (",…" if len(v) > 6 else "") + "]"
    return str(v)


def event_line(kind: str, row: dict) -> str:
    """One event as a line of the list: seq, epoch, kind, slot and seed, then its fields, as
    plain text (control characters made visible: it goes to the terminal as a segment, without
    rich's clean-up)."""
    payload = {k: v for k, v in row.items() if k not in ENVELOPE_NAMES}
    summary = " ".join(f"{k}={_value(v)}" for k, v in payload.items() if v not in (None, "", [], {}))
    where = " ".join(v for v in (row.get("slot"), row.get("seed")) if v)
    epoch = row.get("epoch")
    line = (f"{row['seq']:>8} e{epoch if epoch is not None else '-':<4} {kind:<19} "
            + (f"[{where}] " if where else "") + summary)
    return plain(line)


class EventList(ScrollView, can_focus=True):
    """A virtual list of events; Enter opens the highlighted event."""

    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup,ctrl+b", "page(-1)", "Page up", show=False),
        Binding("pagedown,ctrl+f", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "open", "Open event"),
    ]
    cursor = reactive(0)

    class Opened(Message):
        def __init__(self, row: int) -> None:
            super().__init__()
            self.row = row

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.events: EventLog | None = None
        self.rows: np.ndarray | None = None
        self.count = 0
        self._cache: dict[int, tuple[str, str]] = {}

    def set_rows(self, log: EventLog, rows: np.ndarray | None, count: int, follow: bool) -> None:
        """Show ``count`` rows (``rows``: their positions in ``log``, None for all); with
        ``follow``, new rows move the highlight to the last row."""
        if log is self.events and count == self.count and rows is self.rows:
            return
        self.events, self.rows, self.count = log, rows, count
        self._cache.clear()
        self.virtual_size = Size(self.size.width, count)
        if follow:
            self.go_last()
        else:
            self.cursor = min(self.cursor, max(0, count - 1))
        self.refresh()

    def go_last(self) -> None:
        """Highlight the last row and scroll to it (once the new virtual size is laid out: a
        scroll before that is clamped to the old size)."""
        self.cursor = max(0, self.count - 1)
        self.call_after_refresh(self._reveal)

    def table_row(self, i: int) -> int:
        return int(self.rows[i]) if self.rows is not None else i

    def _lines(self, start: int, stop: int) -> None:
        missing = [i for i in range(start, stop) if i not in self._cache]
        if not missing or self.events is None:
            return
        if len(self._cache) > 2000:
            self._cache.clear()
        for i in missing:
            kind, row = self.events.event(self.table_row(i))
            self._cache[i] = (event_line(kind, row), kind)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        i = int(self.scroll_offset.y) + y
        if i >= self.count:
            return Strip.blank(width)
        top = int(self.scroll_offset.y)
        self._lines(top, min(self.count, top + self.size.height))
        line, kind = self._cache.get(i, ("", ""))
        style = Style.parse(KIND_STYLES.get(kind, ""))
        if i == self.cursor:
            style += Style(reverse=True) if self.has_focus else Style(bgcolor="grey23")
        x = int(self.scroll_offset.x)
        return Strip([Segment(line[x:x + width].ljust(width), style)], width)

    def on_click(self, event) -> None:
        row = int(self.scroll_offset.y) + event.y
        if 0 <= row < self.count:
            self.cursor = row

    def watch_cursor(self, old: int, new: int) -> None:
        self.refresh()

    def action_move(self, delta: int) -> None:
        self.cursor = max(0, min(self.count - 1, self.cursor + delta))
        self._reveal()

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(1, self.size.height - 1))

    def action_jump(self, where: int) -> None:
        self.cursor = 0 if where == 0 else max(0, self.count - 1)
        self._reveal()

    def _reveal(self) -> None:
        top, h = int(self.scroll_offset.y), self.size.height
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + h:
            self.scroll_to(y=self.cursor - h + 1, animate=False)

    def action_open(self) -> None:
        if self.count:
            self.post_message(self.Opened(self.table_row(self.cursor)))


def event_fields(log: EventLog, position: int) -> tuple[dict, dict]:
    """The envelope fields (the kind among them) and the payload of one event."""
    kind, row = log.event(position)
    envelope = {"kind": kind, **{k: v for k, v in row.items() if k in ENVELOPE_NAMES}}
    return envelope, {k: v for k, v in row.items() if k not in ENVELOPE_NAMES}
