"""K morphogenetic environments stepping in lockstep: one host epoch per RL step, one batched
policy call per step (``esper.simic.collect``), ended episodes reset in place.

The environments share one data iterator (``SharedData``): each step draws one pass of training
batches once, and every environment trains that step's epoch on it — an environment that resets
in the step trains its new episode's first epoch on the same batches.

Paired reward: every episode has a host-only *shadow*, a MorphEnv that starts from the same host
weights (the same host seed), trains on the same batches and only ever waits. The paired reward
credits an environment with its accuracy change minus its shadow's, so the host's own learning
nets out. Environments that start an episode at the same step share a host seed by default
(``EnvConfig.shared_host``), and then one shadow serves them all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from esper.kasmina.blueprints import blueprint_names
from esper.leyline.actions import Decision
from esper.nissa.sink import Sink
from esper.simic.collect import StepOutcome
from esper.simic.config import TEACHERS
from esper.simic.env import EnvConfig, MorphEnv, episode_seed, task_options
from esper.simic.rewards import RewardConfig
from esper.simic.shared_data import Batch, SharedData
from esper.simic.teacher import HeuristicTeacher
from esper.simic.telemetry import PolicySink
from esper.tamiyo.policy.actions import OPS, ActionSpace
from esper.tamiyo.policy.bridge import BridgeConfig, PolicyBridge
from esper.tamiyo.policy.features import FeatureConfig
from esper.tamiyo.policy.masks import stack_masks
from esper.tamiyo.policy.network import ActResult

ShadowKey = tuple[int, int]
"""(host seed, step at which its episode began)."""


class ShadowPool:
    """The host-only shadows of the running episodes, one per (host seed, start step)."""

    def __init__(self, cfg: EnvConfig, reward_cfg: RewardConfig, data: SharedData) -> None:
        self.cfg, self.reward_cfg, self.data = cfg, reward_cfg, data
        self.shadows: dict[ShadowKey, MorphEnv] = {}
        self.gains: dict[ShadowKey, float] = {}

    def ensure(self, key: ShadowKey, batches: tuple[Batch, ...]) -> None:
        """Start the shadow of ``key`` (its first epoch on ``batches``) unless it runs already."""
        if key not in self.shadows:
            self.shadows[key] = MorphEnv(-1, self.cfg, self.reward_cfg, self.data, batches, host_seed=key[0])

    def step(self, batches: tuple[Batch, ...]) -> None:
        """Train every shadow one epoch; keep each one's accuracy change."""
        for key, shadow in self.shadows.items():
            before = shadow.acc
            shadow.step([], batches)
            self.gains[key] = shadow.acc - before

    def keep(self, keys: set[ShadowKey]) -> None:
        """Drop the shadows no environment pairs with any more."""
        for key in [k for k in self.shadows if k not in keys]:
            del self.shadows[key]
            self.gains.pop(key, None)


