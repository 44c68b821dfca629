"""Observation -> feature vector: run-level features, then the same block per slot.

Values are roughly scaled here (symlog, fractions); the policy's RunningNorm standardises them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from esper.leyline.actions import Observation, SlotView
from esper.leyline.stages import SeedStage
from esper.tamiyo.policy.actions import OPS

STAGES: tuple[SeedStage, ...] = tuple(SeedStage)


def symlog(x: float) -> float:
    """sign(x)·ln(1 + |x|): keeps large values in range, NaN -> 0."""
    if not math.isfinite(x):
        return 0.0
    return math.copysign(math.log1p(abs(x)), x)


@dataclass(frozen=True)
class FeatureConfig:
    """Sizes and scales of the observation features."""

    history: int = 3
    # epochs of accuracy deltas and losses kept in the run-level features
    since_prune_cap: int = 50
    # epochs since the last prune are capped at this (and divided by it)
    stage_epochs_scale: float = 10.0
    # epochs in stage are divided by this
    pp_scale: float = 10.0
    # percentage-point quantities (improvement) are divided by this

    def run_dim(self) -> int:
        return 5 + 2 * self.history + len(STAGES) + len(OPS)

    @staticmethod
    def slot_dim() -> int:
        return len(STAGES) + 8

    def dim(self, n_slots: int) -> int:
        return self.run_dim() + n_slots * self.slot_dim()


def _tail(values: list[float], n: int) -> list[float]:
    return ([0.0] * n + list(values))[-n:]


def run_features(obs: Observation, last_op: int, cfg: FeatureConfig) -> list[float]:
    acc, loss = obs.val_acc, obs.train_loss
    deltas = [b - a for a, b in itertools.pairwise(acc)]
    counts = [sum(s.stage is st for s in obs.slots) / max(1, len(obs.slots)) for st in STAGES]
    last = [0.0] * len(OPS)
    if 0 <= last_op < len(OPS):
        last[last_op] = 1.0
    return [obs.epoch / max(1, obs.total_epochs),
            symlog(loss[-1]) if loss else 0.0,
            acc[-1] / 100.0 if acc else 0.0,
            max(acc) / 100.0 if acc else 0.0,
            min(obs.epochs_since_prune, cfg.since_prune_cap) / cfg.since_prune_cap,
            *[d / cfg.pp_scale for d in _tail(deltas, cfg.history)],
            *[symlog(x) for x in _tail(loss, cfg.history)],
            *counts, *last]


def slot_features(s: SlotView, cfg: FeatureConfig) -> list[float]:
    onehot = [float(s.stage is st) for st in STAGES]
    has_c, has_r = s.contribution is not None, s.gradient_ratio is not None
    return [*onehot, s.alpha,
            float(has_c), symlog(s.contribution) if has_c else 0.0,
            float(has_r), min(s.gradient_ratio, 10.0) / 10.0 if has_r else 0.0,
            min(s.epochs_in_stage / cfg.stage_epochs_scale, 5.0),
            max(-5.0, min(5.0, s.improvement / cfg.pp_scale)),
            float(bool(s.last_gate_failed))]


def encode_observation(obs: Observation, last_op: int, slot_ids: tuple[str, ...],
                       cfg: FeatureConfig = FeatureConfig()) -> Tensor:
    """(D,) float32 features; slots in ``slot_ids`` order (missing slots read as DORMANT)."""
    by_id = {s.slot_id: s for s in obs.slots}
    feats = run_features(obs, last_op, cfg)
    for sid in slot_ids:
        feats += slot_features(by_id.get(sid, SlotView(sid, SeedStage.DORMANT)), cfg)
    return torch.tensor(feats, dtype=torch.float32)


def slot_stages(obs: Observation, slot_ids: tuple[str, ...]) -> list[SeedStage]:
    by_id = {s.slot_id: s.stage for s in obs.slots}
    return [by_id.get(sid, SeedStage.DORMANT) for sid in slot_ids]
