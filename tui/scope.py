"""Which rank and environment the panels show, and the folds and replays that keep to them.

A distributed run has one event stream per rank; a PPO run writes its K environments into one
stream, each event tagged with its ``env``. A ``Scope`` names one rank and one environment
(None: every environment). ``ScopedFold`` folds a scope with telemetry_schema's
``Fold(rank, env)``; with an environment chosen it also folds the whole rank, because some
events describe the run, not one environment, and carry env 0 whatever env is chosen: the
writer's run_started / run_finished / heartbeats and the PPO learner's updates and scalars
(``esper/simic/cli.py`` writes them with the default env 0). Those facts (``RUN_WIDE``, the
learner's scalars and the slot list) come from the rank's fold; everything else (epochs,
slots, gates, governor, decisions, rewards, alpha, gradients) from the environment's fold.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pyarrow as pa

from telemetry_schema.fold import Fold, RankCheck, RunState, SlotState
from telemetry_schema.replay import Replay

RUN_WIDE = ("run_id", "task", "topology", "config", "host_params", "device", "world_size", "num_envs",
            "heartbeat_s", "versions", "started_wall", "end_status", "end_reason", "last_wall",
            "last_progress_wall", "ppo", "head_entropy", "ranks")
"""RunState fields an environment's view takes from its rank's whole fold."""


@dataclass(frozen=True)
class Scope:
    """One rank (as ``Fold``: 0 for a single-process run) and one environment (None: all)."""

    rank: int = 0
    env: int | None = None


def env_view(env: RunState, run: RunState) -> RunState:
    """An environment's state with the run-wide facts of its rank (a shallow copy: no data copied)."""
    slot_ids = list(run.slot_ids) + [s for s in env.slot_ids if s not in run.slot_ids]
    slots = {sid: env.slots.get(sid) or SlotState(sid) for sid in slot_ids}
    return dataclasses.replace(env, slot_ids=slot_ids, slots=slots, scalars={**run.scalars, **env.scalars},
                               **{name: getattr(run, name) for name in RUN_WIDE})


class ScopedFold:
    """Folds event tables for one scope; ``rows`` counts the rows fed so far."""

    def __init__(self, scope: Scope = Scope()) -> None:
        self.scope = scope
        self.rows = 0
        self._run = Fold(rank=scope.rank)
        self._env = Fold(rank=scope.rank, env=scope.env) if scope.env is not None else None
        self._view: RunState | None = None

    def update(self, table: pa.Table) -> RunState:
        self.rows += table.num_rows
        self._run.update(table)
        if self._env is not None:
            self._env.update(table)
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

    def __init__(self, table: pa.Table, cursor: int | None = None, scope: Scope = Scope()) -> None:
        self.scope = scope
        super().__init__(table, cursor, fold_factory=lambda: ScopedFold(scope), rank=scope.rank, env=scope.env)


def refold(table: pa.Table, scope: Scope, cursor: int | None) -> tuple[ScopedFold, ScopedReplay | None]:
    """The live fold of ``table`` for ``scope``, and a replay at ``cursor`` (None: not replaying)."""
    fold = ScopedFold(scope)
    fold.update(table)
    return fold, (ScopedReplay(table, cursor, scope) if cursor is not None else None)


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
