"""Log data for the dashboard: the runs of a log directory, each with a cached follower and fold.

A ``RunStore`` is created by the app factory (no module-level state). It holds one ``RunEntry``
per run that a page has asked about; an entry's ``RunFollower`` keeps its byte offsets, so a
refresh reads only the bytes appended since the last one. The entry keeps the polled Arrow
tables (one copy of the log, shared) and one fold per selection (rank, env) that a page has
viewed: the default selection's fold is brought up to date on every refresh, the others when
they are next viewed, each folding only the rows it has not seen. A lock per entry serialises
the refresh and the readers of the folded state.

``RunStore.prefetch`` reads and folds the newest runs in a daemon thread while the server starts:
it goes through the same entries and locks, so a page that asks for a run meanwhile waits for
that read (holding the entry's lock) instead of starting another, and then polls only what was
appended since.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa

from telemetry_schema.fold import RunState
from telemetry_schema.reader import LogError
from telemetry_schema.rundir import RunFollower, is_run_dir, read_manifest, stream_paths, validate_run_id

from dashboard.selection import DEFAULT, Choices, FoldCursor, RankAlerts, Selection, StreamIndex, rank_alerts
from dashboard.settings import DashboardConfig

log = logging.getLogger(__name__)
PREFETCH_THREAD = "esper-dashboard-prefetch"


class RunNotFound(LookupError):
    """A run id that is not valid or names no run directory of the log directory."""


@dataclass
class RunSummary:
    """One row of the runs page."""

    run_id: str
    status: str
    task: str
    started: float | None
    epochs: int
    best_val_acc: float | None
    fossilized: int
    pruned: int
    panics: int
    events: int
    error: str | None = None


def run_status(state: RunState, now: float) -> str:
    """The runs-page status: 'finished', 'running', 'stalled', 'crashed' (or 'waiting')."""
    if state.end_status in ("failed",):
        return "crashed"
    return state.status(now)


class RunEntry:
    """One run: its follower, the events read so far, and a live fold and a replay cursor per
    selection viewed."""

    def __init__(self, run_id: str, run_dir: Path, config: DashboardConfig, clock=time.time) -> None:
        self.run_id, self.run_dir, self.config, self.clock = run_id, run_dir, config, clock
        self.lock = threading.RLock()
        self.follower = RunFollower(run_dir)
        self.index = StreamIndex()
        self.error: str | None = None
        self._tables: list[pa.Table] = []
        self._rows = 0
        self._live: OrderedDict[Selection, FoldCursor] = OrderedDict({DEFAULT: FoldCursor(DEFAULT)})
        self._replays: OrderedDict[Selection, FoldCursor] = OrderedDict()
        self._last_refresh = float("-inf")
        self._memo: OrderedDict = OrderedDict()  # recent built views, shared by clients
        self.reads = 0
        """Polls of the log that returned events (a finished run read once: 1)."""

    @property
    def state(self) -> RunState:
        """The live state of the default selection (rank 0, every env): runs page, run status."""
        return self._live[DEFAULT].fold.state

    @property
    def length(self) -> int:
        """Rows of the merged log read so far (every rank and env): the replay cursor's range."""
        return self._rows

    def refresh(self, force: bool = False) -> None:
        """Fold the events appended since the last refresh (at most every ``min_refresh_s``)."""
        with self.lock:
            now = time.monotonic()
            if self.error is not None or self.follower.ended:
                return  # a broken log stays broken; a closed stream gets no more events
            if not force and now - self._last_refresh < self.config.min_refresh_s:
                return
            self._last_refresh = now
            try:
                new = self.follower.poll()
            except LogError as exc:
                self.error = str(exc)
                return
            except Exception as exc:  # a log the fold cannot make sense of: this run only
                self.error = f"{self.run_dir}: unreadable log ({type(exc).__name__}: {exc})"
                return
            if new.num_rows:
                self.reads += 1
                self._tables.append(new)
                self._rows += new.num_rows
                self._advance(self._live, DEFAULT, self._rows)
                if self.error is None:  # the fold took these columns: the index can too
                    self.index.update(new)

    def table(self) -> pa.Table:
        """Every event read so far, in log order."""
        with self.lock:
            if len(self._tables) > 1:
                table = pa.concat_tables(self._tables)
                if table.column(0).num_chunks > self.config.max_chunks:  # one chunk per poll adds up
                    table = table.combine_chunks()
                self._tables[:] = [table]
            return self._tables[0] if self._tables else pa.table({})

    def _advance(self, cursors: OrderedDict, sel: Selection, rows: int) -> RunState:
        """``sel``'s fold in ``cursors`` (made on first use, least recently used dropped) moved to
        ``rows`` rows of the log. A fold that fails marks the run broken, like a failed read."""
        cursor = cursors.get(sel)
        if cursor is None:
            cursor = cursors[sel] = FoldCursor(sel)
            while len(cursors) > max(2, self.config.max_folds):
                oldest = next(s for s in cursors if s != DEFAULT)  # the runs page needs the default
                del cursors[oldest]
        cursors.move_to_end(sel)
        try:
            return cursor.seek(self.table(), rows) if self._rows else cursor.fold.state
        except Exception as exc:  # never unpickled or evaluated: only the fold can fail here
            self.error = f"{self.run_dir}: cannot fold its events ({type(exc).__name__}: {exc})"
        return cursor.fold.state

    def state_at(self, cursor: int | None, sel: Selection = DEFAULT) -> RunState:
        """``sel``'s state after the first ``cursor`` rows of the log (None or past the end: live)."""
        with self.lock:
            if cursor is None or cursor >= self._rows:
                return self._advance(self._live, sel, self._rows)
            return self._advance(self._replays, sel, cursor)

    def choices(self) -> Choices:
        """The ranks and environments this run offers to choose from (as of a refresh: a
        browser's choice is checked against the log as it is now, not as first read)."""
        self.refresh()
        with self.lock:
            return self.index.choices(self.state)

    def alerts(self) -> RankAlerts:
        """Divergent, silent and missing ranks (empty for a run of one rank)."""
        with self.lock:
            return rank_alerts(self.state, self.index.finished, self.config.silent_rank_s)

    def memo(self, key, build):
        """``build()``'s result for ``key``, reused while the key (selection, events, cursor,
        options) holds."""
        with self.lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
            value = self._memo[key] = build()
            while len(self._memo) > self.config.memo_size:
                self._memo.popitem(last=False)
            return value

    @contextmanager
    def view(self, cursor: int | None = None, sel: Selection = DEFAULT):
        """Refresh, then hold the lock while the caller reads ``sel``'s state as of ``cursor``."""
        self.refresh()
        with self.lock:
            yield self.state_at(cursor, sel)

    def summary(self) -> RunSummary:
        with self.view() as st:
            manifest = read_manifest(self.run_dir)
            manifest = manifest if isinstance(manifest, dict) else {}  # run.json may be null, a list, ...
            task = manifest.get("task")
            return RunSummary(
                run_id=self.run_id, status="error" if self.error else run_status(st, self.clock()),
                task=st.task or (task if isinstance(task, str) else ""),
                started=st.started_wall or _time(manifest.get("started_at")) or _first_wall(st),
                epochs=st.epochs.length, best_val_acc=st.best_val_acc(),
                fossilized=st.seeds_fossilized(), pruned=st.seeds_pruned(), panics=st.panics(),
                events=st.events, error=self.error)


