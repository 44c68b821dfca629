"""Log data for the dashboard: the runs of a log directory, each followed and folded once.

A ``RunStore`` is created by the app factory (no module-level state). It holds one ``RunEntry``
per run that a page has asked about. An entry follows its run directory with a
``RunFollower`` (byte offsets kept per stream, so a refresh reads only what was appended; a
format 1 log is read whole, once) and feeds a ``RunModel``: the run's events in one
``EventLog`` (shared by every client and scope, never copied), the live fold of the default
scope (rank 0, every environment), the ranks and environments, the torn tail and the corrupt
streams. A scope other than the default gets its own ``ScopedFold``, brought up to date when it
is next viewed (folding only the events it has not seen), and a replay (``ScopedReplay``) when
a page replays it. A lock per entry serialises the refresh and the readers of folded state.

``RunStore.prefetch`` reads and folds the newest runs in a daemon thread while the server starts:
it goes through the same entries and locks, so a page that asks for a run meanwhile waits for
that read (holding the entry's lock) instead of starting another, and then polls only what was
appended since.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from telemetry_schema.arrays import to_numpy
from telemetry_schema.eventlog import EventLog
from telemetry_schema.fold import RunState
from telemetry_schema.reader import LogError, RunFollower, stream_files
from telemetry_schema.rundir import is_run_dir, read_run, validate_run_id
from telemetry_schema.runmodel import RunModel, Scope, ScopedFold, ScopedReplay
from telemetry_schema.runs import RunSummary, run_files, summary_from_tally, summary_of
from telemetry_schema.summary import read_summary
from telemetry_schema.tables import KindTables
from telemetry_schema.v1 import v1_streams

from dashboard.selection import DEFAULT, Choices, RankAlerts, rank_alerts
from dashboard.settings import DashboardConfig

log = logging.getLogger(__name__)
PREFETCH_THREAD = "esper-dashboard-prefetch"


class RunNotFound(LookupError):
    """A run id that is not valid or names no run directory of the log directory."""


class PageActivity:
    """When a page last asked for a run, and how many runs are being read for pages now: the
    prefetch reads a further run only once pages have been quiet for a while. A page waiting for
    a run's lock (held by the prefetch's read) counts as asking until it is served."""

    def __init__(self, monotonic=time.monotonic) -> None:
        """``monotonic``: the clock that times the quiet (tests inject one)."""
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._busy = 0
        self._last = float("-inf")  # self.monotonic()

    def note(self) -> None:
        if threading.current_thread().name != PREFETCH_THREAD:
            with self._lock:
                self._last = self.monotonic()

    @contextmanager
    def asking(self):
        """Count the caller (a page's thread, not the prefetch) as asking while the block runs."""
        if threading.current_thread().name == PREFETCH_THREAD:
            yield
            return
        with self._lock:
            self._busy += 1
            self._last = self.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                self._last = self.monotonic()

    def quiet_s(self) -> float:
        """Seconds since a page last asked (0 while one is being served)."""
        with self._lock:
            return 0.0 if self._busy else self.monotonic() - self._last


class RunEntry:
    """One run: its follower, its run model, and a live fold and a replay per other scope viewed."""

    def __init__(self, run_id: str, run_dir: Path, config: DashboardConfig, clock=time.time,
                 activity: PageActivity | None = None) -> None:
        self.run_id, self.run_dir, self.config, self.clock = run_id, run_dir, config, clock
        self.activity = activity or PageActivity()
        self.lock = threading.RLock()
        self.follower = RunFollower(run_dir)
        self.model = RunModel()
        self.error: str | None = None
        """Why the run's log cannot be read at all (one line), once found."""
        self._v1_read = False  # a format 1 log, read whole once
        self._live: OrderedDict[Scope, ScopedFold] = OrderedDict()
        self._replays: OrderedDict[Scope, ScopedReplay] = OrderedDict()
        self._last_refresh = float("-inf")
        self._memo: OrderedDict = OrderedDict()  # recent built views, shared by clients
        self.reads = 0
        """Polls of the log that returned events (a finished run read once: 1)."""

    @property
    def log(self) -> EventLog:
        """Every event read so far, in the run's order."""
        return self.model.log

    @property
    def state(self) -> RunState:
        """The live state of the default scope (rank 0, every env): runs page, run status."""
        return self.model.fold.state

    @property
    def length(self) -> int:
        """Events read so far (every rank and env): the replay cursor's range."""
        return len(self.model.log)

    @property
    def corrupt(self) -> list[str]:
        """One line per stream found corrupt or refused (read no further)."""
        return self.model.corrupt

    def failure(self) -> str | None:
        """Why the run page cannot show this run: its log is unreadable, or every stream read so
        far is corrupt and not one event came out of them."""
        if self.error is not None:
            return self.error
        if self.model.corrupt and not self.length:
            return "; ".join(self.model.corrupt)
        return None

    @property
    def ended(self) -> bool:
        """Nothing more will come: a format 1 log read, or every stream closed and shown."""
        return self._v1_read or (self.follower.ended and not self.follower.pending)

    def refresh(self, force: bool = False) -> None:
        """Fold the events appended since the last refresh (at most every ``min_refresh_s``)."""
        with self.activity.asking(), self.lock:
            now = time.monotonic()
            if self.error is not None or self.ended:
                return  # a broken log stays broken; a closed run gets no more events
            if not force and now - self._last_refresh < self.config.min_refresh_s:
                return
            self._last_refresh = now
            try:
                new = self._poll()
            except LogError as exc:
                self.error = str(exc)
                return
            except Exception as exc:  # a log the reader cannot make sense of: this run only
                self.error = f"{self.run_dir}: unreadable log ({type(exc).__name__}: {exc})"
                return
            if new.num_rows:
                self.reads += 1
            try:
                self.model.ingest(new, new.torn_bytes, self.ended, self.clock(), new.corrupt)
            except Exception as exc:  # never unpickled or evaluated: only the fold can fail here
                self.error = f"{self.run_dir}: cannot fold its events ({type(exc).__name__}: {exc})"

    def _poll(self) -> KindTables:
        """The new events, with the torn bytes and corrupt streams as of now."""
        if not self.follower.streams and not stream_files(self.run_dir) and v1_streams(self.run_dir):
            got = read_run(self.run_dir)  # format 1: read whole, once
            self._v1_read = True
            return got
        # A corrupt stream never delivers the rest of its flushes: the other kinds' batches of
        # those flushes are shown as they are rather than held back until ``hold_s``.
        got = self.follower.poll(final=bool(self.follower.corrupt))
        if self.follower.corrupt and self.follower.pending:  # found corrupt by this poll
            got = got.extended(self.follower.poll(final=True))
        got.torn_bytes, got.corrupt = self.follower.torn_bytes, self.follower.corrupt
        return got

    def _lru(self, cache: OrderedDict, scope: Scope, make):
        """``cache[scope]`` (made on first use; the least recently used dropped beyond ``max_folds``)."""
        got = cache.get(scope)
        if got is None:
            got = cache[scope] = make()
            while len(cache) > max(1, self.config.max_folds):
                cache.popitem(last=False)
        cache.move_to_end(scope)
        return got

    def state_at(self, cursor: int | None, scope: Scope = DEFAULT) -> RunState:
        """``scope``'s state after the first ``cursor`` events of the log (None or past the end:
        live). A fold that fails marks the run broken, like a failed read."""
        with self.lock:
            log_ = self.model.log
            try:
                if cursor is None or cursor >= len(log_):
                    if scope == DEFAULT:
                        return self.model.fold.state
                    fold = self._lru(self._live, scope, lambda: ScopedFold(scope))
                    if fold.rows < len(log_):
                        fold.update(log_.slice(fold.rows, len(log_)))
                    return fold.state
                replay = self._lru(self._replays, scope, lambda: ScopedReplay(log_, cursor, scope))
                replay.seek(cursor)
                return replay.state
            except Exception as exc:
                self.error = f"{self.run_dir}: cannot fold its events ({type(exc).__name__}: {exc})"
                return RunState()

    def replay_of(self, scope: Scope = DEFAULT) -> ScopedReplay:
        """The replay of ``scope`` (made at the start on first use): its seek targets."""
        with self.lock:
            log_ = self.model.log
            return self._lru(self._replays, scope, lambda: ScopedReplay(log_, 0, scope))

    def choices(self) -> Choices:
        """The ranks and environments this run offers to choose from (as of a refresh: a
        browser's choice is checked against the log as it is now, not as first read)."""
        self.refresh()
        with self.lock:
            return Choices.of(self.model)

    def finished_ranks(self) -> set[int]:
        """Ranks that wrote their run_finished."""
        table = self.model.log.tables.table("run_finished")
        return set(np.unique(to_numpy(table.column("rank"))).tolist()) if table.num_rows else set()

    def alerts(self) -> RankAlerts:
        """Divergent, silent and missing ranks (empty for a run of one rank)."""
        with self.lock:
            return rank_alerts(self.state, self.finished_ranks(), self.config.silent_rank_s)

    def memo(self, key, build):
        """``build()``'s result for ``key``, reused while the key (scope, events, cursor,
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
    def view(self, cursor: int | None = None, scope: Scope = DEFAULT):
        """Refresh, then hold the lock while the caller reads ``scope``'s state as of ``cursor``."""
        self.refresh()
        with self.lock:
            yield self.state_at(cursor, scope)

    def status(self) -> str:
        """The run's status now (``run_status`` of the live default fold), or 'error'."""
        with self.lock:
            return "error" if self.failure() else self.model.status(self.clock())

    def summary(self) -> RunSummary:
        """The runs-page row: ``runs.summary_of`` the live default fold, as ``summarize`` makes it."""
        with self.view():
            row = summary_of(self.run_dir, self.state, self.clock(), self.model.corrupt)
            failure = self.failure()
            if failure is not None:  # as esper-tui's picker shows it
                row.status, row.error = "error", failure
            return row


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
        self.activity = PageActivity(self.monotonic)

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
            self.activity.note()  # a page asks (the prefetch's own calls are not counted)
            entry = self._entries.get(run_id)
            if entry is None:
                entry = self._entries[run_id] = RunEntry(run_id, self.logdir / run_id, self.config, self.clock,
                                                         self.activity)
            return entry

    def newest(self, limit: int) -> list[str]:
        """The ``limit`` runs most recently written to (newest first), by their files' mtimes."""
        def written(run_id: str) -> float:
            run_dir = self.logdir / run_id
            try:
                return max(p.stat().st_mtime for p in [run_dir, *run_files(run_dir)])
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
                while i and (quiet := self.activity.quiet_s()) < self.config.prefetch_idle_s:
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
        """One row per run (``runs.summarize``'s row); a run that cannot be summarised becomes an
        'error' row. A run this store does not follow yet is listed from the small summary file
        its writer keeps current (no log is read: a thousand runs list in well under a second,
        and listing creates no entry); a run without one, or one a page has opened, from the
        log this store follows (incrementally, corrupt streams included)."""
        now = self.clock()
        rows = []
        for run_id in self.run_ids():
            try:
                rows.append(self._summary(run_id, now))
            except RunNotFound as exc:  # e.g. a symlink out of the log directory
                rows.append(RunSummary(self.logdir / run_id, run_id, status="error", error=str(exc)))
        return rows

    def _summary(self, run_id: str, now: float) -> RunSummary:
        run_id = self.resolve(run_id)
        with self._lock:
            followed = run_id in self._entries
        if not followed:
            tally = read_summary(self.logdir / run_id)
            if tally is not None and tally.run_id:
                return summary_from_tally(self.logdir / run_id, tally, now)
        return self.entry(run_id).summary()


def _valid(name: str) -> bool:
    try:
        validate_run_id(name)
        return True
    except ValueError:
        return False
