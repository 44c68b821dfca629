"""A PPO training run: rounds of collect + update under a round and time budget, a learner
checkpoint after every round, and resuming from one.

The checkpoint (``learner.pt``) holds plain tensors and builtins only (``torch.load(...,
weights_only=True)``): the policy, the optimizer, the update count, the reward scaler, the
sampling generator, the configurations, and where the data stream and the episodes had got to.
A resumed run continues the learner exactly; its environments start fresh episodes (a half-run
host is not saved), from episode indices and data passes not used before.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import torch

from esper.simic.collect import Learner, RoundResult, new_policy
from esper.simic.config import RunConfig
from esper.simic.env import EnvConfig
from esper.simic.ppo import PPO, PPOConfig
from esper.simic.rewards import RewardConfig
from esper.simic.procs import make_vec_env
from esper.simic.telemetry import EnvEventSink
from esper.tamiyo.policy.bridge import LEGACY_BRIDGE, BridgeConfig
from esper.tamiyo.policy.features import FeatureConfig
from esper.tamiyo.policy.network import NetworkConfig

LEGACY = MappingProxyType({"env": MappingProxyType({"critic_features": False}), "bridge": LEGACY_BRIDGE})
"""Per section, settings added after the first checkpoints and the values that reproduce them."""

if TYPE_CHECKING:
    from esper.simic.vec_env import VecMorphEnv


@dataclass(frozen=True)
class Configs:
    """Everything a run is built from (and a checkpoint restores)."""

    run: RunConfig = RunConfig()
    env: EnvConfig = EnvConfig()
    reward: RewardConfig = RewardConfig()
    ppo: PPOConfig = PPOConfig()
    features: FeatureConfig = FeatureConfig()
    bridge: BridgeConfig = BridgeConfig()
    network: NetworkConfig = NetworkConfig()

    def as_dict(self) -> dict:
        return {f.name: dataclasses.asdict(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Configs:
        """The inverse of ``as_dict``: a section missing from ``d`` takes its defaults, a setting
        missing from a section its value before the setting existed (LEGACY), so that an earlier
        checkpoint resumes as it was."""
        parts = {"run": RunConfig, "env": EnvConfig, "reward": RewardConfig, "ppo": PPOConfig,
                 "features": FeatureConfig, "bridge": BridgeConfig, "network": NetworkConfig}
        return cls(**{name: part(**_tuples(part, {**LEGACY.get(name, {}), **d[name]} if name in d else {}))
                      for name, part in parts.items()})


def _tuples(cls_, values: dict) -> dict:
    """Lists back to tuples where the dataclass default is a tuple (JSON/torch round trips)."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls_)}
    return {k: tuple(v) if isinstance(v, list) and isinstance(defaults.get(k), tuple | type(None)) else v
            for k, v in values.items()}


