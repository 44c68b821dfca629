"""What growing a seed would cost, read from an Observation: the heuristic's compute budget."""

from __future__ import annotations

from dataclasses import dataclass

from esper.leyline.actions import Observation
from esper.leyline.config import HeuristicConfig
from esper.leyline.stages import LIVE_STAGES, SeedStage

HAS_SEED = LIVE_STAGES | {SeedStage.FOSSILIZED}


@dataclass(frozen=True)
class Spend:
    """Parameters and forward FLOPs per sample that seeds add to the host."""

    params: int = 0
    flops: int = 0

    def __add__(self, other: "Spend") -> "Spend":
        return Spend(self.params + other.params, self.flops + other.flops)


def cost_of(obs: Observation, slot_id: str, blueprint: str | None) -> Spend | None:
    """What a ``blueprint`` seed adds in ``slot_id``; None when the observation does not say."""
    pair = obs.blueprint_costs.get(slot_id, {}).get(blueprint or "")
    return Spend(*pair) if pair is not None else None


def spent(obs: Observation) -> Spend:
    """What the seeds the model holds now (live or fossilized) add (unknown costs count 0)."""
    total = Spend()
    for v in obs.slots:
        if v.stage in HAS_SEED:
            total = total + (cost_of(obs, v.slot_id, v.blueprint) or Spend())
    return total


def over_budget(obs: Observation, cfg: HeuristicConfig, cost: Spend | None, already: Spend) -> str | None:
    """Why a seed costing ``cost`` on top of ``already`` breaks the budget, or None when it fits."""
    if not (cfg.max_params or cfg.max_flops_ratio):
        return None
    if cost is None:
        return "cost unknown"
    total = already + cost
    if cfg.max_params and obs.host_params + total.params > cfg.max_params:
        return f"params {obs.host_params + total.params} > {cfg.max_params}"
    if cfg.max_flops_ratio and obs.host_flops + total.flops > cfg.max_flops_ratio * obs.host_flops:
        ratio = (obs.host_flops + total.flops) / obs.host_flops if obs.host_flops else float("inf")
        return f"forward FLOPs {ratio:.2f}x host > {cfg.max_flops_ratio}x"
    return None
