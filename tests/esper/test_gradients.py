"""Gradient statistics: ratio edge cases, EMA bias correction, and G2 fed from real training."""

import math

import pytest
import torch

from esper.kasmina.gates import GateContext, gate_g2
from esper.kasmina.gradients import (
    BiasCorrectedEMA, GradientCollector, gradient_health, gradient_ratio, new_gradient_stats,
    tensor_grad_norms,
)
from esper.leyline.actions import Decision, Op
from esper.leyline.config import GateConfig, GradientConfig, TrainConfig
from esper.leyline.stages import SeedStage
from esper.tolaria.trainer import Trainer

from esper_testkit import tiny_data, tiny_model

CFG = GradientConfig()


def test_ratio_formula():
    assert gradient_ratio(0.5, 2.0, 100, 400, CFG) == pytest.approx(0.25 * math.sqrt(4))


@pytest.mark.parametrize("host_norm", [0.0, 1e-9, 0.99e-8])
def test_ratio_unmeasurable_when_host_norm_tiny(host_norm):
    assert gradient_ratio(3.0, host_norm, 10, 1000, CFG) is None  # never seed / 1e-8


def test_ratio_clamped_at_ten():
    assert gradient_ratio(1e3, 1.0, 10, 1000, CFG) == 10.0
    assert gradient_ratio(float("nan"), 1.0, 10, 10, CFG) is None
    assert gradient_ratio(1.0, 1.0, 0, 10, CFG) is None


def test_ema_bias_correction():
    ema = BiasCorrectedEMA(decay=0.9)
    assert ema.value is None
    ema.update(2.0)
    assert ema.value == pytest.approx(2.0)  # corrected: no pull toward 0
    ema.update(4.0)
    raw = 0.9 * 0.2 + 0.1 * 4.0
    assert ema.value == pytest.approx(raw / (1 - 0.81))


def test_stats_skip_unmeasurable_samples():
    stats = new_gradient_stats(CFG)
    stats.update(0.0, [0.5, 0.5], 10, 100, CFG)
    assert stats.ratio is None and stats.samples == 1
    stats.update(1.0, [0.3, 0.4], 10, 90, CFG)
    assert stats.ratio == pytest.approx(0.5 * 3.0)


def test_health():
    assert gradient_health([1.0, 1.0], CFG) == (1.0, False, False)
    h, v, e = gradient_health([0.0, 1.0, 20.0, float("inf")], CFG)
    assert h == pytest.approx(1 - 0.5 * 0.25 - 0.8 * 0.5) and v and e


def test_foreach_norms_and_bulk_flush():
    a = torch.nn.Parameter(torch.ones(4))
    b = torch.nn.Parameter(torch.ones(9))
    c = torch.nn.Parameter(torch.ones(2))  # no grad: counts 0
    a.grad, b.grad = torch.full((4,), 2.0), torch.ones(9)
    assert tensor_grad_norms([a, b, c], torch.device("cpu")).tolist() == [4.0, 3.0, 0.0]
    col = GradientCollector()
    col.collect([a, b], {"s1": [c], "s2": [a]}, torch.device("cpu"))
    out = col.flush()
    assert [(o.slot_id, o.host_norm, o.seed_norms) for o in out] == [("s1", 5.0, [0.0]), ("s2", 5.0, [4.0])]
    assert col.flush() == []


def _trainer_with_training_seed(freeze: str | None = None):
    model = tiny_model(["block1"])
    cfg = TrainConfig(epochs=3, gradients=GradientConfig(stride=1), lr_schedule="constant")
    trainer = Trainer(model, tiny_data(), tiny_data(seed=1), num_classes=3, cfg=cfg)
    trainer.lifecycle.apply(Decision(Op.GERMINATE, "block1", "conv_small"), 0, 0.0, 1.0)
    slot = model.slots["block1"]
    if freeze == "zero-grad":
        for p in slot.seed.parameters():
            p.register_hook(torch.zeros_like)
    elif freeze == "frozen":
        slot.seed.requires_grad_(False)
    trainer.lifecycle.apply(Decision(Op.ADVANCE, "block1"), 0, 0.0, 1.0)
    trainer._sync_seed_optimizers()
    assert slot.stage is SeedStage.TRAINING
    for epoch in (1, 2, 3):
        trainer.run_epoch(epoch)
    return trainer, slot


def test_g2_ratio_is_measured_from_real_training():
    trainer, slot = _trainer_with_training_seed()
    stats = slot.record.grad
    assert stats.samples == 3 * 3  # 3 batches per epoch, stride 1, 3 epochs
    assert stats.ratio is not None and 0 < stats.ratio <= 10
    assert stats.host_norm > 0 and stats.seed_norm > 0
    result = gate_g2(slot, GateContext(50.0, 1.0), GateConfig(mode="permissive"))
    assert result.passed, result.checks_failed
    assert any(c.startswith("seed_gradient_ok_") for c in result.checks_passed)


def test_g2_fails_for_a_seed_that_does_not_learn():
    _, slot = _trainer_with_training_seed("zero-grad")
    assert slot.record.grad.ratio == 0.0
    result = gate_g2(slot, GateContext(50.0, 1.0), GateConfig(mode="permissive"))
    assert not result.passed
    assert "seed_gradient_low_0.00" in result.checks_failed


def test_g2_fails_closed_when_never_measured():
    _, slot = _trainer_with_training_seed("frozen")
    assert slot.record.grad.ratio is None
    result = gate_g2(slot, GateContext(50.0, 1.0), GateConfig(mode="permissive"))
    assert "seed_gradient_unmeasured" in result.checks_failed
