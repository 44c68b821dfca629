"""The governor: each panic triggers as specified and only then; rollback restores exactly."""

import math

import pytest
import torch

from esper.leyline.config import GovernorConfig
from esper.leyline.stages import SeedStage
from esper.tolaria.governor import Governor

from esper_testkit import tiny_model

LN10 = math.log(10)


def _warm(gov, values):
    for v in values:
        assert gov.check(v) is None


@pytest.mark.parametrize("bad,reason", [(float("nan"), "nan"), (float("inf"), "inf")])
def test_nan_and_inf_panic_and_roll_back_at_once(bad, reason):
    gov = Governor(GovernorConfig(), 10)
    v = gov.check(bad)
    assert v.reason == reason and v.rollback and v.consecutive == 1
    assert len(gov.history) == 0


def test_lobotomy_needs_history_and_a_good_mean():
    gov = Governor(GovernorConfig(), 10)
    _warm(gov, [LN10] * 3)
    assert gov.check(LN10) is None  # too few samples: no lobotomy check
    gov2 = Governor(GovernorConfig(), 10)
    _warm(gov2, [0.5 + 0.01 * i for i in range(10)])
    v = gov2.check(LN10 * 1.03)
    assert v is not None and v.reason == "lobotomy" and v.rollback
    gov3 = Governor(GovernorConfig(), 10)
    _warm(gov3, [2.0] * 10)  # history mean 2.0 > 0.6 ln 10: a bad but honest model
    assert gov3.check(LN10) is None


def test_statistical_anomaly_needs_all_three_conditions_and_three_in_a_row():
    gov = Governor(GovernorConfig(), 10)
    _warm(gov, [0.5, 0.52, 0.48, 0.5, 0.51, 0.49, 0.5, 0.5, 0.52, 0.48])
    assert gov.check(2.0) is None  # > mean + 6 sigma and > 3x mean, but below the ln(10) floor
    gov = Governor(GovernorConfig(), 10)
    _warm(gov, [0.5, 0.52, 0.48, 0.5, 0.51, 0.49, 0.5, 0.5, 0.52, 0.48])
    n = len(gov.history)
    v1, v2 = gov.check(5.0), gov.check(6.0)
    assert (v1.reason, v1.rollback, v1.consecutive) == ("statistical", False, 1)
    assert (v2.consecutive, v2.rollback) == (2, False)
    assert len(gov.history) == n  # anomalies stay out of the history
    v3 = gov.check(7.0)
    assert v3.rollback and v3.consecutive == 3 and v3.threshold >= LN10
    assert gov.check(0.5) is None and gov.consecutive == 0


def test_a_good_loss_resets_the_anomaly_count():
    gov = Governor(GovernorConfig(), 10)
    _warm(gov, [0.5] * 5 + [0.6] * 5)
    assert gov.check(9.0).consecutive == 1
    assert gov.check(0.55) is None
    assert gov.check(9.0).consecutive == 1


def test_rollback_restores_exactly_prunes_live_seeds_and_resets_optimizer():
    model = tiny_model()
    gov = Governor(GovernorConfig(), 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3, 8, 8)).sum().backward()
    opt.step()
    gov.take_snapshot(model, epoch=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(v.device.type == "cpu" for v in gov.snapshot.values())
    slot = model.slots["block1"]
    slot.germinate("seed1", "conv_light", 5, 0.0)
    slot.enter(SeedStage.TRAINING, "t", 0.0, 1.0)
    with torch.no_grad():
        for p in model.host.parameters():
            p.add_(1.0)
    model.train()
    model(torch.randn(4, 3, 8, 8))  # BatchNorm running stats move too
    pruned = gov.rollback(model, [opt])
    assert pruned == ["seed1"] and slot.stage is SeedStage.PRUNED and slot.seed is None
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert len(opt.state) == 0


def test_snapshot_and_rollback_of_a_model_without_parameters():
    model = torch.nn.Sequential(torch.nn.ReLU())
    gov = Governor(GovernorConfig(), 10)
    assert gov.take_snapshot(model, 0) == 0
    assert gov.rollback(model, []) == []


def test_periodic_snapshots():
    model = tiny_model()
    gov = Governor(GovernorConfig(snapshot_every=2), 3)
    assert gov.note_good_epoch(model, 1) is not None  # first one always
    assert gov.note_good_epoch(model, 2) is None
    assert gov.note_good_epoch(model, 3) is not None and gov.snapshot_epoch == 3


def test_assess_changes_nothing_and_record_applies_the_verdict_like_check():
    """assess + record (the distributed split: rank 0 assesses, every rank records) == check."""
    losses = [0.5, 0.52, 0.48, 0.5, 0.51, 0.49, 0.5, 0.5, 0.52, 0.48, 5.0, 6.0, 0.5, float("nan"), 7.0]
    whole, split = Governor(GovernorConfig(), 10), Governor(GovernorConfig(), 10)
    for loss in losses:
        before = (list(split.history), split.consecutive)
        verdict = split.assess(loss)
        assert (list(split.history), split.consecutive) == before
        split.record(loss, verdict)
        assert repr(verdict) == repr(whole.check(loss))  # repr: a NaN loss equals itself
        assert (list(split.history), split.consecutive) == (list(whole.history), whole.consecutive)
    assert list(split.history) == losses[:10] + [0.5]