class Budget:
    """Rounds and seconds left; estimates the next round's time from the ones so far."""

    def __init__(self, rounds: int, seconds: float, done: int = 0, spent: float = 0.0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.rounds, self.seconds, self.done, self.clock = rounds, seconds, done, clock
        self.spent_before, self.start = spent, clock()
        self.times: list[float] = []

    @property
    def elapsed(self) -> float:
        return self.spent_before + self.clock() - self.start

    def record(self, seconds: float) -> None:
        self.done += 1
        self.times.append(seconds)

    def next_round_s(self) -> float:
        """The last few rounds' mean time (0 before any round)."""
        recent = self.times[-5:]
        return sum(recent) / len(recent) if recent else 0.0

    def allows_another(self) -> bool:
        if self.done >= self.rounds:
            return False
        return not self.seconds or self.elapsed + self.next_round_s() <= self.seconds

    def eta_s(self) -> float:
        """Seconds until the run ends: the rounds left at the recent pace, capped by the time left."""
        left = (self.rounds - self.done) * self.next_round_s()
        if self.seconds:
            left = min(left, max(0.0, self.seconds - self.elapsed))
        return left


class PPOTrainer:
    """The environments, the learner and their checkpoint."""

    def __init__(self, cfgs: Configs, env: VecMorphEnv, learner: Learner, rounds_done: int = 0,
                 seconds_spent: float = 0.0) -> None:
        self.cfgs, self.env, self.learner = cfgs, env, learner
        self.rounds_done, self.seconds_spent = rounds_done, seconds_spent

    @classmethod
    def build(cls, cfgs: Configs, writer=None, resume: dict | None = None) -> PPOTrainer:
        """New environments (logging to ``writer`` when given) and learner; ``resume`` (a loaded
        checkpoint) restores the learner."""
        episode0 = resume["next_episode"] if resume else 0
        sinks = (lambda i: EnvEventSink(writer, i)) if writer is not None else None
        env = make_vec_env(cfgs.run.envs, cfgs.run.workers, cfgs.env, cfgs.reward, cfgs.features, cfgs.bridge,
                           writer, episode0, resume["data_passes"] if resume else 0, sinks, cfgs.ppo.teacher)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfgs.run.seed)
            net = new_policy(env, cfgs.network)
        net.set_blueprint_prior(env.bridge.blueprint_log_costs())
        ppo = PPO(net, cfgs.ppo, total_updates=cfgs.run.rounds)
        learner = Learner(env, ppo, torch.Generator().manual_seed(cfgs.run.seed))
        if resume is None:
            return cls(cfgs, env, learner)
        net.load_state_dict(resume["state_dict"])
        ppo.opt.load_state_dict(resume["optimizer"])
        ppo.updates = int(resume["updates"])
        learner.generator.set_state(resume["generator"])
        if learner.scaler is not None and resume.get("scaler"):
            learner.scaler.load_state_dict(resume["scaler"])
        return cls(cfgs, env, learner, int(resume["rounds"]), float(resume["seconds"]))

    def close(self) -> None:
        """Stop the environment workers (if any)."""
        self.env.close()

    def __enter__(self) -> PPOTrainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def cpu_seconds(self) -> tuple[float, list[float]]:
        """(CPU seconds of this process, of each environment worker) so far."""
        return time.process_time(), self.env.worker_cpu_seconds()

    def round(self) -> RoundResult:
        result = self.learner.round(self.cfgs.run.rollout_steps)
        self.rounds_done += 1
        return result

    def policy_extra(self) -> dict:
        """What ``policy.pt`` carries besides the weights: how to rebuild the bridge."""
        return dict(self.env.bridge.config(), task=self.cfgs.env.task, rounds=self.rounds_done)

    def save(self, run_dir: Path, seconds_spent: float) -> None:
        """``policy.pt`` (for ``esper train --controller policy:PATH``) and ``learner.pt`` (for
        ``esper ppo --resume``), each written to a temporary name first, then renamed."""
        net, ppo = self.learner.ppo.net, self.learner.ppo
        _atomic(run_dir / "policy.pt", lambda p: net.save(p, self.policy_extra()))
        state = {"configs": self.cfgs.as_dict(), "state_dict": net.state_dict(), "optimizer": ppo.opt.state_dict(),
                 "updates": ppo.updates, "generator": self.learner.generator.get_state(),
                 "scaler": self.learner.scaler.state_dict() if self.learner.scaler else {},
                 "rounds": self.rounds_done, "seconds": seconds_spent,
                 "next_episode": self.env.next_episode(), "data_passes": self.env.data_passes}
        _atomic(run_dir / "learner.pt", lambda p: torch.save(state, p))


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> dict:
    """A learner checkpoint (``learner.pt``, or a run directory holding one); ValueError if unusable."""
    path = Path(path)
    if path.is_dir():
        path = path / "learner.pt"
    if not path.is_file():
        raise ValueError(f"--resume: no learner checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ValueError(f"--resume: {path} is not a learner checkpoint ({type(exc).__name__})") from None
    missing = {"configs", "state_dict", "optimizer", "updates", "rounds"} - set(ckpt)
    if missing:
        raise ValueError(f"--resume: {path} is not a learner checkpoint (no {', '.join(sorted(missing))})")
    return ckpt
