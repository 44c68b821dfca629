"""One run as both viewers show it: its events, the scope shown, the live state and a replay.

No Textual and no Dash here: ``esper-tui`` and ``esper-dashboard`` both feed a ``RunModel``
with polled events and render what it says. It holds every event read so far (an
``EventLog``: each kind's Arrow tables, never copied), the fold of the chosen ``Scope``
(rank, environment), an optional replay cursor over the same events, and answers where a
replay move leads. Refolds and far seeks are plain calls a viewer may run off its UI thread
(``is_cheap`` and ``is_small`` say when that is worth it).

A distributed run has one stream per rank; a PPO run writes its K environments into one
stream, each event tagged with its ``env``. Some events describe the whole run whatever
environment is chosen (run start and end, heartbeats: no env at all; the PPO learner's updates
and scalars: env 0), so with an environment chosen the model also folds the whole rank and takes
those facts (``RUN_WIDE``) from it.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from telemetry_schema.arrays import to_numpy
from telemetry_schema.eventlog import EventLog
from telemetry_schema.fold import Fold, RankCheck, RunState, SlotState
from telemetry_schema.replay import Replay, seek_position
from telemetry_schema.status import run_status
from telemetry_schema.tables import KindTables

SYNC_EVENTS = 50_000
"""Seeks and refolds over at most this many events are cheap enough for a UI thread."""
SPEEDS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536)
"""Replay speeds, in events per play tick."""
RATE_WINDOW_S = 5.0
TARGET_WORDS = MappingProxyType({"panic": "panic", "rollback": "rollback", "gate_failure": "gate failure",
                                 "stage_change": "stage change", "epoch": "epoch end"})
"""The seek targets in words, for a viewer's 'no later panic'."""
RUN_WIDE = ("run_id", "task", "topology", "config", "host_params", "device", "world_size", "num_envs",
            "heartbeat_s", "planned_epochs", "versions", "started_wall", "end_status", "end_reason", "last_wall",
            "last_progress_wall", "ppo", "head_entropy", "ranks")
"""RunState fields an environment's view takes from its rank's whole fold."""


@dataclass(frozen=True)
class Scope:
    """One rank (0 for a single-process run) and one environment (None: every environment)."""

    rank: int = 0
    env: int | None = None


def env_view(env: RunState, run: RunState) -> RunState:
    """An environment's state with the run-wide facts of its rank (a shallow copy: no data copied)."""
    slot_ids = list(run.slot_ids) + [s for s in env.slot_ids if s not in run.slot_ids]
    slots = {sid: env.slots.get(sid) or SlotState(sid) for sid in slot_ids}
    return dataclasses.replace(env, slot_ids=slot_ids, slots=slots, scalars={**run.scalars, **env.scalars},
                               **{name: getattr(run, name) for name in RUN_WIDE})


class ScopedFold:
    """Folds events for one scope; ``rows`` counts the events fed so far."""

    def __init__(self, scope: Scope = Scope()) -> None:
        self.scope = scope
        self.rows = 0
        self._run = Fold(rank=scope.rank)
        self._env = Fold(rank=scope.rank, env=scope.env) if scope.env is not None else None
        self._view: RunState | None = None

    def update(self, chunk: KindTables) -> RunState:
        self.rows += chunk.num_rows
        self._run.update(chunk)
        if self._env is not None:
            self._env.update(chunk)
        self._view = None
        return self.state

    @property
    def state(self) -> RunState:
        if self._env is None:
            return self._run.state
        if self._view is None:
            self._view = env_view(self._env.state, self._run.state)
        return self._view


class ScopedReplay(Replay):
    """A replay whose fold and seek targets (next epoch, panic, ...) keep to one scope."""

    def __init__(self, log: EventLog, cursor: int | None = None, scope: Scope = Scope()) -> None:
        self.scope = scope
        super().__init__(log, cursor, fold_factory=lambda: ScopedFold(scope), rank=scope.rank, env=scope.env)


def refold(log: EventLog, scope: Scope, cursor: int | None) -> tuple[ScopedFold, ScopedReplay | None]:
    """The live fold of every event of ``log`` for ``scope``, and a replay at ``cursor`` (None:
    not replaying)."""
    fold = ScopedFold(scope)
    fold.update(log.slice(0, len(log)))
    return fold, (ScopedReplay(log, cursor, scope) if cursor is not None else None)


