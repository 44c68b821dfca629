"""One morphogenetic training environment: a host training run driven one epoch per RL step.

Everything here goes through the core's public pieces (tasks, MorphogeneticModel, Trainer,
Lifecycle); the single private call, ``Trainer._control``, is isolated in ``_apply`` so a public
hook can replace it. Each environment owns its torch RNG stream, so environments are
independent of each other and of the order they step in. Training batches come from outside
(``esper.simic.shared_data``): every epoch trains on the batches the caller passes in.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from esper.kasmina.model import MorphogeneticModel
from esper.leyline.actions import Decision, Observation, Op
from esper.leyline.config import GateConfig, TrainConfig
from esper.nissa.sink import Sink
from esper.runtime.synthetic import SyntheticConfig
from esper.runtime.tasks import TaskOptions
from esper.simic.rewards import RewardConfig, StepFacts, compute_reward
from esper.simic.shared_data import Batch, SharedData
from esper.tamiyo.policy.actions import PolicyAction
from esper.tolaria.trainer import FaultSpec, Trainer


@dataclass(frozen=True)
class EnvConfig:
    """What every environment trains and for how long."""

    task: str = "synthetic-images"
    # task name (esper.runtime.tasks)
    episode_length: int = 20
    # RL steps per episode; the host trains episode_length + 1 epochs (the first one before any action)
    seed: int = 0
    # base seed: the shared data stream's seed; environment k, episode j get a host seed
    # derived from (seed, k, j)
    device: str = "cpu"
    # device of the host models
    slots: tuple[str, ...] | None = None
    # slot ids to enable (None = every slot of the host)
    synthetic_train: int = 2048
    # training samples of the synthetic task (small: one epoch per RL step on CPU)
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


def task_options(cfg: EnvConfig) -> TaskOptions:
    """The options of the environments' shared task (data seed = the base seed)."""
    return TaskOptions(batch_size=cfg.batch_size, seed=cfg.seed, data_dir=cfg.data_dir,
                       synthetic=SyntheticConfig(train_size=cfg.synthetic_train, val_size=cfg.synthetic_val))


def episode_seed(base: int, env: int, episode: int) -> int:
    """A distinct, reproducible seed per (base seed, environment, episode)."""
    return (base * 1_000_003 + env * 7_919 + episode * 104_729) % (2 ** 31 - 1)


class _Queue:
    """The controller the Trainer sees: hands over the decision the policy chose, once."""

    name = "policy"

    def __init__(self) -> None:
        self.pending: list[Decision] = []

    def decide(self, obs: Observation) -> list[Decision]:
        out, self.pending = self.pending, []
        return out


@dataclass
class StepResult:
    """What a step did to one environment."""

    components: dict[str, float]
    # reward by component
    terminated: bool
    # governor rollback: the episode is over for good
    truncated: bool
    # the episode reached its length
    final_obs: Observation
    # observation of the state reached (before a reset)
    took_effect: bool = False
    # the decision changed the model
    info: dict = field(default_factory=dict)


