"""Collecting a round of experience from any lockstep vectorised environment.

The environment side is the small ``VecEnv`` protocol below, so the same loop drives both the
morphogenetic environments (``esper.simic.vec_env``) and toy environments in tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from esper.simic.ppo import PPO, UpdateStats
from esper.simic.rollout import Rollout, RolloutBuffer, State
from esper.tamiyo.policy.network import ActResult, NetworkConfig, PolicyNetwork
from esper.tamiyo.policy.normalizer import RunningNorm


@dataclass
class StepOutcome:
    """What N environments report after a lockstep step."""

    rewards: Tensor
    # (N,) total reward of the step
    terminated: Tensor
    # (N,) bool: episode over for good (no bootstrap)
    truncated: Tensor
    # (N,) bool: episode cut by its length limit (bootstrap)
    final_obs: Tensor
    # (N, D) features of the state each env reached (before any reset)
    components: list[dict[str, float]] = field(default_factory=list)
    # per env: reward by component (may be empty)


class VecEnv(Protocol):
    num_envs: int

    def observe(self) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """(features (N, D), masks {head: (N, ...)}, starts (N,) bool)."""

    def step(self, act: ActResult) -> StepOutcome:
        """Apply the sampled actions; ended environments reset themselves."""

    def teacher_actions(self) -> dict[str, Tensor] | None:
        """The teacher's choice in every current state, head -> (N,) long; None without a teacher."""


def new_policy(env, cfg: NetworkConfig = NetworkConfig()) -> PolicyNetwork:
    """A policy network for ``env``'s observations: the actor reads the policy's features, the
    critic also the environments' critic-only ones (``env.critic_dim`` of them, at the end)."""
    return PolicyNetwork(env.obs_dim, env.space, dataclasses.replace(cfg, critic_inputs=env.critic_dim))


@dataclass
class RoundResult:
    rollout: Rollout
    stats: UpdateStats | None
    episode_returns: list[float]
    # returns of episodes that ended in this round
    mean_reward: float
    # mean raw (unscaled) reward per step
    components: dict[str, float]
    # mean per-step reward by component


class RewardScaler:
    """Divides rewards by the running std of the discounted return (the reward scaling of
    Stable-Baselines3's VecNormalize), so the critic's targets stay O(1) whatever the reward's
    units: with raw returns of O(10) the value loss dominated the shared trunk's gradient (after
    the global norm clip) and the toy task's policy learned less."""

    def __init__(self, num_envs: int, gamma: float, eps: float = 1e-8) -> None:
        self.gamma, self.eps = gamma, eps
        self.ret = torch.zeros(num_envs, dtype=torch.float64)
        self.stats = RunningNorm(1)

    def __call__(self, rewards: Tensor, ended: Tensor) -> Tensor:
        """Scaled (N,) rewards; ``ended`` (N,) bool resets the discounted return after the step."""
        self.ret = self.ret * self.gamma + rewards.to(torch.float64)
        self.stats.update(self.ret.unsqueeze(1))
        scale = float(self.stats.var[0].sqrt()) + self.eps
        self.ret[ended] = 0.0
        return (rewards.to(torch.float64) / scale).to(rewards.dtype)

    def state_dict(self) -> dict:
        return {"ret": self.ret.clone(), **{k: v.clone() for k, v in self.stats.state_dict().items()}}

    def load_state_dict(self, d: dict) -> None:
        self.ret = d["ret"].clone()
        self.stats.load_state_dict({k: d[k] for k in ("mean", "var", "count")})


def collect(env: VecEnv, net: PolicyNetwork, steps: int, state: State, running: list[float],
            generator: torch.Generator | None = None,
            scaler: RewardScaler | None = None,
            teacher: bool = False) -> tuple[Rollout, State, list[float], list[dict], float]:
    """Run ``steps`` lockstep steps with the current policy. ``running`` (per-env return of the
    unfinished episodes, unscaled) is updated in place; the rollout holds the rewards ``scaler``
    made (raw without one) and, with ``teacher``, the environments' teacher labels. Returns the
    rollout, the LSTM state to continue from, the returns of episodes that ended, every step's
    reward components, and the mean raw reward per step."""
    buf = RolloutBuffer(state)
    finished, comps, total = [], [], 0.0
    no_start = torch.zeros(1, env.num_envs, dtype=torch.bool)
    for _ in range(steps):
        feats, masks, starts = env.observe()
        taught = env.teacher_actions() if teacher else None  # of this state, before the step
        res = net.act(feats, masks, state, starts, generator)
        out = env.step(res)
        with torch.no_grad():  # V of the reached state, the bootstrap where an episode is cut
            _, boot, _ = net(out.final_obs.unsqueeze(0), res.state, no_start)
        buf.add(feats, starts, res.actions, masks, res.head_logp, res.value, taught)
        scaled = scaler(out.rewards, out.terminated | out.truncated) if scaler else out.rewards
        buf.add_outcome(scaled, out.terminated, out.truncated, boot[0])
        comps.extend(out.components)
        for i, r in enumerate(out.rewards.tolist()):
            running[i] += r
            total += r
            if out.terminated[i] or out.truncated[i]:
                finished.append(running[i])
                running[i] = 0.0
        state = res.state
    feats, _, starts = env.observe()
    with torch.no_grad():
        _, final_v, _ = net(feats.unsqueeze(0), state, starts.unsqueeze(0))
    return buf.finish(final_v[0]), state, finished, comps, total / max(1, steps * env.num_envs)


class Learner:
    """Rounds of collect + one PPO update, carrying the LSTM state and episode returns across rounds."""

    def __init__(self, env: VecEnv, ppo: PPO, generator: torch.Generator | None = None) -> None:
        self.env, self.ppo, self.generator = env, ppo, generator
        self.state = ppo.net.initial_state(env.num_envs)
        self.running = [0.0] * env.num_envs
        self.scaler = RewardScaler(env.num_envs, ppo.cfg.gamma) if ppo.cfg.scale_rewards else None

    def round(self, steps: int) -> RoundResult:
        """Collect ``steps`` steps, run one PPO update, then fold the round's observations into the
        normaliser (after the update, so it replays exactly the features the policy acted on)."""
        rollout, self.state, finished, comps, mean_reward = collect(self.env, self.ppo.net, steps, self.state,
                                                       self.running, self.generator, self.scaler,
                                                       self.ppo.cfg.teacher != "none")
        stats = self.ppo.update(rollout)
        self.ppo.net.norm.update(rollout.obs.reshape(-1, rollout.obs.shape[-1]))
        mean_comp: dict[str, float] = {}
        for c in comps:
            for k, v in c.items():
                mean_comp[k] = mean_comp.get(k, 0.0) + v / len(comps)
        return RoundResult(rollout, stats, finished, mean_reward, mean_comp)
