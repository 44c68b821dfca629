"""A teacher for the learned controller: what the heuristic would do in each state the policy
reaches, as head indices that the PPO update imitates with a decaying weight (kickstarting,
Schmitt et al. 2018, "Kickstarting Deep Reinforcement Learning").

The states are the policy's own, not the heuristic's (as in DAgger, Ross et al. 2011), so the
policy learns what the heuristic would do where the policy itself goes. The heuristic is
consulted once per epoch of an episode, as it is in ``esper train``: its blueprint rotation and
prune penalties evolve with the episode. It may name several decisions for one epoch (seeds in
several slots); the policy takes one op per step, so the label is the first decision the
bridge lets the policy take itself (ADVANCE is the bridge's own) and that the masks allow.
"""

from __future__ import annotations

from esper.leyline.actions import Decision, Observation, Op
from esper.leyline.config import HeuristicConfig, SlotConfig
from esper.tamiyo.heuristic import HeuristicController
from esper.tamiyo.policy.actions import OPS, ActionSpace

BRIDGE_OPS = frozenset({Op.WAIT, Op.ADVANCE})
"""Ops a label never names: WAIT is the fallback, ADVANCE is applied by the bridge."""


def legal(action: dict[str, int], masks: dict) -> bool:
    """The action is allowed by one environment's ``masks`` (the bridge's, unstacked)."""
    op = action["op"]
    if not bool(masks["op"][op]):
        return False
    if OPS[op] is Op.WAIT:
        return True
    if not bool(masks["slot"][op][action["slot"]]):
        return False
    return OPS[op] is not Op.GERMINATE or bool(masks["blueprint"][action["blueprint"]])


class HeuristicTeacher:
    """Labels the states of one environment's episodes with the heuristic's choice."""

    def __init__(self, space: ActionSpace, slot_cfg: SlotConfig = SlotConfig(),
                 cfg: HeuristicConfig = HeuristicConfig()) -> None:
        self.space, self.slot_cfg, self.cfg = space, slot_cfg, cfg
        self.wait = space.encode(Decision(Op.WAIT))
        self.controller = HeuristicController(cfg)
        self.key: tuple[int, int] | None = None
        self.action = self.wait

    def label(self, obs: Observation, masks: dict, episode: int) -> dict[str, int]:
        """The label of ``obs``, the state of epoch ``obs.epoch`` of ``episode``. The heuristic
        decides once per (episode, epoch); asking again returns the same label."""
        key = (episode, obs.epoch)
        if key == self.key:
            return self.action
        if self.key is None or self.key[0] != episode:
            self.controller = HeuristicController(self.cfg)
        self.key = key
        self.action = self._first_legal(self.controller.decide(obs), masks)
        return self.action

    def _first_legal(self, decisions: list[Decision], masks: dict) -> dict[str, int]:
        c = self.slot_cfg
        for d in decisions:
            if d.op in BRIDGE_OPS:
                continue
            try:
                a = self.space.encode(d, c.blend, c.tempo, c.curve)
            except ValueError:
                continue
            if legal(a, masks):
                return a
        return self.wait
