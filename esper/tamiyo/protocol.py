"""The controller interface: an Observation in, a list of Decisions out.

A learned policy only needs to implement ``Controller``: the training loop builds the
Observation, applies each Decision through the gates, and logs it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from esper.leyline.actions import Decision, Observation, Op


@runtime_checkable
class Controller(Protocol):
    name: str
    # 'heuristic', 'policy' or 'none' (goes into controller_decision events)

    def decide(self, obs: Observation) -> list[Decision]:
        """Actions for this epoch, applied in order (at most one per slot)."""


class NoController:
    """Never acts: the host trains alone (the baseline of a morphogenetic run)."""

    name = "none"

    def decide(self, obs: Observation) -> list[Decision]:
        return [Decision(Op.WAIT, reason="controller disabled")]