def _error_summary(run_id: str, message: str) -> RunSummary:
    return RunSummary(run_id, "error", "", None, 0, None, 0, 0, 0, 0, error=message)


def _time(value) -> float | None:
    """A Unix time from run.json: a finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _first_wall(state: RunState) -> float | None:
    walls = state.batches["wall"]
    return float(walls[0]) if len(walls) else None


class RunStore:
    """The runs of one log directory; entries are created on first use and then cached."""

    def __init__(self, logdir: str | Path, config: DashboardConfig | None = None, clock=time.time,
                 monotonic=time.monotonic, sleep=time.sleep) -> None:
        """``clock`` gives the wall time (run status); ``monotonic`` and ``sleep`` time the
        prefetch's wait for an idle server (tests inject both)."""
        self.logdir = Path(logdir).resolve()
        self.config = config or DashboardConfig()
        self.clock, self.monotonic, self.sleep = clock, monotonic, sleep
        self._entries: dict[str, RunEntry] = {}
        self._lock = threading.Lock()
        self._asked = float("-inf")  # self.monotonic() of the last run a page asked for

    def run_ids(self) -> list[str]:
        """Run directories directly under the log directory (rescanned on every call)."""
        if not self.logdir.is_dir():
            return []
        return sorted(p.name for p in self.logdir.iterdir() if _valid(p.name) and is_run_dir(p))

    def resolve(self, run_id: str) -> str:
        """A URL's run id, decoded and checked: it must name a run directory of the log directory."""
        run_id = unquote(run_id or "")
        try:
            validate_run_id(run_id)
        except ValueError:
            raise RunNotFound(f"invalid run id: {run_id!r}") from None
        path = (self.logdir / run_id).resolve()
        if path.parent != self.logdir or not is_run_dir(path):
            raise RunNotFound(f"no run {run_id!r} in the log directory")
        return run_id

    def entry(self, run_id: str) -> RunEntry:
        run_id = self.resolve(run_id)
        with self._lock:
            if threading.current_thread().name != PREFETCH_THREAD:  # a page asks
                self._asked = self.monotonic()
            entry = self._entries.get(run_id)
            if entry is None:
                entry = self._entries[run_id] = RunEntry(run_id, self.logdir / run_id, self.config, self.clock)
            return entry

    def newest(self, limit: int) -> list[str]:
        """The ``limit`` runs most recently written to (newest first), by their files' mtimes."""
        def written(run_id: str) -> float:
            run_dir = self.logdir / run_id
            try:
                return max(p.stat().st_mtime for p in [run_dir, *stream_paths(run_dir)])
            except OSError:  # removed meanwhile
                return float("-inf")
        return sorted(self.run_ids(), key=written, reverse=True)[:max(0, limit)]

    def prefetch(self, limit: int | None = None, then=None) -> threading.Thread:
        """Read and fold the ``limit`` newest runs (default ``config.prefetch_runs``), one after the
        other in a daemon thread, then call ``then(run_id)`` for each (e.g. build its first
        charts). The newest is read at once; each other one once no page has asked for a run for
        ``config.prefetch_idle_s`` (so it never competes with a page being opened or polled). A
        run that fails is logged and skipped: the next is still read."""
        limit = self.config.prefetch_runs if limit is None else limit

        def work() -> None:
            try:
                run_ids = self.newest(limit)
            except OSError:  # the log directory itself unreadable: pages will say so
                log.warning("prefetch: cannot list %s", self.logdir, exc_info=True)
                return
            for i, run_id in enumerate(run_ids):
                while i and (quiet := self.monotonic() - self._asked) < self.config.prefetch_idle_s:
                    self.sleep(self.config.prefetch_idle_s - quiet)
                try:
                    self.entry(run_id).refresh(force=True)  # a broken log sets the entry's error
                    if then is not None:
                        then(run_id)
                except Exception:  # e.g. removed meanwhile: the page will say so, the others still load
                    log.warning("prefetch of run %r failed", run_id, exc_info=True)

        thread = threading.Thread(target=work, name=PREFETCH_THREAD, daemon=True)
        thread.start()
        return thread

    def summaries(self) -> list[RunSummary]:
        """One summary per run; a run that cannot be summarised becomes an 'error' row."""
        rows = []
        for run_id in self.run_ids():
            try:
                rows.append(self.entry(run_id).summary())
            except RunNotFound as exc:  # e.g. a symlink out of the log directory
                rows.append(_error_summary(run_id, str(exc)))
        return rows


def _valid(name: str) -> bool:
    try:
        validate_run_id(name)
        return True
    except ValueError:
        return False
