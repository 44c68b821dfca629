"""Telemetry of PPO runs: per-environment event sinks (env = index) and the learner's events."""

from __future__ import annotations

from esper.nissa.events import EventSink, decision_settings
from esper.nissa.sink import Sink
from esper.simic.ppo import UpdateStats
from telemetry_schema import events as ev


class PolicySink(Sink):
    """A sink that can also record the policy's view of a decision and a step's reward."""

    def annotate(self, action_probs: dict[str, float], value: float) -> None:
        """Probabilities and value attached to the next controller_decision."""

    def reward(self, components: dict[str, float]) -> None: ...


class EnvEventSink(EventSink, PolicySink):
    """EventSink whose every event carries ``env`` = this environment's index."""

    def __init__(self, writer, env: int) -> None:
        super().__init__(writer)
        self.env = env
        self.note: tuple[dict[str, float], float | None] = ({}, None)

    def _emit(self, event: ev.Event, slot: str | None = None, seed: str | None = None, **kw) -> None:
        kw.setdefault("env", self.env)
        self.writer.emit(event, slot=slot, seed=seed, **kw)

    def scalar(self, name: str, value: float) -> None:
        self.writer.scalar(name, float(value), env=self.env)

    def annotate(self, action_probs: dict[str, float], value: float) -> None:
        self.note = (dict(action_probs), float(value))

    def controller_decision(self, controller, decision) -> None:
        probs, value = self.note
        self.note = ({}, None)
        self._emit(ev.ControllerDecision(controller=controller, op=decision.op.name, blueprint=decision.blueprint,
                                         reason=decision.reason, action_probs=probs, value=value,
                                         **decision_settings(decision)),
                   decision.slot_id, decision.seed_id)

    def reward(self, components: dict[str, float]) -> None:
        self._emit(ev.Reward(total=float(sum(components.values())),
                             components={k: float(v) for k, v in components.items()}))


def ppo_update_event(stats: UpdateStats) -> ev.PPOUpdate:
    return ev.PPOUpdate(policy_loss=stats.policy_loss, value_loss=stats.value_loss, entropy=stats.entropy,
                        approx_kl=stats.approx_kl, clip_fraction=stats.clip_fraction,
                        explained_variance=stats.explained_variance, lr=stats.lr,
                        head_entropy=dict(stats.head_entropy), early_stopped=stats.early_stopped)
