"""K morphogenetic environments stepping in lockstep: one host epoch per RL step, one batched
policy call per step (``esper.simic.collect``), ended episodes reset in place.

The environments share one data iterator (``SharedData``): each step draws one pass of training
batches once, and every environment trains that step's epoch on it — an environment that resets
in the step trains its new episode's first epoch on the same batches.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from esper.kasmina.blueprints import blueprint_names
from esper.nissa.sink import Sink
from esper.simic.collect import StepOutcome
from esper.simic.env import EnvConfig, MorphEnv, task_options
from esper.simic.rewards import RewardConfig
from esper.simic.shared_data import SharedData
from esper.simic.telemetry import PolicySink
from esper.tamiyo.policy.actions import OPS, ActionSpace
from esper.tamiyo.policy.features import FeatureConfig, encode_observation, slot_stages
from esper.tamiyo.policy.masks import build_masks, stack_masks
from esper.tamiyo.policy.network import ActResult


class VecMorphEnv:
    """``num_envs`` MorphEnvs behind the VecEnv protocol of ``esper.simic.collect``."""

    def __init__(self, num_envs: int, cfg: EnvConfig | None = None, reward_cfg: RewardConfig | None = None,
                 feature_cfg: FeatureConfig | None = None,
                 sink_factory: Callable[[int], Sink] = lambda i: Sink()) -> None:
        if num_envs < 1:
            raise ValueError("num_envs must be >= 1")
        cfg, reward_cfg = cfg or EnvConfig(), reward_cfg or RewardConfig()
        feature_cfg = feature_cfg or FeatureConfig()
        self.num_envs, self.cfg, self.feature_cfg = num_envs, cfg, feature_cfg
        self.data = SharedData.build(cfg.task, task_options(cfg), cfg.device)
        first = self.data.draw()
        self.envs = [MorphEnv(i, cfg, reward_cfg, self.data, first, sink_factory) for i in range(num_envs)]
        model = self.envs[0].model
        self.space = ActionSpace(tuple(model.order), tuple(blueprint_names(model.topology)))
        self.last_op = [0] * num_envs
        self.last_info: list[dict] = [{} for _ in range(num_envs)]

    @property
    def obs_dim(self) -> int:
        return self.feature_cfg.dim(len(self.space.slot_ids))

    def _features(self, i: int, obs) -> Tensor:
        return encode_observation(obs, self.last_op[i], self.space.slot_ids, self.feature_cfg)

    def observe(self) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        feats = torch.stack([self._features(i, e.obs) for i, e in enumerate(self.envs)])
        masks = stack_masks([build_masks(self.space, slot_stages(e.obs, self.space.slot_ids)) for e in self.envs])
        starts = torch.tensor([e.fresh for e in self.envs], dtype=torch.bool)
        return feats, masks, starts

    def step(self, act: ActResult) -> StepOutcome:
        rewards, term, trunc, finals, comps = [], [], [], [], []
        op_names = [op.name for op in OPS]
        batches = self.data.draw()  # once per step, for every environment
        for i, env in enumerate(self.envs):
            pa = self.space.decode({h: int(v[i]) for h, v in act.actions.items()})
            if isinstance(env.sink, PolicySink):
                env.sink.annotate(dict(zip(op_names, act.op_probs[i].tolist())), float(act.value[i]))
            res = env.step(pa, batches)
            if isinstance(env.sink, PolicySink):
                env.sink.reward(res.components)
            self.last_op[i] = int(act.actions["op"][i])
            finals.append(self._features(i, res.final_obs))
            rewards.append(sum(res.components.values()))
            term.append(res.terminated)
            trunc.append(res.truncated)
            comps.append(res.components)
            self.last_info[i] = dict(res.info, took_effect=res.took_effect, op=pa.decision.op.name)
            if res.terminated or res.truncated:
                env.reset(batches)
                self.last_op[i] = 0
        return StepOutcome(torch.tensor(rewards, dtype=torch.float32), torch.tensor(term), torch.tensor(trunc),
                           torch.stack(finals), comps)
