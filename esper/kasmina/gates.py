"""Quality gates G0-G5: pure functions of a slot's record and the loop's measurements."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from esper.leyline.config import GateConfig
from esper.leyline.gates import GATE_FOR_STAGE, GateId, GateResult
from esper.leyline.stages import SeedStage

S = SeedStage


@dataclass(frozen=True)
class GateContext:
    """What the loop knows when a gate is evaluated."""

    val_acc: float
    # current validation accuracy, percent
    val_loss: float
    # current validation loss
    known_blueprints: frozenset[str] = frozenset()
    # blueprints of the slot's topology (G0)


def _check(ok: bool, good: str, bad: str, passed: list[str], failed: list[str]) -> None:
    (passed if ok else failed).append(good if ok else bad)


def gate_g0(slot, seed_id: str | None, blueprint: str, ctx: GateContext, cfg: GateConfig) -> GateResult:
    p, f = [], []
    _check(bool(seed_id), "seed_id_set", "seed_id_missing", p, f)
    _check(blueprint in ctx.known_blueprints, "blueprint_known", f"blueprint_unknown_{blueprint}", p, f)
    _check(slot.stage is S.DORMANT and slot.seed is None, "slot_empty",
           f"slot_occupied_{slot.stage.name.lower()}", p, f)
    return GateResult(GateId.G0, S.GERMINATED, tuple(p), tuple(f))


def gate_g1(slot, ctx: GateContext, cfg: GateConfig) -> GateResult:
    p, f = [], []
    _check(slot.record is not None and slot.record.probe_ok, "shape_preserved", "shape_changed", p, f)
    _check(slot.stage is S.GERMINATED, "stage_germinated", f"stage_{slot.stage.name.lower()}", p, f)
    return GateResult(GateId.G1, S.TRAINING, tuple(p), tuple(f))


def gate_g2(slot, ctx: GateContext, cfg: GateConfig) -> GateResult:
    """Readiness to blend. An unmeasured ratio (None) fails closed (review 002)."""
    rec, p, f = slot.record, [], []
    n, need = rec.epochs_in_stage, cfg.min_training_epochs
    _check(n >= need, f"training_epochs_{n}", f"training_epochs_{n}<{need}", p, f)
    ratio, threshold = rec.grad.ratio, cfg.gradient_ratio_threshold[slot.topology]
    if ratio is None:
        f.append("seed_gradient_unmeasured")
    else:
        _check(ratio >= threshold, f"seed_gradient_ok_{ratio:.2f}", f"seed_gradient_low_{ratio:.2f}", p, f)
    _check_gradient_window(rec.grad, cfg, p, f)
    if cfg.mode == "strict":
        gain = ctx.val_acc - rec.acc_at_stage_start
        _check(gain >= cfg.min_improvement_pp, f"improvement_{gain:.2f}pp",
               f"improvement_low_{gain:.2f}pp", p, f)
    return GateResult(GateId.G2, S.BLENDING, tuple(p), tuple(f))


def _check_gradient_window(grad, cfg: GateConfig, p: list[str], f: list[str]) -> None:
    """Gradient health over the stage's own recent samples (several of them), not the last one alone."""
    n, need = len(grad.window), cfg.min_gradient_samples
    _check(n >= need, f"gradient_samples_{n}", f"gradient_samples_{n}<{need}", p, f)
    _, h, exploding = grad.recent(cfg.gradient_window)
    if h is not None:
        _check(h >= cfg.min_gradient_health, f"gradient_health_ok_{h:.2f}", f"gradient_health_low_{h:.2f}", p, f)
    _check(exploding == 0, "no_exploding_gradients", f"gradients_exploding_{exploding}", p, f)


def gate_g3(slot, ctx: GateContext, cfg: GateConfig) -> GateResult:
    """Blend complete: alpha reached the slot's current target (a retarget moves the goal), and
    that target lets the seed into the forward pass."""
    p, f = [], []
    a, t = slot.alpha.alpha, slot.alpha.target
    _check(abs(a - t) <= cfg.alpha_tolerance, f"alpha_at_target_{a:.3f}", f"alpha_below_target_{a:.3f}<{t:.3f}", p, f)
    _check(slot.alpha.idle, "alpha_idle", f"alpha_ramping_to_{t:.3f}", p, f)
    _check(t > 0.0, "alpha_target_positive", "alpha_target_zero", p, f)
    return GateResult(GateId.G3, S.HOLDING, tuple(p), tuple(f))


def gate_g4(slot, ctx: GateContext, cfg: GateConfig) -> GateResult:
    """Stability over the holding window."""
    rec, p, f = slot.record, [], []
    n, need = rec.epochs_in_stage, cfg.min_holding_epochs
    _check(slot.stage is S.HOLDING and n >= need, f"holding_epochs_{n}", f"holding_epochs_{n}<{need}", p, f)
    _check(rec.panics_in_stage == 0, "no_governor_panic", f"governor_panics_{rec.panics_in_stage}", p, f)
    base = rec.loss_at_hold_start
    rel = (ctx.val_loss - base) / max(abs(base), 1e-12) if math.isfinite(base) else float("nan")
    _check(math.isfinite(rel) and rel <= cfg.hold_loss_tolerance, f"val_loss_stable_{rel:+.3f}",
           f"val_loss_worse_{rel:+.3f}", p, f)
    _check_gradient_window(rec.grad, cfg, p, f)
    v = rec.isolation_violations
    _check(v <= cfg.max_isolation_violations, f"isolation_violations_{v}",
           f"isolation_violations_{v}>{cfg.max_isolation_violations}", p, f)
    return GateResult(GateId.G4, S.FOSSILIZED, tuple(p), tuple(f))


def gate_g5(slot, ctx: GateContext, cfg: GateConfig) -> GateResult:
    """Value: the measured counterfactual contribution."""
    c, p, f = slot.record.contribution, [], []
    if c is None:
        f.append("contribution_unmeasured")
    elif cfg.mode == "strict":
        _check(c >= cfg.min_contribution_strict, f"contribution_ok_{c:.2f}pp", f"contribution_low_{c:.2f}pp", p, f)
    else:
        _check(c > cfg.min_contribution_permissive, f"contribution_ok_{c:.2f}pp",
               f"contribution_low_{c:.2f}pp", p, f)
    return GateResult(GateId.G5, S.FOSSILIZED, tuple(p), tuple(f))


GATES = MappingProxyType({GateId.G1: gate_g1, GateId.G2: gate_g2, GateId.G3: gate_g3, GateId.G4: gate_g4,
                          GateId.G5: gate_g5})


def gates_for(target: SeedStage) -> tuple[GateId, ...]:
    return GATE_FOR_STAGE.get(target, ())


def evaluate_gates(slot, target: SeedStage, ctx: GateContext, cfg: GateConfig) -> list[GateResult]:
    """Every gate guarding ``target`` (G4 and G5 both guard FOSSILIZED), in order."""
    return [GATES[g](slot, ctx, cfg) for g in gates_for(target) if g is not GateId.G0]


NEXT_STAGE: Mapping[SeedStage, SeedStage] = MappingProxyType({
    S.GERMINATED: S.TRAINING, S.TRAINING: S.BLENDING, S.BLENDING: S.HOLDING, S.HOLDING: S.FOSSILIZED,
})
"""Where ADVANCE leads from each stage."""
