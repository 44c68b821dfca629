"""Applying controller decisions to slots: every move goes through its gates and is reported."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from esper.kasmina.blueprints import blueprint_names
from esper.kasmina.gates import NEXT_STAGE, GateContext, evaluate_gates, gate_g0, gates_for
from esper.kasmina.model import MorphogeneticModel
from esper.leyline.actions import Decision, Op
from esper.leyline.config import GateConfig
from esper.leyline.gates import GateId, GateResult
from esper.leyline.stages import SeedStage
from esper.nissa.sink import Sink

S = SeedStage

GateSource = Callable[[tuple[GateId, ...], Callable[[], list[GateResult]]], list[GateResult]]
"""Where a move's gate results come from: ``source(gate_ids, evaluate)``. The default evaluates the
gates here; the other ranks of a distributed run replay rank 0's results (tolaria.agreement)."""


def evaluate_here(ids: tuple[GateId, ...], evaluate: Callable[[], list[GateResult]]) -> list[GateResult]:
    return evaluate()


@dataclass
class LifecycleLog:
    """What happened to seeds so far (the loop's memory for observations and summaries)."""

    germinated: int = 0
    fossilized: int = 0
    pruned: int = 0
    pruned_blueprints: list[str] = field(default_factory=list)
    last_prune_epoch: int | None = None
    last_gate_failed: dict[str, tuple[str, ...]] = field(default_factory=dict)


class Lifecycle:
    """Executes Decisions on a MorphogeneticModel under the gate configuration."""

    def __init__(self, model: MorphogeneticModel, gates: GateConfig, sink: Sink, device: torch.device,
                 initiator: str = "heuristic") -> None:
        self.model, self.gates, self.sink, self.device = model, gates, sink, device
        self.initiator = initiator
        self.log = LifecycleLog()

    def apply(self, d: Decision, epoch: int, acc: float, loss: float,
              gate_source: GateSource = evaluate_here) -> bool:
        """Apply one decision; returns True if the model changed."""
        if d.op is Op.WAIT or d.slot_id is None:
            return False
        slot = self.model.slots[d.slot_id]
        if slot.pending_prune:
            return False  # a scheduled prune is under way: the seed is leaving
        ctx = GateContext(acc, loss, frozenset(blueprint_names(self.model.topology)))
        if d.op is Op.GERMINATE:
            return self._germinate(slot, d, epoch, ctx, gate_source)
        if d.op is Op.PRUNE and slot.is_live:
            self.note_prune(slot, epoch)
            slot.prune(d.reason, self.initiator)
            return True
        if d.op in (Op.ADVANCE, Op.FOSSILIZE) and slot.stage in NEXT_STAGE:
            if d.op is Op.FOSSILIZE and slot.stage is not S.HOLDING:
                return False
            return self._advance(slot, ctx, gate_source)
        if d.op is Op.SET_ALPHA_TARGET and d.alpha_target is not None:
            return slot.set_alpha_target(d.alpha_target, d.alpha_steps or 1)
        return False

    def note_prune(self, slot, epoch: int) -> None:
        self.log.pruned += 1
        self.log.pruned_blueprints.append(slot.record.blueprint)
        self.log.last_prune_epoch = epoch

    def _germinate(self, slot, d: Decision, epoch: int, ctx: GateContext, gate_source: GateSource) -> bool:
        seed_id = f"seed{self.log.germinated + 1}"
        result, = gate_source((GateId.G0,), lambda: [gate_g0(slot, seed_id, d.blueprint or "", ctx, self.gates)])
        self.sink.gate_evaluated(slot.slot_id, seed_id, result)
        self.log.last_gate_failed[slot.slot_id] = result.checks_failed
        if not result.passed:
            return False
        chosen = {k: v for k, v in (("blend", d.blend), ("tempo", d.tempo), ("curve", d.curve)) if v is not None}
        if chosen:  # the decision's blend settings (a learned policy's choice) replace the slot's
            slot.cfg = dataclasses.replace(slot.cfg, **chosen)
        slot.germinate(seed_id, d.blueprint, epoch, ctx.val_acc, self.device)
        self.log.germinated += 1
        return True

    def implant(self, slot, blueprint: str, epoch: int = 0) -> None:
        """Germinate ``blueprint`` in ``slot`` and fossilize it at once (an initial architecture, not
        growth: the gates after G0 are not asked and the lifecycle counts are left alone). G0 still
        checks the slot and blueprint; ValueError if it fails."""
        seed_id = f"init-{slot.slot_id}"
        ctx = GateContext(0.0, float("nan"), frozenset(blueprint_names(self.model.topology)))
        result = gate_g0(slot, seed_id, blueprint, ctx, self.gates)
        if not result.passed:
            raise ValueError(f"initial seed {slot.slot_id}={blueprint}: {', '.join(result.checks_failed)}")
        self.sink.gate_evaluated(slot.slot_id, seed_id, result)
        slot.germinate(seed_id, blueprint, epoch, 0.0, self.device)
        for stage in (S.TRAINING, S.BLENDING, S.HOLDING, S.FOSSILIZED):
            slot.enter(stage, "initial architecture", 0.0, float("nan"))
        self.sink.seed_fossilized(slot.slot_id, seed_id, "initial architecture", "user", slot.record.params)

    def _advance(self, slot, ctx: GateContext, gate_source: GateSource) -> bool:
        target = NEXT_STAGE[slot.stage]
        ids = tuple(g for g in gates_for(target) if g is not GateId.G0)
        results = gate_source(ids, lambda: evaluate_gates(slot, target, ctx, self.gates))
        for r in results:
            self.sink.gate_evaluated(slot.slot_id, slot.seed_id, r)
        failed = tuple(c for r in results for c in r.checks_failed)
        self.log.last_gate_failed[slot.slot_id] = failed
        if failed:
            return False
        names = "+".join(r.gate.value for r in results)
        slot.enter(target, f"{names} passed", ctx.val_acc, ctx.val_loss)
        if target is S.FOSSILIZED:
            self.log.fossilized += 1
            c = slot.record.contribution
            self.sink.seed_fossilized(slot.slot_id, slot.seed_id, f"{names} passed, contribution {c:.2f}pp",
                                      self.initiator, slot.record.params)
        return True
