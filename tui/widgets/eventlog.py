"""The event log: every event of the run, filtered by kind, slot and text, drawn lazily.

Only the rows on screen are ever turned into Python objects, so a log of millions of events
scrolls as fast as a short one; filters are vectorised Arrow compute over the whole table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from telemetry_schema.arrays import codes, rows_equal, take_rows, to_numpy
from telemetry_schema.schema import ENVELOPE_NAMES
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
    rank: int | None = None
    """Only this rank's events (set from the chosen rank of a multi-rank run)."""
    env: int | None = None
    """Only this environment's events (set from the chosen env of a PPO run)."""

    def active(self) -> bool:
        return bool(self.kind or self.slot or self.text) or self.rank is not None or self.env is not None


def _match(arr, text: str) -> np.ndarray:
    hit = pc.match_substring(arr, text, ignore_case=True)
    return to_numpy(pc.and_kleene(pc.is_valid(hit), hit))  # a null string: no match


def _value_rows(column) -> dict[str | None, np.ndarray]:
    """Row indices of each distinct value of a low-cardinality string column."""
    enc = pc.dictionary_encode(column).combine_chunks()
    idx = codes(enc)
    return {v: np.flatnonzero(idx == i) for i, v in enumerate(enc.dictionary.to_pylist())}


def text_hits(table: pa.Table, text: str) -> np.ndarray:
    """Rows where ``text`` occurs (case-insensitive) in the envelope's kind, slot or seed, or in
    any string (or list of strings) field of the event's payload. Envelope columns are matched
    on their few distinct values, and each kind's payload on that kind's rows only."""
    mask = np.zeros(table.num_rows, bool)
    needle = text.lower()
    for name in ("slot", "seed"):
        for value, rows in _value_rows(table.column(name)).items():
            if value is not None and needle in value.lower():
                mask[rows] = True
    for kind, rows in _value_rows(table.column("kind")).items():
        if kind is None:
            continue
        if needle in kind.lower():
            mask[rows] = True
        if kind not in table.column_names or not len(rows):
            continue
        subs = [f for f in table.schema.field(kind).type if pa.types.is_string(f.type)
                or (pa.types.is_list(f.type) and pa.types.is_string(f.type.value_type))]
        if not subs:
            continue
        col = take_rows(table.select([kind]), rows).column(kind).combine_chunks()
        for sub in subs:
            values = pc.struct_field(col, sub.name)
            if pa.types.is_string(sub.type):
                mask[rows[_match(values, text)]] = True
            else:
                parents = to_numpy(pc.list_parent_indices(values))
                mask[rows[parents[_match(pc.list_flatten(values), text)]]] = True
    return mask


def filter_rows(table: pa.Table, flt: EventFilter, limit: int, start: int = 0) -> np.ndarray | None:
    """Row indices in [start, limit) that pass the filter; None when every row does."""
    if not flt.active():
        return None
    table = table.slice(start, max(0, limit - start))
    mask = np.ones(table.num_rows, bool)
    for column in ("kind", "slot"):
        value = getattr(flt, column)
        if value:
            hit = np.zeros(table.num_rows, bool)
            hit[rows_equal(table.column(column), value)] = True
            mask &= hit
    for column in ("rank", "env"):
        if getattr(flt, column) is not None:
            mask &= to_numpy(table.column(column)) == getattr(flt, column)
    if flt.text:
        mask &= text_hits(table, flt.text)
    return np.flatnonzero(mask) + start


class FilteredRows:
    """The filtered row indices of a growing table, extended incrementally.

    ``update`` filters here; a caller that filters elsewhere (a worker) asks ``todo`` which rows
    still need filtering and hands the result back to ``add``."""

    def __init__(self) -> None:
        self.flt = EventFilter()
        self.done = 0
        self.rows: np.ndarray | None = None

    def update(self, table: pa.Table, flt: EventFilter, limit: int) -> tuple[np.ndarray | None, int]:
        """(row indices or None for all, number of rows shown) for rows below ``limit``."""
        start = self.todo(flt, limit)
        if start is not None:
            self.add(flt, start, limit, filter_rows(table, flt, limit, start))
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


def event_line(row: dict) -> str:
    """One event as a line of plain text (control characters made visible: it goes to the
    terminal as a segment, without rich's clean-up)."""
    payload = row.get(row["kind"]) or {}
    summary = " ".join(f"{k}={_value(v)}" for k, v in payload.items() if v not in (None, "", [], {}))
    where = " ".join(v for v in (row["slot"], row["seed"]) if v)
    line = f"{row['seq']:>8} e{row['epoch']:<4} {row['kind']:<19} " + (f"[{where}] " if where else "") + summary
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
        self.table: pa.Table | None = None
        self.rows: np.ndarray | None = None
        self.count = 0
        self._cache: dict[int, tuple[str, str]] = {}

    def set_rows(self, table: pa.Table, rows: np.ndarray | None, count: int, follow: bool) -> None:
        same = table is self.table and count == self.count and rows is self.rows
        if same:
            return
        self.table, self.rows, self.count = table, rows, count
        self._cache.clear()
        self.virtual_size = Size(self.size.width, count)
        if follow:
            self.cursor = max(0, count - 1)
            self.scroll_to(y=max(0, count - self.size.height), animate=False)
        else:
            self.cursor = min(self.cursor, max(0, count - 1))
        self.refresh()

    def table_row(self, i: int) -> int:
        return int(self.rows[i]) if self.rows is not None else i

    def _lines(self, start: int, stop: int) -> None:
        missing = [i for i in range(start, stop) if i not in self._cache]
        if not missing or self.table is None:
            return
        if len(self._cache) > 2000:
            self._cache.clear()
        rows = pa.concat_tables([self.table.slice(self.table_row(i), 1) for i in missing])
        # a line has no wall time, and zoned datetimes would import pandas (0.3 s) on first show
        rows = rows.drop_columns(["wall_time"])
        for i, row in zip(missing, rows.to_pylist()):
            self._cache[i] = (event_line(row), row["kind"])

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


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def envelope_and_payload(table: pa.Table, row: int) -> tuple[dict, dict]:
    """The envelope fields and the payload of one event, as Python values (the wall time a UTC
    datetime, made here: pyarrow's zoned datetimes import pandas, 0.3 s, on first use)."""
    one = table.slice(row, 1)
    rec = one.set_column(one.schema.get_field_index("wall_time"), "wall_time",
                         pc.cast(one.column("wall_time"), pa.int64())).to_pylist()[0]
    if rec["wall_time"] is not None:
        rec["wall_time"] = _EPOCH + timedelta(microseconds=rec["wall_time"])
    return {k: rec[k] for k in ENVELOPE_NAMES}, dict(rec.get(rec["kind"]) or {})
