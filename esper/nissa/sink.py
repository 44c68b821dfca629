"""The sink interface the core calls on every state change (no-op by default).

The training loop, the slots and the controller call these methods with core objects;
``esper.nissa.events.EventSink`` turns them into telemetry_schema events. Other sinks (a
progress display, a test recorder) subclass ``Sink`` and override what they need.
"""

from __future__ import annotations

from typing import Any


class Sink:
    """Receives core state changes. Every method is a no-op here."""

    def set_position(self, epoch: int, step: int) -> None: ...

    def run_started(self, *, run_id: str, task: str, topology: str, host_params: int,
                    slot_ids: list[str], config: dict, device: str) -> None: ...

    def run_finished(self, status: str, reason: str = "") -> None: ...

    def batch_metrics(self, step: int, loss: float, lr: float, samples_per_s: float) -> None: ...

    def epoch_completed(self, epoch: int, result: Any, host_params: int, total_params: int,
                        seconds: float, compute: Any = None) -> None: ...

    def seed_compute(self, slot_id: str, seed_id: str, compute: Any) -> None: ...

    def seed_germinated(self, slot_id: str, seed_id: str, blueprint: str, params: int, blend: str,
                        tempo: str, blend_epochs: int) -> None: ...

    def stage_changed(self, slot_id: str, seed_id: str | None, from_stage: Any, to_stage: Any,
                      reason: str) -> None: ...

    def gate_evaluated(self, slot_id: str, seed_id: str | None, result: Any) -> None: ...

    def alpha_changed(self, slot_id: str, seed_id: str | None, alpha: Any) -> None: ...

    def gradient_stats(self, slot_id: str, seed_id: str | None, stats: Any) -> None: ...

    def counterfactual(self, slot_id: str, seed_id: str | None, real_acc: float, off_acc: float,
                       se: float | None = None) -> None: ...

    def seed_fossilized(self, slot_id: str, seed_id: str | None, reason: str, initiator: str,
                        params: int) -> None: ...

    def seed_pruned(self, slot_id: str, seed_id: str | None, reason: str, initiator: str) -> None: ...

    def governor_panic(self, verdict: Any) -> None: ...

    def governor_snapshot(self, reason: str, tensors: int) -> None: ...

    def governor_rollback(self, to_epoch: int, seeds_pruned: list[str], reason: str) -> None: ...

    def controller_decision(self, controller: str, decision: Any) -> None: ...


class NullSink(Sink):
    """Discards everything (the default of library objects)."""


class MultiSink(Sink):
    """Forwards every call to each of ``sinks`` in order."""

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = list(sinks)

    def __getattribute__(self, name: str):
        if name.startswith("_") or name == "sinks" or not hasattr(Sink, name):
            return object.__getattribute__(self, name)
        sinks = object.__getattribute__(self, "sinks")

        def fan_out(*args, **kwargs):
            for s in sinks:
                getattr(s, name)(*args, **kwargs)
        return fan_out
