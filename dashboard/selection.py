"""Which stream of a run the run page shows: a ``Scope`` (one rank, one environment or all).

A distributed run has one event stream per rank; a PPO run has K environments in one stream.
The scope is ``telemetry_schema.runmodel.Scope``, the one both viewers fold and replay.
``Choices`` are the ranks and environments a run offers (as ``RunModel`` counts them), and
turn what the browser sends (dropdown values, URL query) into a checked scope. ``rank_alerts``
says when ranks disagree or fall silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from telemetry_schema.fold import RunState
from telemetry_schema.runmodel import RankDivergence, RunModel, Scope, divergences

DEFAULT = Scope()
ALL_ENVS = "all"


class BadSelection(ValueError):
    """A rank or environment that the run does not have (or that is not a number at all)."""


def scope_query(scope: Scope) -> str:
    """The URL query of a scope ('' for the default one)."""
    params = {}
    if scope.rank != 0:
        params["rank"] = scope.rank
    if scope.env is not None:
        params["env"] = scope.env
    return "?" + urlencode(params) if params else ""


def scope_key(scope: Scope) -> list:
    """A JSON-able identity (kept in the browser's shipped-figures record)."""
    return [scope.rank, scope.env]


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

    @classmethod
    def of(cls, model: RunModel) -> Choices:
        """What a run model offers: the ranks and envs seen in its events or announced by its start."""
        return cls(tuple(model.ranks) or (0,), tuple(model.envs) or (0,))

    @property
    def multi_rank(self) -> bool:
        return len(self.ranks) > 1

    @property
    def multi_env(self) -> bool:
        return len(self.envs) > 1

    def parse(self, rank, env) -> Scope:
        """A scope from browser values; raises ``BadSelection`` for anything the run lacks."""
        r = 0 if rank is None else _as_int(rank)
        if r not in self.ranks:
            raise BadSelection(f"no rank {r} in this run")
        if env is None or env == ALL_ENVS:
            return Scope(r, None)
        e = _as_int(env)
        if e not in self.envs or not self.multi_env:
            raise BadSelection(f"no environment {e} to choose in this run")
        return Scope(r, e)

    def from_query(self, search: str | None) -> Scope:
        """The scope of a URL query; a value the run does not have is ignored (default)."""
        params = parse_qs((search or "").lstrip("?"))
        rank, env = params.get("rank", [None])[-1], params.get("env", [None])[-1]
        try:
            scope = self.parse(rank, None)
        except BadSelection:
            scope = DEFAULT
        try:
            return self.parse(scope.rank, env)
        except BadSelection:
            return scope


@dataclass(frozen=True)
class RankAlerts:
    """Why the ranks of a distributed run cannot be trusted to agree."""

    divergences: tuple[RankDivergence, ...] = ()
    """Each rank whose lifecycle moves differ from rank 0's, at its first differing move."""
    silent: tuple[tuple[int, float], ...] = ()
    """(rank, seconds) for each unfinished rank whose last event is that far behind the newest."""
    missing: tuple[int, ...] = ()
    """Ranks the run started with that have written nothing at all."""

    def __bool__(self) -> bool:
        return bool(self.divergences or self.silent or self.missing)


def rank_alerts(state: RunState, finished: set[int], silent_after: float) -> RankAlerts:
    """The alerts of a run folded with every rank's events seen (``state.ranks``); ``finished``:
    the ranks that wrote their run_finished (a rank that ended is not silent).

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
    return RankAlerts(tuple(divergences(check)), silent, missing)
