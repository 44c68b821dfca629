"""The rule-based controller of CORE_SPEC §7."""

from __future__ import annotations

from esper.leyline.actions import Decision, Observation, Op, SlotView
from esper.leyline.config import HeuristicConfig
from esper.leyline.stages import LIVE_STAGES, SeedStage
from esper.tamiyo.budget import Spend, cost_of, over_budget, spent

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
    """Germinate (on a plateau, or early), advance through gates, fossilize contributors, prune the
    rest; optionally cheapest blueprint first, within a parameter/FLOPs budget."""

    name = "heuristic"

    def __init__(self, cfg: HeuristicConfig = HeuristicConfig()) -> None:
        self.cfg = cfg
        self.penalty: dict[str, float] = {}
        self.rotation = 0
        self.pruned_seen = 0
        self.budget_notes: list[str] = []

    def decide(self, obs: Observation) -> list[Decision]:
        self._update_penalties(obs)
        decisions = [d for v in obs.slots if v.stage in LIVE_STAGES for d in [self._manage(v)] if d]
        live = sum(v.stage in LIVE_STAGES for v in obs.slots)
        if live < self.cfg.max_live_seeds:
            decisions += self._maybe_germinate(obs, self.cfg.max_live_seeds - live)
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
        if contrib is not None and contrib > c.fossilize_pp and self._clear_of_noise(v):
            if v.epochs_in_stage >= c.max_holding_epochs:
                return d(Op.PRUNE, f"fossilization kept failing for {v.epochs_in_stage} epochs")
            return d(Op.FOSSILIZE, f"contribution {contrib:.2f}pp > {c.fossilize_pp}pp")
        if v.epochs_in_stage >= c.hold_decide_epochs:
            shown = "unmeasured" if contrib is None else f"{contrib:.2f}pp"
            noise = f" or within {c.fossilize_se} SE ({v.contribution_se or float('nan'):.2f}pp)" if c.fossilize_se else ""
            return d(Op.PRUNE, f"contribution {shown} <= {c.fossilize_pp}pp{noise}")
        return None

    def _clear_of_noise(self, v: SlotView) -> bool:
        """The contribution exceeds ``fossilize_se`` standard errors (always, when that is 0)."""
        k = self.cfg.fossilize_se
        return k <= 0 or (v.contribution_se is not None and v.contribution > k * v.contribution_se)

    # -- germination -------------------------------------------------------------------------

    def _blockers(self, obs: Observation) -> list[str]:
        c, why = self.cfg, []
        if obs.epoch < c.min_epoch:
            why.append(f"epoch {obs.epoch} < {c.min_epoch}")
        if obs.epoch > c.grow_until * obs.total_epochs:
            why.append(f"epoch {obs.epoch} > {c.grow_until:g} of {obs.total_epochs}: too late to grow")
        if obs.epochs_since_prune < c.prune_cooldown:
            why.append(f"{obs.epochs_since_prune} epochs since prune < {c.prune_cooldown}")
        if c.trigger == "plateau" and not host_stable(obs.train_loss, c.stable_window, c.stable_rel_change):
            why.append("host not stable")
        if c.trigger == "plateau" and not acc_plateaued(obs.val_acc, c.plateau_window, c.plateau_pp):
            why.append("accuracy still improving")
        if not any(v.stage is S.DORMANT for v in obs.slots):
            why.append("no free slot")
        return why

    def _wait_reason(self, obs: Observation) -> str:
        live = [v for v in obs.slots if v.stage in LIVE_STAGES]
        if len(live) >= self.cfg.max_live_seeds:
            return f"waiting on {live[0].slot_id} in {live[0].stage.name}"
        return "; ".join(self._blockers(obs) + self.budget_notes) or "nothing to do"

    def _maybe_germinate(self, obs: Observation, room: int) -> list[Decision]:
        """Up to ``room`` seeds, one per free slot in the preferred order, each within the budget."""
        self.budget_notes = []
        if self._blockers(obs):
            return []
        free = [v for v in obs.slots if v.stage is S.DORMANT]
        free = free[::-1] if self.cfg.slot_preference == "last" else free
        out, already = [], spent(obs)
        for v in free[:room]:
            blueprint, cost = self._choose(obs, v.slot_id, already)
            if blueprint is None:
                continue
            already = already + (cost or Spend())
            out += [Decision(Op.GERMINATE, v.slot_id, blueprint, self._why(obs)),
                    Decision(Op.ADVANCE, v.slot_id, reason="seed built: start incubation (G1)")]
        return out

    def _why(self, obs: Observation) -> str:
        if self.cfg.trigger == "early":
            return f"early growth: epoch {obs.epoch} >= {self.cfg.min_epoch}"
        return f"plateau: best acc {max(obs.val_acc[-self.cfg.plateau_window:]):.2f}% ; host stable"

    def _choose(self, obs: Observation, slot_id: str, already: Spend) -> tuple[str | None, Spend | None]:
        """The first blueprint in order whose cost fits the budget (and its cost)."""
        for name in self._order(obs, slot_id):
            cost = cost_of(obs, slot_id, name)
            why = over_budget(obs, self.cfg, cost, already)
            if why is None:
                self._advance_rotation(obs.topology, name)
                return name, cost
            self.budget_notes.append(f"{slot_id} {name}: over budget ({why})")
        return None, None

    def _names(self, topology: str) -> tuple[str, ...]:
        return {"cnn": self.cfg.blueprints, "transformer": self.cfg.transformer_blueprints,
                **self.cfg.other_blueprints}[topology]

    def _order(self, obs: Observation, slot_id: str) -> list[str]:
        """Blueprints to try: least penalised first; then in rotation, or cheapest forward FLOPs first."""
        names = self._names(obs.topology)
        order = [names[(self.rotation + i) % len(names)] for i in range(len(names))]
        if self.cfg.blueprint_order == "cheapest":
            flops = lambda n: (cost_of(obs, slot_id, n) or Spend(0, 0)).flops  # noqa: E731
            return sorted(names, key=lambda n: (self.penalty.get(n, 0.0), flops(n), names.index(n)))
        return sorted(order, key=lambda n: (self.penalty.get(n, 0.0), order.index(n)))

    def _advance_rotation(self, topology: str, chosen: str) -> None:
        names = self._names(topology)
        self.rotation = (names.index(chosen) + 1) % len(names)

    def _next_blueprint(self, topology: str) -> str:
        """The next blueprint of the rotation (no budget, no costs)."""
        names = self._names(topology)
        order = [names[(self.rotation + i) % len(names)] for i in range(len(names))]
        best = min(order, key=lambda n: (self.penalty.get(n, 0.0), order.index(n)))
        self._advance_rotation(topology, best)
        return best

    def _update_penalties(self, obs: Observation) -> None:
        self.penalty = {k: v * self.cfg.penalty_decay for k, v in self.penalty.items()}
        for name in obs.pruned_blueprints[self.pruned_seen:]:
            self.penalty[name] = self.penalty.get(name, 0.0) + self.cfg.prune_penalty
        self.pruned_seen = len(obs.pruned_blueprints)
