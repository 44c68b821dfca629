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
    freshness_cap: int = 5
    # epochs since a contribution was measured are capped at this (and divided by it)

    def run_dim(self) -> int:
        return 6 + 2 * self.history + len(STAGES) + len(OPS)

    @staticmethod
    def slot_dim(n_blueprints: int = 0) -> int:
        return len(STAGES) + 14 + n_blueprints

    def dim(self, n_slots: int, n_blueprints: int = 0) -> int:
        return self.run_dim() + n_slots * self.slot_dim(n_blueprints)


def _tail(values: list[float], n: int) -> list[float]:
    return ([0.0] * n + list(values))[-n:]


def _param_share(params: int, host_params: int) -> float:
    """ln(1 + params / host): the seeds' size on the scale of the host (0 when the host is unknown)."""
    return math.log1p(params / host_params) if host_params > 0 else 0.0


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
            _param_share(sum(s.params for s in obs.slots), obs.host_params),
            *[d / cfg.pp_scale for d in _tail(deltas, cfg.history)],
            *[symlog(x) for x in _tail(loss, cfg.history)],
            *counts, *last]


def slot_features(s: SlotView, cfg: FeatureConfig, blueprints: tuple[str, ...] = (),
                  host_params: int = 0) -> list[float]:
    """Stage one-hot; alpha, its target and whether a ramp is under way; the contribution, whether
    it was measured and how fresh it is; gradient ratio and health; time in stage; improvement;
    a failed gate; the seed's size and its blueprint (one-hot over ``blueprints``)."""
    onehot = [float(s.stage is st) for st in STAGES]
    has_c, has_r, has_h = s.contribution is not None, s.gradient_ratio is not None, s.gradient_health is not None
    age = s.contribution_age if s.contribution_age is not None else cfg.freshness_cap
    return [*onehot, s.alpha, s.alpha_target, float(s.alpha != s.alpha_target),
            float(has_c), symlog(s.contribution) if has_c else 0.0,
            min(age, cfg.freshness_cap) / cfg.freshness_cap,
            float(has_r), min(s.gradient_ratio, 10.0) / 10.0 if has_r else 0.0,
            float(has_h), s.gradient_health if has_h else 0.0,
            min(s.epochs_in_stage / cfg.stage_epochs_scale, 5.0),
            max(-5.0, min(5.0, s.improvement / cfg.pp_scale)),
            float(bool(s.last_gate_failed)), _param_share(s.params, host_params),
            *[float(s.blueprint == b) for b in blueprints]]


def encode_observation(obs: Observation, last_op: int, slot_ids: tuple[str, ...],
                       cfg: FeatureConfig = FeatureConfig(), blueprints: tuple[str, ...] = ()) -> Tensor:
    """(D,) float32 features; slots in ``slot_ids`` order (missing slots read as DORMANT)."""
    by_id = {s.slot_id: s for s in obs.slots}
    feats = run_features(obs, last_op, cfg)
    for sid in slot_ids:
        feats += slot_features(by_id.get(sid, SlotView(sid, SeedStage.DORMANT)), cfg, blueprints, obs.host_params)
    return torch.tensor(feats, dtype=torch.float32)


def slot_stages(obs: Observation, slot_ids: tuple[str, ...]) -> list[SeedStage]:
    by_id = {s.slot_id: s.stage for s in obs.slots}
    return [by_id.get(sid, SeedStage.DORMANT) for sid in slot_ids]
