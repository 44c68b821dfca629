"""What a learned policy sees and what its choices do, in one place for training and deployment.

The PPO environments (``esper.simic.vec_env``) and the deployed ``PolicyController`` (``esper
train --controller policy:PATH``) both turn an Observation into features and masks, and a sampled
action into Decisions, through ``PolicyBridge``: the blend, tempo, curve and alpha speed a policy
picks travel in the Decision and are applied by the lifecycle in both, so a policy behaves the
same when deployed as when it was trained (issue 14).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from types import MappingProxyType

import torch
from torch import Tensor

from esper.kasmina.blueprints import blueprint_params
from esper.leyline.actions import Decision, Observation, Op
from esper.leyline.stages import SeedStage
from esper.tamiyo.policy.actions import OPS, ActionSpace
from esper.tamiyo.policy.features import FeatureConfig, encode_observation, slot_stages
from esper.tamiyo.policy.masks import build_masks

S = SeedStage
ADVANCING = frozenset({S.GERMINATED, S.TRAINING, S.BLENDING})
"""Stages an ADVANCE moves on (to TRAINING, BLENDING, HOLDING)."""
JUDGED = frozenset({S.BLENDING, S.HOLDING})
"""Stages of a seed whose effect on the model has been seen (it blends in)."""
PROBE_WIDTH = 64
"""Channels at which blueprints are built to count their parameters (a blueprint with none at this
width has none at any width: it is built from parameter-free modules)."""


@dataclass(frozen=True)
class BridgeConfig:
    """Rules around the policy's choices (saved with a checkpoint, applied alike when deployed)."""

    germinate_starts_training: bool = True
    # a GERMINATE is followed by ADVANCE (G1, the shape probe) on the same slot in the same epoch,
    # as the heuristic does: one action builds the seed and starts its incubation
    auto_advance: bool = True
    # every seed in GERMINATED, TRAINING or BLENDING is offered the next stage every epoch (its
    # gates decide when it moves), as the heuristic does, and the ADVANCE op is masked: the policy
    # chooses what, where and how to grow, when to commit (FOSSILIZE), retarget or prune, and
    # spends no action on knocking at a gate (a random policy's seeds otherwise rarely blended
    # within an episode, so their effect on accuracy was rarely seen)
    expire_training_epochs: int = 8
    # a seed still in TRAINING after this many epochs (G2 kept refusing it) is pruned as expired,
    # so it cannot hold its slot for the rest of the run (0 = never)
    prune_judged_only: bool = True
    # PRUNE is offered only for a seed that has blended (BLENDING, HOLDING): before that it has
    # not changed the model, so there is nothing to judge it by, and a TRAINING seed that G2 keeps
    # refusing expires instead. With PRUNE legal from GERMINATED on, a new policy pruned 356 of the
    # 429 seeds it germinated in a long default run, 66 of them having blended
    prune_after_blend: bool = True
    # ... and, narrower, only a seed whose blend is complete (HOLDING), as the heuristic judges
    # it: with PRUNE legal in BLENDING, a policy learned to prune every seed in the first epoch of
    # its blend (the dip it causes is paid at once, the gain it brings comes later), and ended 3 pp
    # short of the heuristic on held-out seeds (bench/PERFORMANCE.md)
    mask_inert_blueprints: bool = True
    # blueprints without trainable parameters (noop) cannot be germinated: G2 has no seed gradient
    # to measure, so such a seed would never leave TRAINING


LEGACY_BRIDGE = MappingProxyType({"prune_after_blend": False})
"""Bridge settings added after the first checkpoints, and the values that reproduce what a
checkpoint without them did."""


def inert_blueprints(topology: str, names: tuple[str, ...]) -> frozenset[str]:
    """The blueprints of ``topology`` that have no trainable parameters. Counting builds each
    blueprint; that draws from a forked RNG, so a controller made inside a training run leaves
    the run's RNG stream (and so its seeds' initial weights) as it was."""
    with torch.random.fork_rng(devices=[]):
        return frozenset(n for n in names if blueprint_params(topology, n, PROBE_WIDTH) == 0)


