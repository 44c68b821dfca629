"""EventSink: the only place in esper that builds telemetry_schema events."""

from __future__ import annotations

import json
import platform

from telemetry_schema import EventWriter
from telemetry_schema import events as ev
from telemetry_schema.rundir import RunWriter, create_run
from telemetry_schema.writer import WriterConfig

from esper.nissa.sink import Sink


def _finite_or_nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


class EventSink(Sink):
    """Turns core state changes into events on an EventWriter (``rw.writer`` of a run)."""

    def __init__(self, writer: EventWriter) -> None:
        self.writer = writer

    def _emit(self, event: ev.Event, slot: str | None = None, seed: str | None = None, **kw) -> None:
        self.writer.emit(event, slot=slot, seed=seed, **kw)

    def set_position(self, epoch: int, step: int) -> None:
        self.writer.epoch, self.writer.step = epoch, step

    def run_finished(self, status: str, reason: str = "") -> None:
        self._emit(ev.RunFinished(status=status, reason=reason))

    def batch_metrics(self, step, loss, lr, samples_per_s) -> None:
        self._emit(ev.BatchMetrics(loss=float(loss), lr=float(lr), samples_per_s=float(samples_per_s)),
                   step=step)

    def epoch_completed(self, epoch, result, host_params, total_params, seconds, compute=None) -> None:
        flops = {} if compute is None else dict(
            forward_flops=compute.forward_per_sample, flops_train=compute.train, flops_val=compute.val,
            flops_counterfactual=compute.counterfactual, flops_host=compute.host,
            flops_cumulative=compute.cumulative)
        self._emit(ev.EpochCompleted(
            train_loss=result.train_loss, train_acc=result.train_acc, val_loss=result.val_loss,
            val_acc=result.val_acc, perplexity=result.perplexity, per_class_acc=list(result.per_class_acc),
            host_params=host_params, total_params=total_params, seconds=seconds, **flops), epoch=epoch)

    def seed_compute(self, slot_id, seed_id, compute) -> None:
        """A seed's compute this epoch, as scalars named by its slot (every viewer that charts
        scalars shows them): seed/SLOT/forward_flops (per sample), seed/SLOT/flops_train,
        seed/SLOT/flops_eval (validation and counterfactual passes), seed/SLOT/flops_cumulative and
        seed/SLOT/params. The seed in the slot at that epoch is the one its lifecycle events name."""
        for name, value in (("forward_flops", compute.forward_per_sample), ("flops_train", compute.train),
                            ("flops_eval", compute.eval), ("flops_cumulative", compute.cumulative),
                            ("params", compute.params)):
            self.writer.scalar(f"seed/{slot_id}/{name}", float(value))

    def seed_germinated(self, slot_id, seed_id, blueprint, params, blend, tempo, blend_epochs) -> None:
        self._emit(ev.SeedGerminated(blueprint=blueprint, params=params, blend=blend, tempo=tempo,
                                     blend_epochs=blend_epochs), slot_id, seed_id)

    def stage_changed(self, slot_id, seed_id, from_stage, to_stage, reason) -> None:
        self._emit(ev.StageChanged(from_stage=from_stage.name, to_stage=to_stage.name, reason=reason),
                   slot_id, seed_id)

    def gate_evaluated(self, slot_id, seed_id, result) -> None:
        self._emit(ev.GateEvaluated(gate=result.gate.value, target_stage=result.target.name,
                                    passed=result.passed, checks_passed=list(result.checks_passed),
                                    checks_failed=list(result.checks_failed)), slot_id, seed_id)

    def alpha_changed(self, slot_id, seed_id, alpha) -> None:
        self._emit(ev.AlphaChanged(value=alpha.alpha, target=alpha.target, mode=alpha.mode.value,
                                   curve=alpha.curve), slot_id, seed_id)

    def gradient_stats(self, slot_id, seed_id, stats) -> None:
        self._emit(ev.GradientStats(seed_norm=stats.seed_norm, host_norm=stats.host_norm, ratio=stats.ratio,
                                    health=stats.health, vanishing=stats.vanishing,
                                    exploding=stats.exploding), slot_id, seed_id)

    def counterfactual(self, slot_id, seed_id, real_acc, off_acc, se=None) -> None:
        self._emit(ev.Counterfactual(real_acc=real_acc, off_acc=off_acc, contribution=real_acc - off_acc,
                                     contribution_se=se), slot_id, seed_id)

    def seed_fossilized(self, slot_id, seed_id, reason, initiator, params) -> None:
        self._emit(ev.SeedFossilized(reason=reason, initiator=initiator, params=params), slot_id, seed_id)

    def seed_pruned(self, slot_id, seed_id, reason, initiator) -> None:
        self._emit(ev.SeedPruned(reason=reason, initiator=initiator), slot_id, seed_id)

    def governor_panic(self, verdict) -> None:
        self._emit(ev.GovernorPanic(reason=verdict.reason, loss=verdict.loss,
                                    threshold=_finite_or_nan(verdict.threshold), mean=verdict.mean,
                                    std=verdict.std, consecutive=verdict.consecutive))

    def governor_snapshot(self, reason, tensors) -> None:
        self._emit(ev.GovernorSnapshot(reason=reason, tensors=tensors))

    def governor_rollback(self, to_epoch, seeds_pruned, reason) -> None:
        self._emit(ev.GovernorRollback(to_epoch=to_epoch, seeds_pruned=list(seeds_pruned), reason=reason))

    def controller_decision(self, controller, decision) -> None:
        self._emit(ev.ControllerDecision(controller=controller, op=decision.op.name, blueprint=decision.blueprint,
                                         reason=decision.reason, **decision_settings(decision)),
                   decision.slot_id, decision.seed_id)

    def scalar(self, name: str, value: float) -> None:
        """A namespaced scalar (the TensorBoard add_scalar analogue), e.g. 'seed/contribution'."""
        self.writer.scalar(name, float(value))


def decision_settings(decision) -> dict:
    """The controller_decision fields a Decision's settings fill (blend, tempo, curve, alpha target
    and steps), shared by every sink that logs decisions."""
    return {"blend": decision.blend, "tempo": decision.tempo, "curve": decision.curve,
            "alpha_target": decision.alpha_target, "alpha_steps": decision.alpha_steps}


def start_run(runs_dir, *, run_id: str, task: str, topology: str, host_params: int, slot_ids: list[str],
              config: dict, device: str, torch_version: str = "", rank: int = 0,
              world_size: int = 1, on_error: str = "raise", planned_epochs: int = 0) -> tuple[RunWriter, EventSink]:
    """Create ``runs_dir/<run_id>/``, emit run_started, and return the run writer and its sink.

    Each rank writes its own streams (``events/<kind>.rank<R>.arrows``) in the one run
    directory (run.json is written by rank 0 only). ``on_error``: what a failed write of the
    log does, 'raise' (the next event raises TelemetryError) or 'drop' (training goes on without
    a log; the events are counted as dropped)."""
    started = ev.RunStarted(run_id=run_id, task=task, topology=topology, host_params=host_params,
                            slot_ids=list(slot_ids), config_json=json.dumps(config, default=str),
                            python_version=platform.python_version(), torch_version=torch_version,
                            device=device, world_size=world_size, planned_epochs=planned_epochs)
    rw = create_run(runs_dir, started, rank=rank,
                    config=WriterConfig(heartbeat_s=started.heartbeat_s, on_error=on_error))
    return rw, EventSink(rw.writer)
