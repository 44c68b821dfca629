"""Quality gate identifiers and the result every gate returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Mapping

from esper.leyline.stages import SeedStage


class GateId(Enum):
    """The six quality gates; the value is the name telemetry carries."""

    G0 = "G0"
    G1 = "G1"
    G2 = "G2"
    G3 = "G3"
    G4 = "G4"
    G5 = "G5"


GATE_FOR_STAGE: Mapping[SeedStage, tuple[GateId, ...]] = MappingProxyType({
    SeedStage.GERMINATED: (GateId.G0,),
    SeedStage.TRAINING: (GateId.G1,),
    SeedStage.BLENDING: (GateId.G2,),
    SeedStage.HOLDING: (GateId.G3,),
    SeedStage.FOSSILIZED: (GateId.G4, GateId.G5),
})
"""Gates guarding entry to a stage (all must pass). Other moves are ungated."""


@dataclass(frozen=True)
class GateResult:
    """Outcome of one gate: the check lists go into telemetry verbatim."""

    gate: GateId
    # the gate evaluated
    target: SeedStage
    # the stage it guards
    checks_passed: tuple[str, ...] = field(default_factory=tuple)
    # short codes of passed checks, e.g. 'seed_gradient_ok_0.31'
    checks_failed: tuple[str, ...] = field(default_factory=tuple)
    # short codes of failed checks, e.g. 'seed_gradient_low_0.02'

    @property
    def passed(self) -> bool:
        return not self.checks_failed
