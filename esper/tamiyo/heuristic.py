"""The rule-based controller of CORE_SPEC §7."""

from __future__ import annotations

from esper.leyline.actions import Decision, Observation, Op, SlotView
from esper.leyline.config import HeuristicConfig
from esper.leyline.stages import LIVE_STAGES, SeedStage

S = SeedStage


def host_stable(losses: list[float], window: int, rel: float) -> bool:
    """The last ``window`` epoch-to-epoch relative loss changes are all below ``rel``."""
    if len(losses) < window + 1:
        return False
    tail = losses[-(window + 1):]
    return all(abs(b - a) / max(abs(a), 1e-12) < rel for a, b in zip(tail, tail[1:]))


def acc_plateaued(acc: list[float], window: int, pp: float) -> bool:
    """The best accuracy of the last ``window`` epochs gained < ``pp`` over the best before."""
    if len(acc) < window + 1:
        return False
    return max(acc[-window:]) - max(acc[:-window]) < pp


class HeuristicController:
    """Germinate on a plateau, advance through gates, fossilize contributors, prune the rest."""

    name = "heuristic"

    def __init__(self, cfg: HeuristicConfig = HeuristicConfig()) -> None:
        self.cfg = cfg
        self.penalty: dict[str, float] = {}
        self.rotation = 0
        self.pruned_seen = 0

    def decide(self, obs: Observation) -> list[Decision]:
        self._update_penalties(obs)
        decisions = [d for v in obs.slots if v.stage in LIVE_STAGES for d in [self._manage(v)] if d]
        if not any(v.stage in LIVE_STAGES for v in obs.slots):
            decisions += self._maybe_germinate(obs)
        return decisions or [Decision(Op.WAIT, reason=self._wait_reason(obs))]

    # -- live seeds --------------------------------------------------------------------------

    def _manage(self, v: SlotView) -> Decision | None:
        c = self.cfg
        d = lambda op, why: Decision(op, v.slot_id, reason=why, seed_id=v.seed_id)  # noqa: E731
        if v.stage is S.GERMINATED:
            return d(Op.ADVANCE, "seed built: start incubation (G1)")
        if v.epochs_since_germination >= c.failing_epochs and v.improvement < c.failing_pp:
            return d(Op.PRUNE, f"improvement {v.improvement:.2f}pp < {c.failing_pp}pp after "
                               f"{v.epochs_since_germination} epochs")
        if (v.contribution is not None and v.contribution > c.ransomware_contribution_pp
                and v.improvement < c.ransomware_total_pp and v.stage is S.HOLDING):
            return d(Op.PRUNE, f"ransomware: contribution {v.contribution:.2f}pp but total "
                               f"improvement {v.improvement:.2f}pp")
        if v.stage is S.TRAINING:
            if v.epochs_in_stage >= c.max_training_epochs:
                return d(Op.PRUNE, f"stuck in TRAINING for {v.epochs_in_stage} epochs")
            return d(Op.ADVANCE, "try G2 (ready to blend?)")
        if v.stage is S.BLENDING:
            return d(Op.ADVANCE, "try G3 (blend complete?)")
        return self._judge_holding(v, d)

    def _judge_holding(self, v: SlotView, d) -> Decision | None:
        c, contrib = self.cfg, v.contribution
        if contrib is not None and contrib > c.fossilize_pp:
            if v.epochs_in_stage >= c.max_holding_epochs:
                return d(Op.PRUNE, f"fossilization kept failing for {v.epochs_in_stage} epochs")
            return d(Op.FOSSILIZE, f"contribution {contrib:.2f}pp > {c.fossilize_pp}pp")
        if v.epochs_in_stage >= c.hold_decide_epochs:
            shown = "unmeasured" if contrib is None else f"{contrib:.2f}pp"
            return d(Op.PRUNE, f"contribution {shown} <= {c.fossilize_pp}pp")
        return None

    # -- germination -------------------------------------------------------------------------

    def _blockers(self, obs: Observation) -> list[str]:
        c, why = self.cfg, []
        if obs.epoch < c.min_epoch:
            why.append(f"epoch {obs.epoch} < {c.min_epoch}")
        if obs.epochs_since_prune < c.prune_cooldown:
            why.append(f"{obs.epochs_since_prune} epochs since prune < {c.prune_cooldown}")
        if not host_stable(obs.train_loss, c.stable_window, c.stable_rel_change):
            why.append("host not stable")
        if not acc_plateaued(obs.val_acc, c.plateau_window, c.plateau_pp):
            why.append("accuracy still improving")
        if not any(v.stage is S.DORMANT for v in obs.slots):
            why.append("no free slot")
        return why

    def _wait_reason(self, obs: Observation) -> str:
        live = [v for v in obs.slots if v.stage in LIVE_STAGES]
        if live:
            return f"waiting on {live[0].slot_id} in {live[0].stage.name}"
        return "; ".join(self._blockers(obs)) or "nothing to do"

    def _maybe_germinate(self, obs: Observation) -> list[Decision]:
        if self._blockers(obs):
            return []
        free = [v for v in obs.slots if v.stage is S.DORMANT]
        slot = free[-1] if self.cfg.slot_preference == "last" else free[0]
        blueprint = self._next_blueprint(obs.topology)
        why = f"plateau: best acc {max(obs.val_acc[-self.cfg.plateau_window:]):.2f}% ; host stable"
        return [Decision(Op.GERMINATE, slot.slot_id, blueprint, why),
                Decision(Op.ADVANCE, slot.slot_id, reason="seed built: start incubation (G1)")]

    def _next_blueprint(self, topology: str) -> str:
        names = {"cnn": self.cfg.blueprints, "transformer": self.cfg.transformer_blueprints,
                 **self.cfg.other_blueprints}[topology]
        order = [names[(self.rotation + i) % len(names)] for i in range(len(names))]
        best = min(order, key=lambda n: (self.penalty.get(n, 0.0), order.index(n)))
        self.rotation = (names.index(best) + 1) % len(names)
        return best

    def _update_penalties(self, obs: Observation) -> None:
        self.penalty = {k: v * self.cfg.penalty_decay for k, v in self.penalty.items()}
        for name in obs.pruned_blueprints[self.pruned_seen:]:
            self.penalty[name] = self.penalty.get(name, 0.0) + self.cfg.prune_penalty
        self.pruned_seen = len(obs.pruned_blueprints)
