"""A toy lockstep environment whose best action is known, for testing the learner end to end.

Each step shows one of three contexts (one-hot). The right action: context 0 -> WAIT;
context 1 -> GERMINATE with blueprint 1 (any legal slot); context 2 -> PRUNE (only slot 2 holds
a live seed). Reward 1 for the right action, 0 otherwise; episodes last ``length`` steps and are
truncated (bootstrapped). With ``teach``, ``teacher_actions`` names the right action of each
state (a teacher, esper.simic.teacher); ``reward_scale`` 0 makes the teacher the only signal.
"""

import torch

from esper.leyline.actions import Op
from esper.leyline.stages import SeedStage
from esper.simic.collect import StepOutcome
from esper.tamiyo.policy.actions import OPS, ActionSpace
from esper.tamiyo.policy.masks import build_masks, stack_masks

SPACE = ActionSpace(("s0", "s1", "s2"), ("noop", "good", "bad"))
STAGES = [SeedStage.DORMANT, SeedStage.DORMANT, SeedStage.TRAINING]


class ContextEnv:
    def __init__(self, num_envs: int, length: int, seed: int, teach: bool = False, reward_scale: float = 1.0) -> None:
        self.num_envs, self.length, self.teach, self.reward_scale = num_envs, length, teach, reward_scale
        self.g = torch.Generator().manual_seed(seed)
        self.t = torch.zeros(num_envs, dtype=torch.long)
        self.ctx = torch.randint(0, 3, (num_envs,), generator=self.g)
        self.masks = stack_masks([build_masks(SPACE, STAGES)] * num_envs)

    def feats(self) -> torch.Tensor:
        return torch.nn.functional.one_hot(self.ctx, 3).float()

    def observe(self):
        return self.feats(), self.masks, self.t == 0

    def right(self, a) -> torch.Tensor:
        op = a["op"]
        wait = (self.ctx == 0) & (op == OPS.index(Op.WAIT))
        germ = (self.ctx == 1) & (op == OPS.index(Op.GERMINATE)) & (a["blueprint"] == 1)
        prune = (self.ctx == 2) & (op == OPS.index(Op.PRUNE))
        return (wait | germ | prune).float()

    def teacher_actions(self):
        if not self.teach:
            return None
        out = {h: torch.zeros(self.num_envs, dtype=torch.long) for h in SPACE.heads}
        out["op"] = torch.tensor([OPS.index(op) for op in (Op.WAIT, Op.GERMINATE, Op.PRUNE)])[self.ctx]
        out["blueprint"] = torch.ones(self.num_envs, dtype=torch.long)  # "good"
        out["slot"] = torch.where(self.ctx == 2, 2, 0)  # germinate in s0, prune the live seed of s2
        return out

    def step(self, act) -> StepOutcome:
        reward = self.right(act.actions) * self.reward_scale
        self.t += 1
        self.ctx = torch.randint(0, 3, (self.num_envs,), generator=self.g)
        final = self.feats()
        trunc = self.t >= self.length
        self.t[trunc] = 0
        return StepOutcome(reward, torch.zeros(self.num_envs, dtype=torch.bool), trunc, final,
                           [{"right": r} for r in reward.tolist()])
