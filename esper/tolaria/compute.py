"""Compute accounting of a run: the FLOPs of each epoch's passes, for the host and each seed.

Per-sample FLOPs come from ``esper.kasmina.flops`` (counted once per epoch on one sample of the
epoch's first batch, so no per-step work and no host-device sync); a pass's FLOPs are its
sample count times the per-sample count of the model as it ran. An epoch has three kinds of
pass: training (forward + backward), validation (forward) and one counterfactual validation
pass per measured slot (forward, that slot's seed off).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from esper.kasmina.flops import FlopCount, ModelFlops


@dataclass(frozen=True)
class SeedCompute:
    """One seed's compute in one epoch."""

    seed_id: str
    stage: str
    # the seed's stage during the epoch
    params: int
    forward_per_sample: int
    train: int
    # FLOPs of its part of the training passes
    eval: int
    # FLOPs of its part of the validation and counterfactual passes
    cumulative: int
    # since germination


@dataclass(frozen=True)
class EpochCompute:
    """The FLOPs of one epoch and of the run so far."""

    forward_per_sample: int
    # forward FLOPs per sample of the model as it trained
    train: int
    val: int
    counterfactual: int
    host: int
    # the host's share of train + val + counterfactual
    cumulative: int
    # train + val + counterfactual of every epoch so far, this one included
    seeds: dict[str, SeedCompute] = field(default_factory=dict)
    # slot id -> the compute of the seed in it (seeds that ran in the forward pass)

    @property
    def total(self) -> int:
        return self.train + self.val + self.counterfactual


@dataclass
class SeedInfo:
    """What the meter needs to know of a seed that ran this epoch."""

    seed_id: str
    stage: str
    params: int


class ComputeMeter:
    """Keeps the run's cumulative FLOPs, in total and per seed id."""

    def __init__(self) -> None:
        self.cumulative = 0
        self.seed_cumulative: dict[str, int] = {}

    def epoch(self, flops: ModelFlops, train_samples: int, val_samples: int,
              counterfactual_slots: list[str], seeds: dict[str, SeedInfo]) -> EpochCompute:
        """Charge one epoch: ``train_samples`` through a training step, ``val_samples`` through the
        validation pass and again through one pass per slot in ``counterfactual_slots``; ``seeds``
        (slot id -> seed) are the seeds that ran in the forward pass."""
        total = flops.total
        train = train_samples * total.training
        val = val_samples * total.forward
        cf = sum(val_samples * flops.without(sid).forward for sid in counterfactual_slots)
        host = (train_samples * flops.host.training
                + val_samples * flops.host.forward * (1 + len(counterfactual_slots)))
        self.cumulative += train + val + cf
        out = {sid: self._seed(sid, flops.seeds.get(sid, FlopCount()), info, train_samples, val_samples,
                               counterfactual_slots) for sid, info in seeds.items()}
        return EpochCompute(total.forward, train, val, cf, host, self.cumulative, out)

    def _seed(self, slot_id: str, c: FlopCount, info: SeedInfo, train_samples: int, val_samples: int,
              counterfactual_slots: list[str]) -> SeedCompute:
        passes = 1 + sum(1 for sid in counterfactual_slots if sid != slot_id)  # off in its own
        train, ev = train_samples * c.training, val_samples * c.forward * passes
        cum = self.seed_cumulative.get(info.seed_id, 0) + train + ev
        self.seed_cumulative[info.seed_id] = cum
        return SeedCompute(info.seed_id, info.stage, info.params, c.forward, train, ev, cum)
