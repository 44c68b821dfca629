"""PolicyController: a trained policy behind the Controller protocol (``esper train
--controller policy:PATH``)."""

from __future__ import annotations

from pathlib import Path

import torch

from esper.leyline.actions import Decision, Observation
from esper.tamiyo.policy.actions import OPS
from esper.tamiyo.policy.bridge import PolicyBridge
from esper.tamiyo.policy.checkpoint import CheckpointError
from esper.tamiyo.policy.masks import stack_masks
from esper.tamiyo.policy.network import PolicyNetwork


class PolicyController:
    """Decides one action per epoch with a PolicyNetwork; keeps its LSTM state across epochs.

    Features, masks and the Decisions an action stands for come from the same PolicyBridge as in
    the PPO environments (blend, tempo, curve and alpha speed included), so the policy acts here
    exactly as it acted while it learned. Slots of the checkpoint that the running model does not
    have are masked out.
    """

    name = "policy"

    def __init__(self, net: PolicyNetwork, bridge: PolicyBridge, greedy: bool = True, seed: int = 0) -> None:
        self.net, self.bridge, self.greedy = net.eval(), bridge, greedy
        self.generator = torch.Generator().manual_seed(seed)
        self.state = net.initial_state(1)
        self.started = False
        self.last_op = 0
        self.last_probs: dict[str, float] = {}
        self.last_value: float | None = None

    @property
    def topology(self) -> str:
        """The host topology the policy was trained on."""
        return self.bridge.topology

    def decide(self, obs: Observation) -> list[Decision]:
        if obs.topology != self.bridge.topology:
            raise ValueError(f"policy was trained on a {self.bridge.topology} host; this run has a {obs.topology} host")
        feats = self.bridge.encode(obs, self.last_op)
        critic_only = self.net.obs_dim - self.net.actor_dim  # the critic's own features: unknown here
        feats = torch.cat([feats, feats.new_zeros(critic_only)]).unsqueeze(0)
        masks = stack_masks([self.bridge.masks(obs)])
        res = self.net.act(feats, masks, self.state, torch.tensor([not self.started]), self.generator, self.greedy)
        self.state, self.started = res.state, True
        self.last_op = int(res.actions["op"][0])
        self.last_probs = {op.name: float(p) for op, p in zip(OPS, res.op_probs[0])}
        self.last_value = None if critic_only else float(res.value[0])
        return self.bridge.decisions({h: int(v[0]) for h, v in res.actions.items()}, obs)


def load_policy_controller(path: str | Path, greedy: bool = True, seed: int = 0) -> PolicyController:
    """A PolicyController from a checkpoint written by ``esper ppo`` (loaded weights_only); a file
    that is not one, or whose network does not fit its own feature settings, raises CheckpointError."""
    net, extra = PolicyNetwork.load(path)
    topology = extra.get("topology")
    if not isinstance(topology, str):
        raise CheckpointError(f"{path}: not a policy of `esper ppo` (no topology in its checkpoint)")
    try:
        bridge = PolicyBridge.from_config(net.space, extra)
    except TypeError as exc:  # feature or bridge settings this version does not know
        raise CheckpointError(f"{path}: unknown policy settings ({str(exc).splitlines()[0]})") from None
    if bridge.obs_dim != net.actor_dim:
        raise CheckpointError(f"{path}: the policy reads {net.actor_dim} observation features, this version of esper makes "
                              f"{bridge.obs_dim} (retrain it with `esper ppo`)")
    return PolicyController(net, bridge, greedy, seed)
