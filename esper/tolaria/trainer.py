"""The morphogenetic training loop: train, measure, guard, let the controller act."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Iterable

import torch

from esper import distributed as D
from esper.kasmina.flops import cost_table, model_flops
from esper.kasmina.gradients import GradientCollector
from esper.kasmina.model import MorphogeneticModel
from esper.leyline.actions import Decision, Observation, SlotView
from esper.leyline.config import TrainConfig
from esper.leyline.gates import GateResult
from esper.leyline.stages import SEED_FORWARD_STAGES, SeedStage
from esper.nissa.sink import NullSink, Sink
from esper.tamiyo.protocol import Controller, NoController
from esper.tolaria.agreement import (
    EpochOutcome, GateRecorder, GateReplay, RankDivergence, architecture_fingerprint,
)
from esper.tolaria.attribution import attribute
from esper.tolaria.compute import ComputeMeter, EpochCompute, SeedInfo
from esper.tolaria.faults import FaultSpec
from esper.tolaria.governor import Governor, GovernorVerdict
from esper.tolaria.lifecycle import Lifecycle
from esper.tolaria.objective import CLASSIFICATION, Objective
from esper.tolaria.runners import StepHooks, ValidationResult, train_epoch, validate

S = SeedStage


def _test_die_hook(ctx: D.DistContext, epoch: int) -> None:
    """Test hooks of distributed runs: ESPER_TEST_DIE_AT='RANK:EPOCH' makes that rank exit abruptly
    at the start of EPOCH; ESPER_TEST_HANG_AT='RANK:EPOCH' makes it stop answering (sleep)."""
    if not ctx.enabled:
        return
    here = f"{ctx.rank}:{epoch}"
    if os.environ.get("ESPER_TEST_DIE_AT") == here:
        os._exit(17)
    if os.environ.get("ESPER_TEST_HANG_AT") == here:
        time.sleep(3600)


@dataclass
class RunSummary:
    """The outcome of ``Trainer.fit``."""

    epochs: int = 0
    final: ValidationResult | None = None
    best_val_acc: float = float("nan")
    germinated: int = 0
    fossilized: int = 0
    pruned: int = 0
    panics: int = 0
    rollbacks: int = 0
    seconds: float = 0.0
    history: list[ValidationResult] = field(default_factory=list)
    flops: int = 0
    # training, validation and counterfactual FLOPs of the run (this rank's)
    params: int = 0
    # trainable parameters at the end: host plus live and fossilized seeds


class Trainer:
    """Runs epochs of a MorphogeneticModel under a controller and a governor."""

    def __init__(self, model: MorphogeneticModel, train_loader: Iterable, val_loader: Iterable, *,
                 num_classes: int, language: bool = False, cfg: TrainConfig = TrainConfig(),
                 controller: Controller | None = None, sink: Sink | None = None,
                 fault: FaultSpec | None = None, clock=time.perf_counter,
                 dist: D.DistContext | None = None, objective: Objective = CLASSIFICATION) -> None:
        self.model, self.cfg, self.clock, self.objective = model, cfg, clock, objective
        self.dist = dist or D.DistContext()
        self._ddp, self._ddp_key = None, None
        self.train_loader, self.val_loader = train_loader, val_loader
        self.num_classes, self.language = num_classes, language
        self.device = torch.device(cfg.device)
        self.controller = controller or NoController()
        self.sink = sink or NullSink()
        self.fault = fault
        model.set_sink(self.sink)
        self.governor = Governor(cfg.governor, num_classes)
        self.lifecycle = Lifecycle(model, cfg.gates, self.sink, self.device, self.controller.name)
        self.collector = GradientCollector()
        self.meter = ComputeMeter()
        self._example: torch.Tensor | None = None
        self._cost_table: tuple[int, dict] | None = None
        self.host_opt = self._adamw(model.host_parameters(), cfg.host_lr)
        self.seed_opts: dict[str, torch.optim.Optimizer] = {}
        self.step = 0
        self.acc_history: list[float] = []
        self.loss_history: list[float] = []
        self.summary = RunSummary()

    def _adamw(self, params, lr: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=lr, weight_decay=self.cfg.weight_decay)

    def _sync_seed_optimizers(self) -> None:
        """One optimizer per slot that holds a trainable seed; dropped when the seed goes."""
        for sid, slot in self.model.slots.items():
            params = slot.seed_parameters()
            if not params or slot.stage is S.PRUNED:
                self.seed_opts.pop(sid, None)
            elif sid not in self.seed_opts:
                self.seed_opts[sid] = self._adamw(params, self.cfg.seed_lr)

    def _training_seed_opts(self) -> dict[str, torch.optim.Optimizer]:
        return {sid: o for sid, o in self.seed_opts.items()
                if self.model.slots[sid].stage in (S.TRAINING, S.BLENDING, S.HOLDING, S.FOSSILIZED)}

    def _measured_params(self):
        seeds = {s.slot_id: s.seed_parameters() for s in self.model.slots_in(S.TRAINING, S.BLENDING, S.HOLDING)}
        return self.model.host_parameters(), seeds

    def lr_factor(self, epoch: int) -> float:
        """Learning-rate multiplier of ``epoch`` (1-based) under the configured schedule."""
        if self.cfg.lr_schedule == "constant" or self.cfg.epochs <= 1:
            return 1.0
        t = min(1.0, (epoch - 1) / (self.cfg.epochs - 1))
        return self.cfg.lr_floor + (1 - self.cfg.lr_floor) * 0.5 * (1 + math.cos(math.pi * t))

    def _apply_lr(self, epoch: int) -> float:
        f = self.lr_factor(epoch)
        pairs = [(self.host_opt, self.cfg.host_lr * f)] + [
            (o, self.cfg.seed_lr * self._seed_lr_factor(sid, f)) for sid, o in self.seed_opts.items()]
        for opt, lr in pairs:
            for group in opt.param_groups:
                group["lr"] = lr
        return self.cfg.host_lr * f

    def _seed_lr_factor(self, slot_id: str, host_factor: float) -> float:
        fossil = self.model.slots[slot_id].stage is S.FOSSILIZED
        scheduled = self.cfg.fossil_lr_scheduled if fossil else self.cfg.seed_lr_scheduled
        return host_factor if scheduled else 1.0

    def implant(self, seeds: list[tuple[str, str]]) -> None:
        """Build each (slot id, blueprint) seed and fossilize it before the first epoch: a given
        grown architecture trained from epoch 1. ValueError for an unknown slot or blueprint."""
        for slot_id, blueprint in seeds:
            if slot_id not in self.model.slots:
                raise ValueError(f"initial seed for slot {slot_id!r}: the model's slots are "
                                 f"{', '.join(self.model.order)}")
            self.lifecycle.implant(self.model.slots[slot_id], blueprint)
        self._sync_seed_optimizers()

    def _corrupt(self, epoch: int):
        if self.fault is None or self.fault.kind != "nan" or self.fault.epoch != epoch:
            return None
        return lambda i, loss: loss * float("nan") if i == 0 else loss

    # -- one epoch ---------------------------------------------------------------------------

    def run_epoch(self, epoch: int, batches: Iterable | None = None) -> ValidationResult:
        """Train, validate, govern and control one epoch; ``batches`` (one epoch of training
        batches from outside, e.g. the shared iterator of lockstep PPO environments) replace
        the trainer's own loader for this epoch."""
        t0 = self.clock()
        loader = self.train_loader if batches is None else batches
        self.sink.set_position(epoch, self.step)
        lr = self._apply_lr(epoch)
        hooks = StepHooks(self.cfg.gradients.stride, self._measured_params, self.collector,
                          self.cfg.batch_stride, self._corrupt(epoch), self.cfg.gradients.clip_norm)
        _test_die_hook(self.dist, epoch)
        if self.dist.enabled:
            try:
                stats = train_epoch(self._train_module(), loader, self.host_opt,
                                    self._training_seed_opts(), self.device, hooks, self.step, self.clock,
                                    self.objective)
            except D.RankFailure:
                raise
            except RuntimeError as exc:  # DDP's all-reduce in backward: gloo reports a dead peer so
                raise D.RankFailure(f"gradient all-reduce failed: {str(exc).splitlines()[0]}") from exc
            with torch.no_grad():
                D.average_buffers(self.dist, self.model)
            stats = dataclasses.replace(stats, loss=D.mean_scalar(self.dist, stats.loss),
                                        acc=D.mean_scalar(self.dist, stats.acc))
        else:
            stats = train_epoch(self.model, loader, self.host_opt, self._training_seed_opts(),
                                self.device, hooks, self.step, self.clock, self.objective)
        self.step += stats.steps
        for step, loss, sps in stats.strided:
            self.sink.batch_metrics(step, loss, lr, sps)
        self.sink.set_position(epoch, self.step)
        self._feed_gradients()
        result = validate(self.model, self.val_loader, self.device, self.num_classes, self.language, stats,
                          self.objective)
        if self.fault and self.fault.kind == "spike" and 0 <= epoch - self.fault.epoch < self.fault.span:
            result.val_loss *= self.fault.factor
        if self.dist.enabled:  # same weights, same data: equal already; the mean carries a lone NaN everywhere
            result.val_loss = D.mean_scalar(self.dist, result.val_loss)
            result.val_acc = D.mean_scalar(self.dist, result.val_acc)
        measured = self._measure_contributions(result, epoch)
        compute = self._account(stats, result, measured)
        self._close_epoch(epoch, result, t0, compute)
        return result

    def _account(self, stats, result: ValidationResult, measured: list[str]) -> EpochCompute:
        """This epoch's FLOPs (the model as it trained: decisions come after) and the run's so far."""
        self._example = stats.example if self._example is None else self._example
        flops = model_flops(self.model, stats.example)
        seeds = {s.slot_id: SeedInfo(s.seed_id, s.stage.name, s.record.params)
                 for s in self.model.slots_in(*SEED_FORWARD_STAGES) if s.record is not None}
        compute = self.meter.epoch(flops, stats.sequences, result.val_samples, measured, seeds)
        self.summary.flops = compute.cumulative
        return compute

    def _close_epoch(self, epoch: int, result: ValidationResult, t0: float,
                     compute: EpochCompute | None = None) -> None:
        """The epoch's lifecycle point: govern, report, tick the slots, let the controller act.

        Distributed, rank 0 decides all of it and broadcasts the outcome in one ``agree``; the other
        ranks wait for it and apply it as it is (what is agreed, and how: tolaria.agreement)."""
        agreed = self._receive_outcome()
        verdict = agreed.verdict if agreed else self.governor.assess(result.val_loss)
        healthy = self._govern(epoch, result, verdict)
        self.sink.epoch_completed(epoch, result, self.model.host_param_count(),
                                  self.model.total_param_count(), self.clock() - t0, compute=compute)
        for sid, seed in (compute.seeds if compute else {}).items():
            self.sink.seed_compute(sid, seed.seed_id, seed)
        if healthy:
            self.acc_history.append(result.val_acc)
            self.loss_history.append(result.train_loss)
        for slot in self.model.slots.values():
            slot.end_epoch()
        decisions, gates = self._control(epoch, result, agreed)
        if self.dist.enabled:
            mine = EpochOutcome(verdict, tuple(decisions), tuple(gates), architecture_fingerprint(self.model))
            self._share_outcome(epoch, mine, agreed)

    # -- distributed data parallel -----------------------------------------------------------

    def _arch_key(self) -> tuple:
        return tuple((sid, slot.stage.name, slot.seed_id, len(slot.seed_parameters()))
                     for sid, slot in self.model.slots.items())

    def _train_module(self):
        """The module the training pass runs through: a DDP wrapper of the model when distributed.

        DDP's parameter set is fixed at construction, so the model is re-wrapped whenever its
        architecture changes (a seed germinated, advanced, pruned or fossilized, a governor
        rollback): the key is each slot's (stage, seed, trainable parameter count). Re-wrapping
        broadcasts rank 0's parameters and buffers, so a new seed starts identical everywhere.
        ``find_unused_parameters=True`` while any slot holds a seed: a GERMINATED seed (or one
        whose branch is outside the loss) has parameters that take no gradient in the forward.
        """
        key = self._arch_key()
        if self._ddp is None or key != self._ddp_key:
            from torch.nn.parallel import DistributedDataParallel as DDP
            any_seed = any(stage != "DORMANT" for _, stage, _, _ in key)
            try:
                self._ddp = DDP(self.model, find_unused_parameters=any_seed)
            except RuntimeError as exc:
                raise D.RankFailure(f"DDP construction failed: {str(exc).splitlines()[0]}") from exc
            self._ddp_key = key
        return self._ddp

    def _receive_outcome(self) -> EpochOutcome | None:
        """Rank 0's outcome of this epoch, on the other ranks of a distributed run; else None."""
        if not self.dist.enabled or self.dist.is_main:
            return None
        return EpochOutcome.from_json(D.agree(self.dist, None))

    def _share_outcome(self, epoch: int, mine: EpochOutcome, agreed: EpochOutcome | None) -> None:
        """Rank 0 broadcasts its outcome; another rank checks it reached rank 0's architecture."""
        if agreed is None:
            D.agree(self.dist, mine.to_json())
        elif mine.fingerprint != agreed.fingerprint:
            raise RankDivergence(f"rank {self.dist.rank} diverged from rank 0 at epoch {epoch}: "
                                 f"{mine.fingerprint} != {agreed.fingerprint}")

    def _feed_gradients(self) -> None:
        """Real gradient norms -> each seed's GradientStats (the ratio G2 reads; review 002)."""
        host_params = self.model.host_param_count()
        for sample in self.collector.flush():
            slot = self.model.slots[sample.slot_id]
            if slot.record is None:
                continue
            slot.record.grad.update(sample.host_norm, sample.seed_norms, slot.record.params,
                                    host_params, self.cfg.gradients)
            self.sink.gradient_stats(slot.slot_id, slot.seed_id, slot.record.grad)

    def _measure_contributions(self, result: ValidationResult, epoch: int) -> list[str]:
        """Counterfactual contribution of each BLENDING/HOLDING seed; returns the slots measured."""
        measured = []
        for slot in self.model.slots_in(S.BLENDING, S.HOLDING):
            a = attribute(self.model, slot, self.val_loader, self.device, self.num_classes, result.val_acc,
                          result.correct, objective=self.objective)
            slot.record.contribution, slot.record.contribution_se = a.contribution, a.se
            slot.record.contribution_epoch = epoch
            slot.record.contributions.append(a.contribution)
            self.sink.counterfactual(slot.slot_id, slot.seed_id, a.real_acc, a.off_acc, se=a.se)
            measured.append(slot.slot_id)
        return measured

    def _govern(self, epoch: int, result: ValidationResult, verdict: GovernorVerdict | None) -> bool:
        """Apply the governor's verdict on this epoch (rank 0's, when distributed); True if healthy."""
        self.governor.record(result.val_loss, verdict)
        if verdict is None:
            tensors = self.governor.note_good_epoch(self.model, epoch)
            if tensors is not None:
                self.sink.governor_snapshot("periodic", tensors)
            return True
        self.summary.panics += 1
        self.sink.governor_panic(verdict)
        for slot in self.model.live_slots():
            slot.record.panics_in_stage += 1
        if verdict.rollback:
            opts = [self.host_opt, *self.seed_opts.values()]
            for slot in self.model.live_slots():
                self.lifecycle.note_prune(slot, epoch)
            pruned = self.governor.rollback(self.model, opts, f"governor: {verdict.reason}")
            self._sync_seed_optimizers()
            self.summary.rollbacks += 1
            self.sink.governor_rollback(self.governor.snapshot_epoch, pruned, verdict.reason)
        return False

    # -- the controller ----------------------------------------------------------------------

    def observe(self, epoch: int, total: int) -> Observation:
        log = self.lifecycle.log
        since = epoch - log.last_prune_epoch if log.last_prune_epoch is not None else 10 ** 6
        acc = self.acc_history[-1] if self.acc_history else 0.0
        views = tuple(self._slot_view(s, epoch, acc) for s in self.model.slots.values())
        return Observation(epoch, total, self.model.topology, list(self.acc_history),
                           list(self.loss_history), views, since, tuple(log.pruned_blueprints),
                           self.model.host_param_count(), *self._costs())

    def _costs(self) -> tuple[int, dict]:
        """(host forward FLOPs per sample, slot -> blueprint -> (params, forward FLOPs)), counted once
        on the first training sample seen; (0, {}) before that."""
        if self._cost_table is None and self._example is not None:
            with torch.random.fork_rng(devices=[]):  # building blueprints must not move the run's RNG
                self._cost_table = cost_table(self.model, self._example)
        return self._cost_table or (0, {})

    def _slot_view(self, slot, epoch: int, acc: float) -> SlotView:
        rec = slot.record
        if rec is None:
            return SlotView(slot.slot_id, slot.stage)
        age = epoch - rec.contribution_epoch if rec.contribution_epoch is not None else None
        return SlotView(slot.slot_id, slot.stage, rec.seed_id, rec.blueprint, rec.epochs_in_stage,
                        epoch - rec.germinated_epoch, acc - rec.acc_at_germination, rec.contribution,
                        rec.grad.ratio, slot.alpha.alpha,
                        self.lifecycle.log.last_gate_failed.get(slot.slot_id, ()), rec.contribution_se,
                        slot.alpha.target, age, rec.grad.health if rec.grad.samples else None, rec.params)

    def _control(self, epoch: int, result: ValidationResult,
                 agreed: EpochOutcome | None = None) -> tuple[list[Decision], list[GateResult]]:
        """Let the controller act; returns its decisions as applied and every gate result they gave.

        ``agreed`` (the other ranks of a distributed run): apply rank 0's decisions with rank 0's
        gate results; neither the controller nor a gate is consulted here."""
        if agreed is None:
            decisions, gates = self.controller.decide(self.observe(epoch, self.cfg.epochs)), GateRecorder()
        else:
            decisions, gates = agreed.decisions, GateReplay(agreed.gates)
        applied = []
        for decision in decisions:
            slot = self.model.slots[decision.slot_id] if decision.slot_id else None
            if slot is not None and decision.seed_id is None and slot.seed_id:
                decision = dataclasses.replace(decision, seed_id=slot.seed_id)
            applied.append(decision)
            self.sink.controller_decision(self.controller.name, decision)
            changed = self.lifecycle.apply(decision, epoch, result.val_acc, result.val_loss, gates)
            if changed and slot is not None and slot.stage is S.FOSSILIZED:
                self.sink.governor_snapshot("fossilized", self.governor.take_snapshot(self.model, epoch))
        gates.finish()
        self._sync_seed_optimizers()
        return applied, gates.results

    # -- the run -----------------------------------------------------------------------------

    def fit(self, epochs: int | None = None) -> RunSummary:
        epochs = epochs or self.cfg.epochs
        t0 = self.clock()
        self.sink.governor_snapshot("initial", self.governor.take_snapshot(self.model, 0))
        for epoch in range(1, epochs + 1):
            result = self.run_epoch(epoch)
            s = self.summary
            s.epochs, s.final = epoch, result
            s.history.append(result)
            if math.isfinite(result.val_acc):
                s.best_val_acc = result.val_acc if math.isnan(s.best_val_acc) else max(s.best_val_acc, result.val_acc)
            s.germinated, s.fossilized = self.lifecycle.log.germinated, self.lifecycle.log.fossilized
            s.pruned, s.seconds = self.lifecycle.log.pruned, self.clock() - t0
            s.params = self.model.total_param_count()
        return self.summary
