"""Gates read their own window: G4's isolation violations are measured, G2/G4 judge gradient health
over several samples of their stage, G3 compares alpha with the slot's current target."""

import torch
from torch import nn

from esper.kasmina.gates import GateContext, gate_g2, gate_g3, gate_g4
from esper.kasmina.isolation import leaves_outside
from esper.kasmina.protocol import InjectionSpec
from esper.kasmina.slot import SeedSlot
from esper.leyline.actions import Decision, Op
from esper.leyline.config import GateConfig, GradientConfig, SlotConfig, TrainConfig
from esper.leyline.stages import SeedStage as S
from esper.tolaria.trainer import Trainer

from esper_testkit import tiny_data, tiny_model

GRAD = GradientConfig()
GATES = GateConfig(mode="permissive")
CTX = GateContext(50.0, 1.0)


def slot_in(stage, isolate=True, blueprint="conv_small"):
    slot = SeedSlot(InjectionSpec("s", 4, 0), "cnn", SlotConfig(tempo="fast", isolate_blending=isolate))
    slot.germinate("seed1", blueprint, 0, 0.0)
    for st in (S.TRAINING, S.BLENDING, S.HOLDING):
        if slot.stage is stage:
            break
        if st is S.HOLDING:
            while not slot.alpha.idle:
                slot.end_epoch()
        slot.enter(st, "test", 0.0, 1.0)
    return slot


def feed(slot, *seed_norms):
    """One gradient sample per list of per-tensor seed norms."""
    for norms in seed_norms:
        slot.record.grad.update(1.0, list(norms), slot.record.params, 1000, GRAD)


HEALTHY = (0.5, 0.5)
VANISHED = (0.0, 0.0)  # health 0.5


class LeakySeed(nn.Module):
    """A seed whose output depends on a tensor of the host (so its gradient reaches the host)."""

    def __init__(self, host_weight: nn.Parameter) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self._host = [host_weight]  # held, not registered: it stays the host's parameter

    def forward(self, x):
        return x * self.scale + 0.0 * self._host[0].sum()


# -- G4: isolation violations are measured ----------------------------------------------------


def test_leaves_outside_counts_only_foreign_leaves():
    own, foreign = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    x = torch.randn(3)
    assert leaves_outside(x * own, {id(own)}) == 0
    assert leaves_outside(x * own + foreign, {id(own)}) == 1
    assert leaves_outside((x * own).detach(), {id(own)}) == 0


def test_g4_fails_when_an_isolated_seed_reaches_the_host():
    slot = slot_in(S.HOLDING)
    slot.seed = LeakySeed(nn.Parameter(torch.ones(2)))
    slot.train()
    for _ in range(4):
        slot(torch.randn(2, 4, 3, 3))
    slot.eval()
    slot(torch.randn(2, 4, 3, 3))  # evaluation forwards are not audited
    assert slot.record.isolation_violations == 4
    slot.record.epochs_in_stage = 2
    feed(slot, HEALTHY, HEALTHY, HEALTHY)
    result = gate_g4(slot, CTX, GATES)
    assert "isolation_violations_4>3" in result.checks_failed


def test_a_properly_isolated_seed_has_no_violations_and_a_co_adapting_one_is_not_audited():
    slot = slot_in(S.HOLDING)
    slot.train()
    slot(torch.randn(2, 4, 3, 3, requires_grad=True))
    assert slot.record.isolation_violations == 0
    co = slot_in(S.HOLDING, isolate=False)
    co.seed = LeakySeed(nn.Parameter(torch.ones(2)))
    co.train()
    co(torch.randn(2, 4, 3, 3))
    assert co.record.isolation_violations == 0  # isolation is not asked of it


def test_violations_are_counted_in_real_training_and_reset_with_the_stage():
    model = tiny_model(["block1"])
    trainer = Trainer(model, tiny_data(), tiny_data(seed=1), num_classes=3, cfg=TrainConfig(epochs=2))
    trainer.lifecycle.apply(Decision(Op.GERMINATE, "block1", "conv_small"), 0, 0.0, 1.0)
    trainer.lifecycle.apply(Decision(Op.ADVANCE, "block1"), 0, 0.0, 1.0)
    slot = model.slots["block1"]
    host_weight = model.host.blocks[0][0].weight
    slot.seed = LeakySeed(host_weight)
    trainer._sync_seed_optimizers()
    trainer.run_epoch(1)
    assert slot.record.isolation_violations == 3  # one per training batch (96 samples / 32)
    slot.enter(S.BLENDING, "test", 0.0, 1.0)
    assert slot.record.isolation_violations == 0


# -- G2 / G4: gradient health over the stage's own samples ------------------------------------


