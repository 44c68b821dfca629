"""Tolaria, the loop: epoch runners, validation and counterfactual attribution, the governor."""

from esper.tolaria.attribution import counterfactual_contribution, force_alpha
from esper.tolaria.governor import Governor, GovernorVerdict
from esper.tolaria.lifecycle import Lifecycle
from esper.tolaria.runners import (
    StepHooks, TrainStats, ValidationResult, evaluate, perplexity, train_epoch, validate,
)
from esper.tolaria.trainer import FaultSpec, RunSummary, Trainer

__all__ = [
    "counterfactual_contribution", "force_alpha", "Governor", "GovernorVerdict", "Lifecycle",
    "StepHooks", "TrainStats", "ValidationResult", "evaluate", "perplexity", "train_epoch", "validate",
    "FaultSpec", "RunSummary", "Trainer",
]
