"""Contracts shared across the Esper core: stages and their transition table, gate ids, configs
(``tasks.py``: task names and defaults the command line shows without torch)."""

from esper.leyline.config import (
    GateConfig, GovernorConfig, GradientConfig, HeuristicConfig, SlotConfig, TrainConfig,
)
from esper.leyline.actions import Decision, Observation, Op, SlotView
from esper.leyline.gates import GATE_FOR_STAGE, GateId, GateResult
from esper.leyline.stages import (
    LIVE_STAGES, TRANSITIONS, IllegalTransition, SeedStage, check_transition,
)

__all__ = [
    "Decision", "Observation", "Op", "SlotView",
    "GateConfig", "GovernorConfig", "GradientConfig", "HeuristicConfig", "SlotConfig", "TrainConfig",
    "GATE_FOR_STAGE", "GateId", "GateResult", "LIVE_STAGES", "TRANSITIONS", "IllegalTransition",
    "SeedStage", "check_transition",
]