def test_g2_needs_several_samples():
    slot = slot_in(S.TRAINING)
    slot.record.epochs_in_stage = 3
    feed(slot, HEALTHY)
    assert "gradient_samples_1<3" in gate_g2(slot, CTX, GATES).checks_failed
    feed(slot, HEALTHY, HEALTHY)
    result = gate_g2(slot, CTX, GATES)
    assert result.passed and "gradient_samples_3" in result.checks_passed


def test_g2_judges_the_mean_health_of_the_window_not_the_last_sample():
    slot = slot_in(S.TRAINING)
    slot.record.epochs_in_stage = 3
    feed(slot, VANISHED, VANISHED, HEALTHY)  # last sample healthy; mean (0.5 + 0.5 + 1) / 3
    result = gate_g2(slot, CTX, GATES)
    assert "gradient_health_low_0.67" in result.checks_failed


def test_an_exploding_sample_anywhere_in_the_window_fails_g2():
    slot = slot_in(S.TRAINING)
    slot.record.epochs_in_stage = 3
    feed(slot, HEALTHY, (20.0, 0.5), HEALTHY)
    assert "gradients_exploding_1" in gate_g2(slot, CTX, GATES).checks_failed


def test_g4_window_starts_with_holding():
    slot = slot_in(S.BLENDING)
    feed(slot, HEALTHY, HEALTHY, HEALTHY)
    while not slot.alpha.idle:
        slot.end_epoch()
    slot.enter(S.HOLDING, "test", 0.0, 1.0)
    slot.record.epochs_in_stage = 2
    assert "gradient_samples_0<3" in gate_g4(slot, CTX, GATES).checks_failed


def test_g4_sees_gradients_that_vanish_in_holding():
    model = tiny_model(["block1"])
    cfg = TrainConfig(epochs=4, gradients=GradientConfig(stride=1), slot=SlotConfig(tempo="fast"))
    trainer = Trainer(model, tiny_data(), tiny_data(seed=1), num_classes=3, cfg=cfg)
    trainer.lifecycle.apply(Decision(Op.GERMINATE, "block1", "conv_small"), 0, 0.0, 1.0)
    slot = model.slots["block1"]
    slot.enter(S.TRAINING, "t", 0.0, 1.0)
    slot.enter(S.BLENDING, "t", 0.0, 1.0)
    trainer._sync_seed_optimizers()
    trainer.run_epoch(1)  # healthy samples in BLENDING
    while not slot.alpha.idle:
        slot.end_epoch()
    slot.enter(S.HOLDING, "t", 0.0, 1.0)
    for p in slot.seed.parameters():
        p.register_hook(torch.zeros_like)  # the seed stops learning in HOLDING
    trainer.run_epoch(2)
    trainer.run_epoch(3)
    slot.record.epochs_in_stage = 2
    slot.record.loss_at_hold_start = 10.0
    result = gate_g4(slot, GateContext(50.0, 1.0), GATES)
    assert len(slot.record.grad.window) == 6  # 3 batches x 2 epochs, all from HOLDING
    assert "gradient_health_low_0.50" in result.checks_failed


# -- G3: the slot's current target --------------------------------------------------------------


def test_g3_follows_a_retarget_during_blending():
    slot = slot_in(S.BLENDING)
    while not slot.alpha.idle:
        slot.end_epoch()
    assert slot.set_alpha_target(0.5, 2)  # the controller lowers the target before HOLDING
    assert not gate_g3(slot, CTX, GATES).passed  # still ramping
    slot.end_epoch()
    result = gate_g3(slot, CTX, GATES)
    assert slot.alpha.alpha == 0.5 and result.passed, result.checks_failed
    assert "alpha_at_target_0.500" in result.checks_passed


def test_g3_refuses_a_blend_to_zero():
    slot = slot_in(S.BLENDING)
    while not slot.alpha.idle:
        slot.end_epoch()
    slot.set_alpha_target(0.0, 1)
    assert "alpha_target_zero" in gate_g3(slot, CTX, GATES).checks_failed


def test_the_window_is_the_stages_recent_samples():
    slot = slot_in(S.TRAINING)
    slot.record.epochs_in_stage = 3
    cfg = GateConfig(mode="permissive", gradient_window=5)
    feed(slot, (20.0, 0.5), VANISHED, HEALTHY, HEALTHY, HEALTHY)
    assert "gradients_exploding_1" in gate_g2(slot, CTX, GATES).checks_failed  # default window: all 5
    feed(slot, HEALTHY)
    result = gate_g2(slot, CTX, cfg)  # the last 5: one vanished, four healthy: mean 0.9
    assert result.passed and "gradient_health_ok_0.90" in result.checks_passed
