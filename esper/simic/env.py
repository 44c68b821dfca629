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
from esper.leyline.stages import SeedStage
from esper.nissa.sink import Sink
from esper.runtime.synthetic import SyntheticConfig
from esper.runtime.tasks import TaskOptions
from esper.session import task_slot_config
from esper.simic.config import EnvConfig
from esper.simic.rewards import RewardConfig, StepFacts, compute_reward
from esper.simic.shared_data import Batch, SharedData
from esper.tolaria.trainer import FaultSpec, Trainer


def task_options(cfg: EnvConfig) -> TaskOptions:
    """The options of the environments' shared task (data seed = the base seed)."""
    return TaskOptions(batch_size=cfg.batch_size, seed=cfg.seed, data_dir=cfg.data_dir,
                       synthetic=SyntheticConfig(train_size=cfg.synthetic_train, val_size=cfg.synthetic_val))


def episode_seed(base: int, env: int, episode: int) -> int:
    """A distinct, reproducible seed per (base seed, environment, episode)."""
    return (base * 1_000_003 + env * 7_919 + episode * 104_729) % (2 ** 31 - 1)


class _Queue:
    """The controller the Trainer sees: hands over the decisions the policy chose, once."""

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
    # the episode is over: its last epoch was trained, or the governor rolled the model back
    truncated: bool
    # cut short while it could go on (never, for a training run that ends; kept for the protocol)
    final_obs: Observation
    # observation of the state reached (before a reset)
    took_effect: bool = False
    # the policy's decision changed the model
    died: bool = False
    # the governor rolled the model back
    info: dict = field(default_factory=dict)


class MorphEnv:
    """Environment ``index``: builds a fresh host + model + trainer at every reset, on ``data``'s
    task; ``batches`` train the first epoch. A shadow is a MorphEnv that only ever waits."""

    def __init__(self, index: int, cfg: EnvConfig, reward_cfg: RewardConfig, data: SharedData,
                 batches: Sequence[Batch], sink_factory: Callable[[int], Sink] = lambda i: Sink(),
                 host_seed: int | None = None, first_episode: int = 0) -> None:
        self.index, self.cfg, self.reward_cfg, self.data = index, cfg, reward_cfg, data
        self.sink = sink_factory(index)
        self.episode = first_episode - 1
        self.rng_state = torch.Generator().manual_seed(episode_seed(cfg.seed, index, -1)).get_state()
        self.reset(batches, host_seed)

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

    def reset(self, batches: Sequence[Batch], host_seed: int | None = None) -> Observation:
        """A new episode: a new host (``host_seed``, by default one of this environment and
        episode); trains the first epoch on ``batches`` before any action. The model is built as
        ``esper train`` builds it (``task_slot_config``), the RNG stream seeded the same way."""
        self.episode += 1
        seed = episode_seed(self.cfg.seed, self.index, self.episode) if host_seed is None else host_seed
        self.host_seed = seed
        task = self.data.task
        with self.own_rng():
            torch.manual_seed(seed)
            slots = list(self.cfg.slots) if self.cfg.slots is not None else None
            tcfg = self.train_config(seed)
            model = MorphogeneticModel(self.data.new_host(), slots, task_slot_config(task, tcfg.slot),
                                       tcfg.gradients).to(self.cfg.device)
            self.queue = _Queue()
            # no loader of its own: every epoch trains on the batches passed to run_epoch
            self.trainer = Trainer(model, (), self.data.val_loader, num_classes=task.num_classes,
                                   language=task.language, cfg=tcfg, controller=self.queue, sink=self.sink,
                                   fault=FaultSpec.parse(self.cfg.fault) if self.cfg.fault else None)
            self.sink.governor_snapshot("initial", self.trainer.governor.take_snapshot(model, 0))
            self.epoch = 1
            self.result = self.trainer.run_epoch(1, batches=batches)
        self.start_acc = self.acc = _finite(self.result.val_acc)
        self.gaps = [0.0]  # accuracy gap to the host-only shadow, per epoch
        self.reward_so_far = 0.0
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
        return (s.stage, s.seed_id, s.alpha.target, s.alpha.steps_total, s.pending_prune is not None)

    def _apply(self, decisions: Sequence[Decision]) -> bool:
        """Apply the decisions through the trainer's own control path (gates, events, optimizers),
        as ``Trainer.run_epoch`` applies a controller's at the end of an epoch. True when the first
        one (the policy's own) changed its slot."""
        first = decisions[0] if decisions else Decision(Op.WAIT)
        before = self._slot_state(first.slot_id)
        self.queue.pending = list(decisions)
        self.trainer._control(self.epoch, self.result)  # private: ask core for a public hook
        return first.op is not Op.WAIT and self._slot_state(first.slot_id) != before

    def step(self, decisions: Sequence[Decision], batches: Sequence[Batch], shadow_gain: float = 0.0) -> StepResult:
        """Apply ``decisions`` to the state of the last epoch, train one more epoch on ``batches``,
        and score it; ``shadow_gain`` is the host-only shadow's accuracy change over the same epoch."""
        d = decisions[0] if decisions else Decision(Op.WAIT)
        view = next((s for s in self.obs.slots if s.slot_id == d.slot_id), None)
        stages_before = tuple(s.stage for s in self.obs.slots)
        with self.own_rng():
            effect = self._apply(decisions)
            self.epoch += 1
            self.result = self.trainer.run_epoch(self.epoch, batches=batches)
        died = self.trainer.summary.rollbacks > self.rollbacks
        self.rollbacks = self.trainer.summary.rollbacks
        self.obs = self.observe()
        self.fresh = False
        end = not died and self.epoch >= self.cfg.episode_length + 1
        acc, m = _finite(self.result.val_acc), self.model
        if not died:
            self.gaps.append(self.gaps[-1] + (acc - self.acc) - shadow_gain)
        facts = StepFacts(d.op, effect, view.contribution if view else None, view.improvement if view else None,
                          stages_before, tuple(s.stage for s in self.obs.slots), m.host_param_count(),
                          m.total_param_count() - m.host_param_count(), died, end, acc - self.start_acc,
                          gaps=tuple(self.gaps),
                          extra_compute=extra_compute(m), episode_length=self.cfg.episode_length)
        self.acc = acc
        info = {"val_acc": self.result.val_acc, "episode": self.episode, "host_seed": self.host_seed}
        components = compute_reward(facts, self.reward_cfg)
        self.reward_so_far += sum(components.values())
        return StepResult(components, died or end, False, self.obs, effect, died, info)

    def critic_features(self) -> list[float]:
        """The critic's own features of the current state (esper.simic.config.CRITIC_FEATURES)."""
        window = self.gaps[-max(1, self.reward_cfg.paired_window):]
        return [self.reward_so_far, sum(window) / len(window) / 10.0]


def extra_compute(model: MorphogeneticModel) -> float:
    """The extra training compute of the seeds that run in the forward pass, as a ratio to the
    host's: a stand-in that counts parameters (seed parameters / host parameters) until the FLOP
    counter of the compute-accounting work (issue 13) is on main."""
    running = (SeedStage.TRAINING, SeedStage.BLENDING, SeedStage.HOLDING, SeedStage.FOSSILIZED)
    seeds = sum(sum(p.numel() for p in s.seed_parameters()) for s in model.slots_in(*running))
    return seeds / max(1, model.host_param_count())


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0
