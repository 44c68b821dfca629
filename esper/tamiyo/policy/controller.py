"""PolicyController: a trained policy behind the Controller protocol (``esper train
--controller policy:PATH``)."""

from __future__ import annotations

from pathlib import Path

import torch

from esper.leyline.actions import Decision, Observation
from esper.tamiyo.policy.actions import OPS
from esper.tamiyo.policy.checkpoint import CheckpointError
from esper.tamiyo.policy.features import FeatureConfig, encode_observation, slot_stages
from esper.tamiyo.policy.masks import build_masks, stack_masks
from esper.tamiyo.policy.network import PolicyNetwork


class PolicyController:
    """Decides one action per epoch with a PolicyNetwork; keeps its LSTM state across epochs.

    Slots of the checkpoint that the running model does not have are masked out. The GERMINATE
    settings heads (blend, tempo, curve) are not applied here (a Decision cannot carry them); the
    run's SlotConfig holds. SET_ALPHA_TARGET's target and speed travel in the Decision.
    """

    name = "policy"

    def __init__(self, net: PolicyNetwork, feature_cfg: FeatureConfig | None = None, greedy: bool = True,
                 seed: int = 0, topology: str | None = None) -> None:
        self.topology = topology
        self.net, self.feature_cfg, self.greedy = net.eval(), feature_cfg or FeatureConfig(), greedy
        self.generator = torch.Generator().manual_seed(seed)
        self.state = net.initial_state(1)
        self.started = False
        self.last_op = 0
        self.last_probs: dict[str, float] = {}
        self.last_value: float | None = None

    def decide(self, obs: Observation) -> list[Decision]:
        if self.topology and obs.topology != self.topology:
            raise ValueError(f"policy was trained on a {self.topology} host; this run has a {obs.topology} host")
        space = self.net.space
        feats = encode_observation(obs, self.last_op, space.slot_ids, self.feature_cfg).unsqueeze(0)
        masks = build_masks(space, slot_stages(obs, space.slot_ids))
        present = torch.tensor([sid in {s.slot_id for s in obs.slots} for sid in space.slot_ids])
        masks["slot"] &= present.unsqueeze(0)
        masks["op"] &= masks["slot"].any(1)
        masks["op"][0] = True  # WAIT
        res = self.net.act(feats, stack_masks([masks]), self.state, torch.tensor([not self.started]),
                           self.generator, self.greedy)
        self.state, self.started = res.state, True
        self.last_op = int(res.actions["op"][0])
        self.last_probs = {op.name: float(p) for op, p in zip(OPS, res.op_probs[0])}
        self.last_value = float(res.value[0])
        action = space.decode({h: int(v[0]) for h, v in res.actions.items()}, reason="policy")
        return [action.decision]


def load_policy_controller(path: str | Path, greedy: bool = True, seed: int = 0) -> PolicyController:
    """A PolicyController from a checkpoint written by ``esper ppo`` (loaded weights_only); a file
    that is not one, or whose network does not fit its own feature settings, raises CheckpointError."""
    net, extra = PolicyNetwork.load(path)
    try:
        feature_cfg = FeatureConfig(**extra.get("features", {}))
    except TypeError as exc:
        raise CheckpointError(f"{path}: unknown feature settings {extra.get('features')!r} ({exc})") from None
    width = feature_cfg.dim(len(net.space.slot_ids))
    if net.obs_dim != width:
        raise CheckpointError(f"{path}: the policy reads {net.obs_dim} observation features, but its feature "
                              f"settings and {len(net.space.slot_ids)} slots make {width}")
    topology = extra.get("topology")
    return PolicyController(net, feature_cfg, greedy, seed, topology if isinstance(topology, str) else None)