class RunModel:
    """Every event of one run read so far, the live fold of a scope, and an optional replay."""

    def __init__(self) -> None:
        self.log = EventLog()
        self.fold = ScopedFold()
        self.replay: ScopedReplay | None = None
        self.scope = Scope()
        self.pending: Scope | None = None  # a scope being folded off the UI thread
        self._rank_ids: set[int] = set()
        self._env_ids: set[int] = set()
        self.torn_bytes = 0
        self.corrupt: list[str] = []
        self.ended = False
        self.loaded = False
        self.manifest: dict = {}
        self.playing = False
        self.speed_index = 2
        self._arrivals: deque[tuple[float, int]] = deque()

    # -- feeding -----------------------------------------------------------------------------

    def adopt(self, log: EventLog, fold: ScopedFold, torn_bytes: int, ended: bool, manifest: dict,
              corrupt: list[str] | None = None) -> None:
        """Take over a first read, folded elsewhere (a loader thread)."""
        self.log, self.fold, self.scope = log, fold, fold.scope
        self.torn_bytes, self.ended, self.manifest, self.loaded = torn_bytes, ended, manifest, True
        self.corrupt = list(corrupt or [])
        self._note_ids(log.tables)

    def ingest(self, chunk: KindTables, torn_bytes: int, ended: bool, now: float,
               corrupt: list[str] | None = None) -> None:
        """Fold newly followed events; a replay keeps its cursor."""
        self.torn_bytes, self.ended, self.loaded = torn_bytes, ended, True
        if corrupt:
            self.corrupt = list(corrupt)
        if not chunk.num_rows:
            return
        self._note_ids(chunk)
        self.log.extend(chunk)
        self.fold.update(chunk)
        self._arrivals.append((now, chunk.num_rows))

    def _note_ids(self, chunk: KindTables) -> None:
        for table in chunk.tables.values():
            if table.num_rows:
                self._rank_ids.update(np.unique(to_numpy(table.column("rank"))).tolist())
                if "env" in table.column_names:
                    self._env_ids.update(np.unique(to_numpy(table.column("env"))).tolist())

    # -- what the panels show -----------------------------------------------------------------

    @property
    def state(self) -> RunState:
        return self.replay.state if self.replay is not None else self.fold.state

    @property
    def length(self) -> int:
        return len(self.log)

    @property
    def cursor(self) -> int:
        return self.replay.cursor if self.replay is not None else len(self.log)

    @property
    def speed(self) -> int:
        return SPEEDS[self.speed_index]

    def status(self, now: float) -> str:
        """The run's status as of wall time ``now`` (never the replay cursor's: a replayed run
        that finished is finished)."""
        return run_status(self.fold.state, now)

    @property
    def start_wall(self) -> float | None:
        st = self.fold.state
        return st.started_wall if st.started_wall is not None else st.first_wall

    def events_per_s(self, now: float) -> float | None:
        """Arrival rate over the last few seconds of follow; else the log's average rate."""
        while self._arrivals and now - self._arrivals[0][0] > RATE_WINDOW_S:
            self._arrivals.popleft()
        if len(self._arrivals) >= 2:
            span = self._arrivals[-1][0] - self._arrivals[0][0]
            if span > 0:
                return sum(n for _, n in list(self._arrivals)[1:]) / span
        st, start = self.state, self.start_wall
        if start is not None and st.last_wall is not None and st.last_wall > start:
            return st.events / (st.last_wall - start)
        return None

    # -- replay ------------------------------------------------------------------------------

    def start_replay(self, cursor: int = 0) -> ScopedReplay:
        """A replay at ``cursor`` (cheap only near the start: callers use a worker otherwise)."""
        self.replay = ScopedReplay(self.log, cursor, self.scope)
        self.playing = False
        return self.replay

    def stop_replay(self) -> None:
        self.replay, self.playing = None, False

    def is_cheap(self, cursor: int) -> bool:
        cur = self.cursor
        return (cur <= cursor <= cur + SYNC_EVENTS) or cursor <= SYNC_EVENTS

    def seek(self, cursor: int) -> None:
        if self.replay is not None:
            self.replay.seek(cursor)

    def adopt_replay(self, replay: ScopedReplay) -> None:
        """Swap in a replay folded elsewhere (it reads the same, growing, log)."""
        self.replay = replay

    def target(self, move: str) -> int:
        """The cursor a replay move leads to: 'start', 'end', 'step+', 'step-', 'next:<target>',
        'prev:<target>' (targets: panic, rollback, gate_failure, stage_change, epoch)."""
        cur, length = self.cursor, self.length
        if move == "start":
            return 0
        if move == "end":
            return length
        if move in ("step+", "step-"):
            return max(0, min(length, cur + (1 if move == "step+" else -1)))
        direction, name = move.split(":")
        replay = self.replay or ScopedReplay(self.log, 0, self.scope)
        return seek_position(replay.positions(name), cur, direction)

    def missing(self, move: str) -> str | None:
        """Why a seek 'next:<target>' / 'prev:<target>' finds nothing from the cursor ('no later
        panic'), or None when it finds an event (and for moves that are not seeks)."""
        direction, _, name = move.partition(":")
        if direction not in ("next", "prev"):
            return None
        replay = self.replay or ScopedReplay(self.log, 0, self.scope)
        pos = replay.positions(name)
        cur = self.cursor
        found = (pos >= cur).any() if direction == "next" else (pos < cur - 1).any()
        if found:
            return None
        return f"no {'later' if direction == 'next' else 'earlier'} {TARGET_WORDS.get(name, name)}"

    def has_target(self, move: str) -> bool:
        """Whether ``move`` leads anywhere from the cursor (a seek to no panic does not)."""
        return self.target(move) != self.cursor

    def play_target(self) -> int:
        """Where one play tick moves the cursor; stops playing at the end."""
        nxt = min(self.length, self.cursor + self.speed)
        if nxt >= self.length:
            self.playing = False
        return nxt

    def change_speed(self, delta: int) -> None:
        self.speed_index = max(0, min(len(SPEEDS) - 1, self.speed_index + delta))

    # -- scope: which rank and environment -------------------------------------------------------

    @property
    def ranks(self) -> list[int]:
        """The ranks of the run: those that wrote events, and those its run_started announces."""
        return sorted(self._rank_ids | set(range(self.fold.state.world_size)))

    @property
    def envs(self) -> list[int]:
        """The environments of the run: those seen in events, and those run_started announces."""
        return sorted(self._env_ids | set(range(self.fold.state.num_envs)))

    @property
    def multi_rank(self) -> bool:
        return len(self.ranks) > 1

    @property
    def multi_env(self) -> bool:
        return len(self.envs) > 1

    def scope_after(self, axis: str, delta: int) -> Scope | None:
        """The scope one step along ``axis`` ('rank' or 'env'; env cycles all, 0, 1, ...);
        None when the run has a single rank / environment."""
        base = self.pending or self.scope
        if axis == "rank":
            if not self.multi_rank:
                return None
            ranks = self.ranks
            i = ranks.index(base.rank) if base.rank in ranks else 0
            return Scope(ranks[(i + delta) % len(ranks)], base.env)
        if not self.multi_env:
            return None
        choices: list[int | None] = [None, *self.envs]
        i = choices.index(base.env) if base.env in choices else 0
        return Scope(base.rank, choices[(i + delta) % len(choices)])

    def is_small(self) -> bool:
        """Whether refolding the whole log is quick enough for a UI thread."""
        return self.length <= SYNC_EVENTS

    def adopt_scope(self, fold: ScopedFold, replay: ScopedReplay | None) -> int | None:
        """Show the scope of ``fold`` (folded from the first ``fold.rows`` events, maybe elsewhere).

        Events that arrived meanwhile are folded in. Returns the replay cursor still to reach
        (the cursor moved while folding, or the replay began then), or None.
        """
        fold.update(self.log.slice(fold.rows, len(self.log)))
        self.fold, self.scope, self.pending = fold, fold.scope, None
        old = self.replay
        self.replay = replay if old is not None else None
        if old is None:
            return None
        if self.replay is None:
            return old.cursor
        return old.cursor if old.cursor != self.replay.cursor else None


# -- divergence between ranks ------------------------------------------------------------------

@dataclass(frozen=True)
class RankDivergence:
    """The first lifecycle move where ``rank`` differs from rank 0: (epoch, slot, to_stage) each."""

    rank: int
    move: int
    mine: tuple[int, str, str]
    base: tuple[int, str, str]

    def short(self) -> str:
        return f"rank {self.rank} @ {self.mine[1]} epoch {self.mine[0]}"

    def describe(self) -> str:
        (e, slot, stage), (be, bslot, bstage) = self.mine, self.base
        return (f"rank {self.rank} diverged at move {self.move}: {slot} → {stage} at epoch {e}"
                f" (rank 0: {bslot} → {bstage} at epoch {be})")


def divergences(check: RankCheck) -> list[RankDivergence]:
    """Every rank whose lifecycle moves differ from rank 0's (RankCheck reports only the first)."""
    if check.divergence is None:
        return []
    base = check.moves.get(0, [])
    found = []
    for rank, moves in sorted(check.moves.items()):
        if rank == 0:
            continue
        for i, (a, b) in enumerate(zip(base, moves)):
            if a != b:
                found.append(RankDivergence(rank, i, b, a))
                break
    return found