class MorphEnv:
    """Environment ``index``: builds a fresh host + model + trainer at every reset, on ``data``'s
    task; ``batches`` train the first epoch."""

    def __init__(self, index: int, cfg: EnvConfig, reward_cfg: RewardConfig, data: SharedData,
                 batches: Sequence[Batch], sink_factory: Callable[[int], Sink] = lambda i: Sink()) -> None:
        self.index, self.cfg, self.reward_cfg, self.data = index, cfg, reward_cfg, data
        self.sink = sink_factory(index)
        self.episode = -1
        self.rng_state = torch.Generator().manual_seed(episode_seed(cfg.seed, index, -1)).get_state()
        self.reset(batches)

    @contextmanager
    def own_rng(self) -> Iterator[None]:
        """Run the block on this environment's CPU RNG stream (model init, seed init, probes)."""
        outer = torch.get_rng_state()
        torch.set_rng_state(self.rng_state)
        try:
            yield
        finally:
            self.rng_state = torch.get_rng_state()
            torch.set_rng_state(outer)

    def train_config(self, seed: int) -> TrainConfig:
        gates = dataclasses.replace(GateConfig(), mode=self.cfg.gates)
        return TrainConfig(epochs=self.cfg.episode_length + 1, seed=seed, device=self.cfg.device, gates=gates)

    def reset(self, batches: Sequence[Batch]) -> Observation:
        """A new episode: a new host (seeded by environment and episode); trains the first epoch
        on ``batches`` before any action."""
        self.episode += 1
        seed = episode_seed(self.cfg.seed, self.index, self.episode)
        task = self.data.task
        with self.own_rng():
            torch.manual_seed(seed)
            slots = list(self.cfg.slots) if self.cfg.slots is not None else None
            model = MorphogeneticModel(self.data.new_host(), slots).to(self.cfg.device)
            self.queue = _Queue()
            # no loader of its own: every epoch trains on the batches passed to run_epoch
            self.trainer = Trainer(model, (), self.data.val_loader, num_classes=task.num_classes,
                                   language=task.language, cfg=self.train_config(seed),
                                   controller=self.queue, sink=self.sink,
                                   fault=FaultSpec.parse(self.cfg.fault) if self.cfg.fault else None)
            self.sink.governor_snapshot("initial", self.trainer.governor.take_snapshot(model, 0))
            self.epoch = 1
            self.result = self.trainer.run_epoch(1, batches=batches)
        self.start_acc = self.result.val_acc
        self.rollbacks = self.trainer.summary.rollbacks
        self.obs = self.observe()
        self.fresh = True
        return self.obs

    @property
    def model(self) -> MorphogeneticModel:
        return self.trainer.model

    def observe(self) -> Observation:
        return self.trainer.observe(self.epoch, self.cfg.episode_length + 1)

    def _slot_state(self, slot_id: str | None):
        if slot_id is None:
            return None
        s = self.model.slots[slot_id]
        return (s.stage, s.seed_id, s.alpha.target, s.pending_prune is not None)

    def _apply(self, pa: PolicyAction) -> bool:
        """Apply the decision through the trainer's own control path (gates, events, optimizers)."""
        d = pa.decision
        slot = self.model.slots[d.slot_id] if d.slot_id else None
        if d.op is Op.GERMINATE and slot is not None and pa.blend:
            slot.cfg = dataclasses.replace(slot.cfg, blend=pa.blend, tempo=pa.tempo, curve=pa.curve)
        before = self._slot_state(d.slot_id)
        self.queue.pending = [d]
        self.trainer._control(self.epoch, self.result)  # private: ask core for a public hook
        return d.op is not Op.WAIT and self._slot_state(d.slot_id) != before

    def step(self, pa: PolicyAction, batches: Sequence[Batch]) -> StepResult:
        """Act on the observation of the last epoch, train one more epoch on ``batches``, and score it."""
        d = pa.decision
        view = next((s for s in self.obs.slots if s.slot_id == d.slot_id), None)
        stages_before = tuple(s.stage for s in self.obs.slots)
        with self.own_rng():
            effect = self._apply(pa)
            self.epoch += 1
            self.result = self.trainer.run_epoch(self.epoch, batches=batches)
        died = self.trainer.summary.rollbacks > self.rollbacks
        self.rollbacks = self.trainer.summary.rollbacks
        self.obs = self.observe()
        self.fresh = False
        truncated = not died and self.epoch >= self.cfg.episode_length + 1
        m = self.model
        facts = StepFacts(d.op, effect, view.contribution if view else None, view.improvement if view else None,
                          stages_before, tuple(s.stage for s in self.obs.slots), m.host_param_count(),
                          m.total_param_count() - m.host_param_count(), died, truncated,
                          _finite(self.result.val_acc) - _finite(self.start_acc))
        info = {"val_acc": self.result.val_acc, "episode": self.episode}
        return StepResult(compute_reward(facts, self.reward_cfg), died, truncated, self.obs, effect, info)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0
