"""The seed lifecycle as data: an Enum of stages and the explicit table of legal moves."""

from __future__ import annotations

from enum import Enum, auto
from types import MappingProxyType
from typing import Mapping


class SeedStage(Enum):
    """Lifecycle stage of a slot's seed (names are what telemetry events carry)."""

    DORMANT = auto()
    GERMINATED = auto()
    TRAINING = auto()
    BLENDING = auto()
    HOLDING = auto()
    FOSSILIZED = auto()
    PRUNED = auto()
    EMBARGOED = auto()
    RESETTING = auto()


_S = SeedStage
TRANSITIONS: Mapping[SeedStage, frozenset[SeedStage]] = MappingProxyType({
    _S.DORMANT: frozenset({_S.GERMINATED}),
    _S.GERMINATED: frozenset({_S.TRAINING, _S.PRUNED}),
    _S.TRAINING: frozenset({_S.BLENDING, _S.PRUNED}),
    _S.BLENDING: frozenset({_S.HOLDING, _S.PRUNED}),
    _S.HOLDING: frozenset({_S.FOSSILIZED, _S.BLENDING, _S.PRUNED}),
    _S.FOSSILIZED: frozenset(),
    _S.PRUNED: frozenset({_S.EMBARGOED}),
    _S.EMBARGOED: frozenset({_S.RESETTING}),
    _S.RESETTING: frozenset({_S.DORMANT}),
})
"""Every legal move; anything else raises IllegalTransition."""

LIVE_STAGES: frozenset[SeedStage] = frozenset({_S.GERMINATED, _S.TRAINING, _S.BLENDING, _S.HOLDING})
"""Stages in which a seed exists and can still be pruned."""

SEED_FORWARD_STAGES: frozenset[SeedStage] = frozenset({_S.TRAINING, _S.BLENDING, _S.HOLDING, _S.FOSSILIZED})
"""Stages in which the seed is called in the forward pass (and trains)."""


class IllegalTransition(ValueError):
    """A move that the transition table does not allow."""


def check_transition(current: SeedStage, target: SeedStage) -> None:
    """Raise IllegalTransition unless ``current -> target`` is in the table."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(f"illegal stage move {current.name} -> {target.name}")
