"""Epoch runners and validation. Losses accumulate on the device; one sync per phase.

One generic runner serves the three modes of the spec: with no seed it is the *normal* runner,
with a TRAINING seed the *incubator* (the slot's STE keeps the host's forward unchanged), with
BLENDING+ seeds the *blended* runner; the slot's stage decides the forward. The host and each
seed have their own optimizer and are clipped separately.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from esper.kasmina.gradients import GradientCollector
from esper.tolaria.objective import CLASSIFICATION, Objective

PERPLEXITY_CLAMP = 20.0
"""Perplexity is exp(min(loss, 20))."""


@dataclass
class ValidationResult:
    """Metrics of one epoch (accuracies in percent)."""

    val_loss: float
    val_acc: float
    train_loss: float = float("nan")
    train_acc: float = float("nan")
    per_class_acc: list[float] = field(default_factory=list)
    # validation accuracy per class, percent (empty for language tasks)
    perplexity: float | None = None
    # exp(val_loss) clamped at exp(20), language tasks only


def perplexity(loss: float) -> float:
    """exp(loss) clamped at exp(20); NaN stays NaN."""
    return math.exp(min(loss, PERPLEXITY_CLAMP)) if not math.isnan(loss) else float("nan")


@dataclass
class TrainStats:
    loss: float
    acc: float
    steps: int
    samples: int
    strided: list[tuple[int, float, float]]
    # (step, loss, samples/s) every batch_stride batches


@dataclass
class StepHooks:
    """Optional per-batch behaviour of the runner (all default to off)."""

    grad_every: int = 0
    # collect gradient norms every k-th batch (0 = never)
    grad_params: Callable[[], tuple[list[nn.Parameter], dict[str, list[nn.Parameter]]]] | None = None
    # returns (host params, {slot_id: seed params}) to measure
    collector: GradientCollector | None = None
    batch_stride: int = 0
    # record (step, loss) every k-th batch for batch_metrics
    corrupt_loss: Callable[[int, Tensor], Tensor] | None = None
    # fault injection: (batch index, loss) -> loss
    clip_norm: float = 1.0
    # host and each seed are clipped to this norm separately


def _to(batch, device):
    x, y = batch
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def train_epoch(model: nn.Module, loader: Iterable, host_opt: torch.optim.Optimizer,
                seed_opts: dict[str, torch.optim.Optimizer], device: torch.device,
                hooks: StepHooks = StepHooks(), step0: int = 0, clock=time.perf_counter,
                objective: Objective = CLASSIFICATION) -> TrainStats:
    """One pass over ``loader``; raises ValueError when it yields no batch."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count, n, strided, t_last, s_last = 0, 0, [], clock(), 0
    opts = [host_opt, *seed_opts.values()]
    for i, batch in enumerate(loader):
        x, y = _to(batch, device)
        logits = model(x)  # (B, K) or (B, T, K)
        loss = objective.loss(logits, y)
        if hooks.corrupt_loss is not None:
            loss = hooks.corrupt_loss(i, loss)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        if hooks.grad_every and i % hooks.grad_every == 0 and hooks.collector is not None:
            host_params, seeds = hooks.grad_params()
            hooks.collector.collect(host_params, seeds, device)
        for opt in opts:
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            if params:
                nn.utils.clip_grad_norm_(params, hooks.clip_norm)
            opt.step()
        weight = objective.weight(y)
        loss_sum += loss.detach() * weight
        correct = correct + objective.hits(logits.detach(), y)
        count += weight
        n += 1
        if hooks.batch_stride and (i + 1) % hooks.batch_stride == 0:
            now = clock()
            strided.append((step0 + n, loss.detach(), (count - s_last) / max(now - t_last, 1e-9)))
            t_last, s_last = now, count
    if n == 0:
        raise ValueError("empty training loader: it yielded no batch")
    values = torch.stack([loss_sum, correct.float()] + [s[1] for s in strided]).tolist()  # one sync
    rows = [(s[0], values[2 + k], s[2]) for k, s in enumerate(strided)]
    return TrainStats(values[0] / count, 100.0 * values[1] / count, n, count, rows)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device, num_classes: int,
             per_class: bool = True, objective: Objective = CLASSIFICATION) -> tuple[float, float, list[float]]:
    """(mean loss, accuracy %, per-class accuracy %); raises ValueError on an empty loader."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    hits = torch.zeros(num_classes, device=device)
    totals = torch.zeros(num_classes, device=device)
    count = 0
    for batch in loader:
        x, y = _to(batch, device)
        logits = model(x)
        weight = objective.weight(y)
        loss_sum += objective.loss(logits, y) * weight
        if per_class and objective.per_class:
            ok = (logits.argmax(-1) == y).float().reshape(-1)
            flat = y.reshape(-1)
            hits.index_add_(0, flat, ok)
            totals.index_add_(0, flat, torch.ones_like(ok))
        else:
            hits[0] += objective.hits(logits, y)
        count += weight
    if count == 0:
        raise ValueError("empty validation loader: it yielded no batch")
    loss, correct, h, t = loss_sum.item(), hits.sum().item(), hits.tolist(), totals.tolist()  # one phase
    pcs = [100.0 * a / b if b else float("nan") for a, b in zip(h, t)] if per_class and objective.per_class else []
    return loss / count, 100.0 * correct / count, pcs


def validate(model: nn.Module, loader: Iterable, device: torch.device, num_classes: int,
             language: bool = False, train: TrainStats | None = None,
             objective: Objective = CLASSIFICATION) -> ValidationResult:
    """The epoch's ValidationResult (per-class accuracy for classification, perplexity for LM)."""
    loss, acc, pcs = evaluate(model, loader, device, num_classes, per_class=not language, objective=objective)
    return ValidationResult(
        val_loss=loss, val_acc=acc,
        train_loss=train.loss if train else float("nan"), train_acc=train.acc if train else float("nan"),
        per_class_acc=pcs, perplexity=perplexity(loss) if language else None)
