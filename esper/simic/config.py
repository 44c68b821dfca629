"""The configurations of a PPO run (``esper ppo``): plain dataclasses, no torch, so that the
command line can show their defaults without importing the training code."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_WORKERS = min(2, os.cpu_count() or 1)
"""Worker processes of a default run: the 2 cores the default is sized for, where the machine has them."""
CRITIC_FEATURES: tuple[str, ...] = ("reward_so_far", "shadow_gap")
"""What an environment tells the critic alone (esper.simic.env MorphEnv.critic_features): the
episode's summed reward, and the mean accuracy gap to the host-only shadow over the reward's
window (pp / 10)."""
TEACHERS: tuple[str, ...] = ("none", "heuristic")
"""Teachers ``esper ppo --teacher`` offers (esper.simic.teacher)."""
DEFAULT_BUDGET_S = 780.0
"""Seconds of learning of a default run: 13 minutes, leaving room for start-up and the checkpoint."""


@dataclass(frozen=True)
class RunConfig:
    """How long a PPO run learns and on how many environments."""

    envs: int = 4
    # environments stepping in lockstep
    rounds: int = 150
    # rounds at most (one PPO update each)
    rollout_steps: int = 8
    # lockstep steps collected per round (the LSTM state carries over between rounds)
    time_budget_s: float = 0.0
    # stop before a round that would end past this many seconds of learning (0 = no limit)
    seed: int = 0
    # seed of the policy's initial weights and of action sampling
    workers: int = 1
    # processes the environments are split over (esper.simic.procs); the run steps the same either way


@dataclass(frozen=True)
class EnvConfig:
    """What every environment trains and for how long (a short proxy of a full training run)."""

    task: str = "synthetic-images"
    # task name (esper.runtime.tasks)
    episode_length: int = 23
    # RL steps per episode; the host trains episode_length + 1 epochs (the first one before any
    # action) on a cosine LR schedule over those epochs, and the last epoch ends the episode.
    # With synthetic_train, the proxy is sized so that growth pays on it, as
    # bench/bench_ppo_proxy.py measures (the heuristic's gain over the host alone): a policy
    # cannot learn to grow where waiting is as good
    seed: int = 0
    # base seed: the shared data stream's seed and the root of every episode's host seed
    device: str = "cpu"
    # device of the host models
    slots: tuple[str, ...] | None = None
    # slot ids to enable (None = every slot of the host)
    synthetic_train: int = 2048
    # training samples per epoch of the synthetic task (fresh ones every epoch; small: one epoch
    # per RL step on CPU)
    synthetic_val: int = 512
    # validation samples of the synthetic task
    batch_size: int = 64
    # host training batch size
    gates: str = "permissive"
    # gate mode of the lifecycle ('strict' or 'permissive')
    data_dir: str | None = None
    # data directory (cifar10)
    fault: str | None = None
    # deliberate fault of every episode, 'nan@EPOCH' or 'spike@EPOCH' (tests the death path)
    critic_features: bool = True
    # the environments also report what only training can know, for the critic alone
    # (CRITIC_FEATURES; NetworkConfig.critic_inputs): the reward is the change of the gap to the
    # host-only shadow, so what is left of an episode's return depends on the gap reached so far,
    # which the policy's own observation does not show

    @property
    def critic_dim(self) -> int:
        """Features at the end of each observation that are the critic's alone."""
        return len(CRITIC_FEATURES) if self.critic_features else 0
    shared_host: bool = True
    # environments starting an episode at the same step start from the same host weights (one host
    # seed per episode index), so one host-only shadow pairs with all of them; False gives every
    # environment its own host seed (and its own shadow)


@dataclass(frozen=True)
class PPOConfig:
    """Hyper-parameters of the PPO update (CORE_SPEC §8)."""

    lr: float = 1e-3
    # Adam learning rate at the top of the schedule. A round holds few samples (K envs x T steps,
    # order 32-128), so an update takes few optimizer steps: at 3e-4 one update moved the policy by
    # approx KL ~1e-4 on a real round (4 envs x 10 steps, 8 Adam steps); at 2e-3 the default run's
    # updates ended near 5e-2 (the top of the 1e-3..5e-2 band) with the KL stop firing every round
    gamma: float = 0.995
    # discount; also the gamma of the potential-based shaping
    gae_lambda: float = 0.97
    # GAE lambda
    clip: float = 0.2
    # ratio clip of each head's surrogate
    value_clip: float | None = None
    # clip of the value update around the old value (None = unclipped). Returns are O(1-10) here,
    # so a 0.2 clip let the critic move 0.2 per update and explained variance stayed near 0;
    # value clipping does not help PPO in general (Andrychowicz et al. 2021, "What matters ...")
    vf_coef: float = 0.5
    # weight of the value loss
    entropy_coefs: dict[str, float] = field(default_factory=lambda: {
        "op": 0.01, "slot": 0.005, "blueprint": 0.005, "blend": 0.002, "tempo": 0.002,
        "alpha_target": 0.002, "alpha_speed": 0.002, "curve": 0.002})
    # entropy bonus per head (heads missing here get 0)
    max_grad_norm: float = 0.5
    # global gradient-norm clip of the policy
    update_epochs: int = 4
    # passes over the round's data
    minibatches: int = 4
    # minibatches per pass (groups of environments; capped at the number of environments)
    target_kl: float | None = 0.02
    # stop the update before a step whose minibatch approx KL exceeds this (None = never)
    scale_rewards: bool = True
    # divide rewards by the running std of the discounted return (esper.simic.collect.RewardScaler)
    normalize_advantages: bool = True
    # standardise advantages over the whole round (not per minibatch: a minibatch is a group of
    # whole environment sequences, and the environments of a round share their host, so the
    # difference between environments is the signal; per-minibatch centring erased it)
    warmup_updates: int = 3
    # updates of linear LR warmup (never more than a tenth of the run's updates)
    lr_floor: float = 0.1
    # final LR fraction of the cosine decay
    teacher: str = "heuristic"
    # 'heuristic': every update also imitates what the heuristic would do in the states the policy
    # reached (esper.simic.teacher), with a weight that decays to 0; 'none': PPO alone. On held-out
    # seeds of the proxy a default run's policy ended 3 pp short of the heuristic without a teacher
    # and within the noise of it (0.1 to 0.6 pp short) with one (bench/PERFORMANCE.md)
    teacher_coef: float = 1.0
    # weight of the imitation loss (cross-entropy of the teacher's choice) at the first update ...
    teacher_fraction: float = 1.0
    # ... decaying linearly to 0 over this fraction of the run's rounds (--rounds, not the time
    # budget: a default run that stops on its budget ends with a weight of 0.15 to 0.25)
