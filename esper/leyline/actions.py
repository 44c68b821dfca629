"""What a controller sees (Observation) and what it may do (Decision)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping
from enum import Enum

from esper.leyline.stages import SeedStage


class Op(Enum):
    """Controller operations (the op head of a learned policy)."""

    WAIT = 0
    GERMINATE = 1
    SET_ALPHA_TARGET = 2
    PRUNE = 3
    FOSSILIZE = 4
    ADVANCE = 5


@dataclass(frozen=True)
class Decision:
    """One controller action, with the reason the heuristic gives for it."""

    op: Op
    # what to do
    slot_id: str | None = None
    # target slot (None for WAIT)
    blueprint: str | None = None
    # blueprint for GERMINATE
    reason: str = ""
    # human-readable reason
    alpha_target: float | None = None
    # new target for SET_ALPHA_TARGET
    seed_id: str | None = None
    # the seed the action concerns, when there is one
    alpha_steps: int | None = None
    # SET_ALPHA_TARGET: epochs the ramp to alpha_target takes (None = 1, the target in one epoch)
    blend: str | None = None
    # GERMINATE: blend operator of the new seed ('add', 'multiply', 'gate'; None = the slot's config)
    tempo: str | None = None
    # GERMINATE: blend tempo of the new seed ('fast', 'standard', 'slow'; None = the slot's config)
    curve: str | None = None
    # GERMINATE: alpha curve of the new seed ('linear', 'cosine', 'sigmoid', 'tanh'; None = the slot's)


@dataclass(frozen=True)
class SlotView:
    """A slot as a controller sees it."""

    slot_id: str
    stage: SeedStage
    seed_id: str | None = None
    blueprint: str | None = None
    epochs_in_stage: int = 0
    epochs_since_germination: int = 0
    improvement: float = 0.0
    # val accuracy now minus at germination, percentage points
    contribution: float | None = None
    # latest counterfactual contribution, percentage points
    gradient_ratio: float | None = None
    alpha: float = 0.0
    last_gate_failed: tuple[str, ...] = ()
    # failed check codes of the slot's last gate evaluation
    contribution_se: float | None = None
    # its standard error, percentage points (paired over the validation samples)
    alpha_target: float = 0.0
    # where alpha is heading (equal to alpha unless a ramp is under way)
    contribution_age: int | None = None
    # epochs since the contribution was last measured (0 = at this epoch's end; None = never)
    gradient_health: float | None = None
    # health in [0, 1] of the seed's last gradient sample (None = never measured)
    params: int = 0
    # trainable parameters of the seed


@dataclass(frozen=True)
class Observation:
    """The run as a controller sees it at the end of an epoch."""

    epoch: int
    total_epochs: int
    topology: str
    val_acc: list[float] = field(default_factory=list)
    # validation accuracy per good epoch, percent
    train_loss: list[float] = field(default_factory=list)
    # training loss per good epoch
    slots: tuple[SlotView, ...] = ()
    epochs_since_prune: int = 10 ** 6
    # epochs since the last prune (large when none)
    pruned_blueprints: tuple[str, ...] = ()
    # blueprints pruned so far, most recent last
    host_params: int = 0
    # trainable parameters of the host (0 = unknown), the scale of the seeds' parameters
    host_flops: int = 0
    # forward FLOPs per sample of the host alone (0 before the first epoch has been counted)
    blueprint_costs: Mapping[str, Mapping[str, tuple[int, int]]] = field(default_factory=dict)
    # slot id -> blueprint -> (parameters, forward FLOPs per sample) a seed of it would add there
