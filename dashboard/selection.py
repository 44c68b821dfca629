"""Which stream of a run the run page shows: one rank, and one environment or all of them.

A distributed run has one event stream per rank; a PPO run has K environments in one stream.
A ``Selection`` names what the page folds (``Fold(rank, env)``); ``Choices`` are what a run
offers, and turn what the browser sends (dropdown values, URL query) into a checked
selection. ``FoldCursor`` is one selection's fold and how many rows of the run's log it has
folded, so a fold catches up with a growing log without holding a copy of it. ``rank_alerts``
says when ranks disagree or fall silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

import pyarrow as pa
import pyarrow.compute as pc

from telemetry_schema.fold import Fold, RunState
from telemetry_schema.replay import Replay


class BadSelection(ValueError):
    """A rank or environment that the run does not have (or that is not a number at all)."""


@dataclass(frozen=True)
class Selection:
    rank: int = 0
    """The rank whose stream is folded."""
    env: int | None = None
    """The environment whose events are folded (None: every environment)."""

    @property
    def run_scope(self) -> Selection:
        """The same rank with every environment: where the run-global events (PPO updates,
        run start and end) live, since those carry env 0 whatever env is viewed."""
        return Selection(self.rank, None)

    def query(self) -> str:
        """The URL query of this selection ('' for the default one)."""
        params = {}
        if self.rank != 0:
            params["rank"] = self.rank
        if self.env is not None:
            params["env"] = self.env
        return "?" + urlencode(params) if params else ""

    def key(self) -> list:
        """A JSON-able identity (kept in the browser's shipped-figures record)."""
        return [self.rank, self.env]


DEFAULT = Selection()
ALL_ENVS = "all"


def _as_int(value) -> int:
    """A rank or env index as the browser sends it: an int, or a short string of digits."""
    if isinstance(value, bool):
        raise BadSelection(f"not an index: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and value.isascii() and len(value) <= 6:
        return int(value)
    raise BadSelection(f"not an index: {value!r}")


@dataclass(frozen=True)
class Choices:
    """The ranks and environments a run offers."""

    ranks: tuple[int, ...] = (0,)
    envs: tuple[int, ...] = (0,)

    @property
    def multi_rank(self) -> bool:
        return len(self.ranks) > 1

    @property
    def multi_env(self) -> bool:
        return len(self.envs) > 1

    def parse(self, rank, env) -> Selection:
        """A selection from browser values; raises ``BadSelection`` for anything the run lacks."""
        r = 0 if rank is None else _as_int(rank)
        if r not in self.ranks:
            raise BadSelection(f"no rank {r} in this run")
        if env is None or env == ALL_ENVS:
            return Selection(r, None)
        e = _as_int(env)
        if e not in self.envs or not self.multi_env:
            raise BadSelection(f"no environment {e} to choose in this run")
        return Selection(r, e)

    def from_query(self, search: str | None) -> Selection:
        """The selection of a URL query; a value the run does not have is ignored (default)."""
        params = parse_qs((search or "").lstrip("?"))
        rank, env = params.get("rank", [None])[-1], params.get("env", [None])[-1]
        try:
            sel = self.parse(rank, None)
        except BadSelection:
            sel = DEFAULT
        try:
            return self.parse(sel.rank, env)
        except BadSelection:
            return sel


class FoldCursor:
    """A ``Fold`` of one selection over the first ``rows`` rows of a run's log.

    It is a ``Replay`` of the log (which references the polled tables, never copies them):
    moving forward folds only the rows in between, moving back restarts from the replay's
    nearest checkpoint.
    """

    def __init__(self, sel: Selection) -> None:
        self.sel = sel
        self._replay: Replay | None = None
        self._empty = self._new_fold()

    def _new_fold(self) -> Fold:
        return Fold(rank=self.sel.rank, env=self.sel.env)

    @property
    def fold(self) -> Fold:
        return self._replay.fold if self._replay is not None else self._empty

    @property
    def rows(self) -> int:
        return self._replay.cursor if self._replay is not None else 0

    def seek(self, table: pa.Table, rows: int) -> RunState:
        rows = max(0, min(int(rows), table.num_rows))
        if self._replay is None:
            self._replay = Replay(table, rows, fold_factory=self._new_fold)
        else:
            if table is not self._replay.table:  # the run's table grew or was rechunked
                self._replay.rebase(table)
            self._replay.seek(rows)
        return self.fold.state


class StreamIndex:
    """What the fold does not keep about a run's streams: the env indices seen, and the ranks
    that wrote their run_finished (a rank that ended is not silent)."""

    def __init__(self) -> None:
        self.envs: set[int] = set()
        self.finished: set[int] = set()

    def update(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self.envs.update(pc.unique(table.column("env")).to_pylist())
        ended = pc.equal(table.column("kind"), "run_finished")
        if pc.any(ended).as_py():
            self.finished.update(pc.unique(pc.filter(table.column("rank"), ended)).to_pylist())

    def choices(self, state: RunState) -> Choices:
        """Ranks: those the run started with and those seen; envs: likewise."""
        ranks = set(range(max(1, state.world_size))) | set(state.ranks.last_wall)
        envs = set(range(max(1, state.num_envs))) | self.envs
        return Choices(tuple(sorted(ranks)), tuple(sorted(envs)))


@dataclass(frozen=True)
class RankAlerts:
    """Why the ranks of a distributed run cannot be trusted to agree."""

    divergence: str | None = None
    """The first lifecycle move where a rank disagrees with rank 0 (``RankCheck``)."""
    silent: tuple[tuple[int, float], ...] = ()
    """(rank, seconds) for each unfinished rank whose last event is that far behind the newest."""
    missing: tuple[int, ...] = ()
    """Ranks the run started with that have written nothing at all."""

    def __bool__(self) -> bool:
        return bool(self.divergence or self.silent or self.missing)


def rank_alerts(state: RunState, finished: set[int], silent_after: float) -> RankAlerts:
    """The alerts of a run folded with every rank's events seen (``state.ranks``).

    Silence is measured against the newest event of any rank, not the clock, so a rank that
    died mid-run is still called out when the whole run is long over.
    """
    check = state.ranks
    if check.count == 0:
        return RankAlerts()
    newest = max(check.last_wall.values())
    silent = tuple((r, newest - t) for r, t in sorted(check.last_wall.items())
                   if r not in finished and newest - t > silent_after)
    missing = tuple(r for r in range(state.world_size) if r not in check.last_wall)
    return RankAlerts(check.divergence, silent, missing)