class PolicyBridge:
    """Observation -> (features, masks); head indices -> Decisions. Stateless: the caller keeps
    the last op of each episode (a feature) and the LSTM state."""

    def __init__(self, space: ActionSpace, topology: str, features: FeatureConfig | None = None,
                 cfg: BridgeConfig | None = None) -> None:
        self.space, self.topology = space, topology
        self.features, self.cfg = features or FeatureConfig(), cfg or BridgeConfig()
        self.inert = inert_blueprints(topology, space.blueprints) if self.cfg.mask_inert_blueprints else frozenset()

    def blueprint_log_costs(self) -> Tensor:
        """(n_blueprints,) ln(params / the cheapest blueprint's params) at a reference width
        (0 for inert blueprints, which are masked anyway)."""
        with torch.random.fork_rng(devices=[]):
            params = [blueprint_params(self.topology, b, PROBE_WIDTH) for b in self.space.blueprints]
        cheapest = min((p for p in params if p > 0), default=1)
        return torch.tensor([math.log(p / cheapest) if p > 0 else 0.0 for p in params])

    @property
    def obs_dim(self) -> int:
        return self.features.dim(len(self.space.slot_ids), len(self.space.blueprints))

    def encode(self, obs: Observation, last_op: int) -> Tensor:
        """(D,) features of ``obs``."""
        return encode_observation(obs, last_op, self.space.slot_ids, self.features, self.space.blueprints)

    def masks(self, obs: Observation) -> dict[str, Tensor]:
        """Legal choices of every head (slots the observed model lacks take no op)."""
        present_ids = {s.slot_id for s in obs.slots}
        present = [sid in present_ids for sid in self.space.slot_ids]
        masks = build_masks(self.space, slot_stages(obs, self.space.slot_ids), self.inert, present)
        if self.cfg.prune_judged_only:
            judged_stages = {S.HOLDING} if self.cfg.prune_after_blend else JUDGED
            judged = torch.tensor([st in judged_stages for st in slot_stages(obs, self.space.slot_ids)])
            masks["slot"][OPS.index(Op.PRUNE)] &= judged
            masks["op"][OPS.index(Op.PRUNE)] = bool(masks["slot"][OPS.index(Op.PRUNE)].any())
        if self.cfg.auto_advance:
            masks["op"][OPS.index(Op.ADVANCE)] = False
        return masks

    def decisions(self, action: dict[str, int], obs: Observation, reason: str = "policy") -> list[Decision]:
        """The Decisions a sampled action stands for, in the order they apply: the policy's own,
        the ADVANCE that starts a germinated seed's incubation, then, for the other slots, the
        prune of an expired seed or the ADVANCE of a seed on its way to HOLDING."""
        d = self.space.decode(action, reason)
        out = [d]
        if d.op is Op.GERMINATE and self.cfg.germinate_starts_training:
            out.append(Decision(Op.ADVANCE, d.slot_id, reason="start incubation (G1)"))
        limit = self.cfg.expire_training_epochs
        for v in obs.slots:
            if v.slot_id == d.slot_id:
                continue  # the policy acted on this slot: its own decision goes alone
            if limit and v.stage is S.TRAINING and v.epochs_in_stage >= limit:
                out.append(Decision(Op.PRUNE, v.slot_id, reason=f"expired: {v.epochs_in_stage} epochs in TRAINING",
                                    seed_id=v.seed_id))
            elif self.cfg.auto_advance and v.stage in ADVANCING:
                out.append(Decision(Op.ADVANCE, v.slot_id, reason="advance when the gates allow", seed_id=v.seed_id))
        return out

    def config(self) -> dict:
        """What a checkpoint stores to rebuild this bridge."""
        return {"topology": self.topology, "features": asdict(self.features), "bridge": asdict(self.cfg)}

    @classmethod
    def from_config(cls, space: ActionSpace, extra: dict) -> PolicyBridge:
        bridge = dict(LEGACY_BRIDGE, **extra.get("bridge", {}))
        return cls(space, extra["topology"], FeatureConfig(**extra.get("features", {})), BridgeConfig(**bridge))