class VecMorphEnv:
    """``num_envs`` MorphEnvs behind the VecEnv protocol of ``esper.simic.collect``."""

    def __init__(self, num_envs: int, cfg: EnvConfig | None = None, reward_cfg: RewardConfig | None = None,
                 feature_cfg: FeatureConfig | None = None,
                 sink_factory: Callable[[int], Sink] = lambda i: Sink(),
                 bridge_cfg: BridgeConfig | None = None, first_episode: int = 0, data_passes: int = 0,
                 indices: tuple[int, ...] | None = None, teacher: str = "none") -> None:
        """``first_episode`` and ``data_passes`` (a resumed run) start the episode indices (host
        seeds) and the data stream where an earlier run left them; ``indices`` (a worker's share of
        a larger run, esper.simic.procs) are the environments' indices, 0..num_envs-1 by default;
        ``teacher`` ('heuristic') labels every state with the heuristic's choice (teacher_actions)."""
        if num_envs < 1:
            raise ValueError("num_envs must be >= 1")
        if teacher not in TEACHERS:
            raise ValueError(f"unknown teacher {teacher!r} (one of {', '.join(TEACHERS)})")
        self.indices = tuple(indices) if indices is not None else tuple(range(num_envs))
        cfg, self.reward_cfg = cfg or EnvConfig(), reward_cfg or RewardConfig()
        self.num_envs, self.cfg = num_envs, cfg
        self.data = SharedData.build(cfg.task, task_options(cfg), cfg.device)
        self.data.skip_to(data_passes)
        self.steps = 0
        self.paired = self.reward_cfg.mode == "paired"
        self.pool = ShadowPool(cfg, self.reward_cfg, self.data)
        first = self.data.draw()
        self.keys = [self._key(i, first_episode) for i in range(num_envs)]
        self.envs = [MorphEnv(self.indices[i], cfg, self.reward_cfg, self.data, first, sink_factory, self.keys[i][0],
                              first_episode) for i in range(num_envs)]
        self._pair(first)
        model = self.envs[0].model
        self.space = ActionSpace(tuple(model.order), tuple(blueprint_names(model.topology)))
        self.bridge = PolicyBridge(self.space, model.topology, feature_cfg, bridge_cfg)
        self.last_op = [0] * num_envs
        self.last_info: list[dict] = [{} for _ in range(num_envs)]
        slot_cfg = self.envs[0].train_config(0).slot
        self.teachers = [HeuristicTeacher(self.space, slot_cfg) for _ in range(num_envs)] if teacher == "heuristic" else None

    def _key(self, i: int, episode: int) -> ShadowKey:
        """The host seed of environment ``i``'s ``episode`` (shared across environments by default)."""
        return episode_seed(self.cfg.seed, 0 if self.cfg.shared_host else self.indices[i], episode), self.steps

    def _pair(self, batches: tuple[Batch, ...]) -> None:
        if self.paired:
            for key in self.keys:
                self.pool.ensure(key, batches)
            self.pool.keep(set(self.keys))

    @property
    def critic_dim(self) -> int:
        return self.cfg.critic_dim

    @property
    def obs_dim(self) -> int:
        return self.bridge.obs_dim + self.critic_dim

    def _features(self, i: int, obs) -> Tensor:
        """Environment ``i``'s features of ``obs``, then the critic's own (of its current state)."""
        feats = self.bridge.encode(obs, self.last_op[i])
        if not self.cfg.critic_features:
            return feats
        return torch.cat([feats, torch.tensor(self.envs[i].critic_features(), dtype=feats.dtype)])

    def next_episode(self) -> int:
        """An episode index no environment has used yet (where a resumed run starts)."""
        return max(e.episode for e in self.envs) + 1

    @property
    def data_passes(self) -> int:
        return self.data.passes

    def worker_cpu_seconds(self) -> list[float]:
        """No worker processes: the environments run in the caller's process."""
        return []

    def close(self) -> None:
        """Nothing to release (the protocol of esper.simic.procs.ProcVecEnv)."""

    @property
    def feature_cfg(self) -> FeatureConfig:
        return self.bridge.features

    def observe(self) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        feats = torch.stack([self._features(i, e.obs) for i, e in enumerate(self.envs)])
        masks = stack_masks([self.bridge.masks(e.obs) for e in self.envs])
        starts = torch.tensor([e.fresh for e in self.envs], dtype=torch.bool)
        return feats, masks, starts

    def teacher_actions(self) -> dict[str, Tensor] | None:
        """The teacher's choice in every environment's current state, head -> (N,) long (None
        without a teacher)."""
        if self.teachers is None:
            return None
        labels = [t.label(e.obs, self.bridge.masks(e.obs), e.episode) for t, e in zip(self.teachers, self.envs)]
        return {h: torch.tensor([a[h] for a in labels], dtype=torch.long) for h in self.space.heads}

    def decisions(self, act: ActResult, i: int) -> list[Decision]:
        """Environment ``i``'s Decisions for the sampled action (the bridge deployment uses too)."""
        return self.bridge.decisions({h: int(v[i]) for h, v in act.actions.items()}, self.envs[i].obs)

    def step(self, act: ActResult) -> StepOutcome:
        rewards, term, trunc, finals, comps = [], [], [], [], []
        op_names = [op.name for op in OPS]
        batches = self.data.draw()  # once per step, for every environment and shadow
        self.steps += 1
        if self.paired:
            self.pool.step(batches)
        for i, env in enumerate(self.envs):
            decisions = self.decisions(act, i)
            if isinstance(env.sink, PolicySink):
                env.sink.annotate(dict(zip(op_names, act.op_probs[i].tolist())), float(act.value[i]))
            res = env.step(decisions, batches, self.pool.gains.get(self.keys[i], 0.0))
            if isinstance(env.sink, PolicySink):
                env.sink.reward(res.components)
            self.last_op[i] = int(act.actions["op"][i])
            finals.append(self._features(i, res.final_obs))
            rewards.append(sum(res.components.values()))
            term.append(res.terminated)
            trunc.append(res.truncated)
            comps.append(res.components)
            self.last_info[i] = dict(res.info, took_effect=res.took_effect, op=decisions[0].op.name, died=res.died)
            if res.terminated or res.truncated:
                self.keys[i] = self._key(i, env.episode + 1)
                env.reset(batches, self.keys[i][0])
                self.last_op[i] = 0
        self._pair(batches)
        return StepOutcome(torch.tensor(rewards, dtype=torch.float32), torch.tensor(term), torch.tensor(trunc),
                           torch.stack(finals), comps)
