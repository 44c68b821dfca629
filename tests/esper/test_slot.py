"""SeedSlot lifecycle: germination, STE in TRAINING, alpha ramps, scheduled prunes, embargo."""

import pytest
import torch

from esper.kasmina.protocol import InjectionSpec
from esper.kasmina.slot import SeedSlot
from esper.leyline.config import SlotConfig
from esper.leyline.stages import IllegalTransition, SeedStage as S
from esper.nissa.sink import Sink


class Recorder(Sink):
    def __init__(self):
        self.moves = []

    def stage_changed(self, slot_id, seed_id, a, b, reason):
        self.moves.append((a.name, b.name))


def make(cfg=SlotConfig()):
    rec = Recorder()
    slot = SeedSlot(InjectionSpec("s", 4, 0), "cnn", cfg, sink=rec)
    return slot, rec


def test_germination_keeps_output_and_training_is_straight_through():
    slot, rec = make()
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    slot.germinate("seed1", "conv_light", 3, 40.0)
    assert slot.stage is S.GERMINATED and slot.record.probe_ok
    assert torch.equal(slot(x), x)
    slot.enter(S.TRAINING, "G1", 40.0, 1.0)
    torch.nn.init.normal_(slot.seed.body[-1].weight)
    out = slot(x)
    assert torch.allclose(out, x)  # forward equals host
    out.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))  # host gradient untouched (seed input detached)
    assert all(p.grad is not None for p in slot.seed_parameters())
    assert rec.moves == [("DORMANT", "GERMINATED"), ("GERMINATED", "TRAINING")]


def test_blending_ramps_alpha_each_epoch_and_fossil_stays():
    slot, _ = make(SlotConfig(tempo="fast"))
    slot.germinate("seed1", "conv_small", 0, 0.0)
    slot.enter(S.TRAINING, "", 0.0, 1.0)
    slot.enter(S.BLENDING, "", 0.0, 1.0)
    assert slot.alpha.alpha == pytest.approx(1 / 3)
    slot.end_epoch()
    assert slot.alpha.alpha == pytest.approx(2 / 3) and slot.record.epochs_in_stage == 1
    slot.end_epoch()
    assert slot.alpha.alpha == 1.0 and slot.alpha.idle
    slot.enter(S.HOLDING, "", 0.0, 0.9)
    slot.enter(S.FOSSILIZED, "", 0.0, 0.9)
    with pytest.raises(RuntimeError):
        slot.prune("no", "test")
    with pytest.raises(IllegalTransition):
        slot.transition(S.PRUNED)


def test_scheduled_prune_ramps_down_then_frees_and_cools_down():
    slot, rec = make(SlotConfig(tempo="fast", prune_ticks=2, embargo_epochs=2))
    slot.germinate("seed1", "conv_small", 0, 0.0)
    slot.enter(S.TRAINING, "", 0.0, 1.0)
    slot.enter(S.BLENDING, "", 0.0, 1.0)
    slot.prune("bad", "test")
    assert slot.stage is S.BLENDING and slot.seed is not None  # still ramping down
    slot.end_epoch()
    assert slot.alpha.alpha == pytest.approx(1 / 6)
    slot.prune("again", "test")  # a repeated prune does not restart the ramp
    assert slot.pending_prune == ("bad", "test")
    slot.end_epoch()
    assert slot.stage is S.PRUNED and slot.seed is None and slot.alpha.alpha == 0.0
    for _ in range(4):
        slot.end_epoch()
    assert slot.stage is S.DORMANT
    assert rec.moves[-4:] == [("BLENDING", "PRUNED"), ("PRUNED", "EMBARGOED"), ("EMBARGOED", "RESETTING"),
                              ("RESETTING", "DORMANT")]


def test_prune_before_blending_is_instant():
    slot, _ = make(SlotConfig(prune_ticks=3))
    slot.germinate("seed1", "conv_small", 0, 0.0)
    slot.prune("early", "test")
    assert slot.stage is S.PRUNED and slot.seed is None


def test_gate_blend_uses_a_gate_network():
    slot, _ = make(SlotConfig(blend="gate"))
    slot.germinate("seed1", "conv_small", 0, 0.0)
    assert slot.gate_net is not None
    n_gate = sum(p.numel() for p in slot.gate_net.parameters())
    assert slot.record.params == n_gate + sum(p.numel() for p in slot.seed.parameters())
    slot.enter(S.TRAINING, "", 0.0, 1.0)
    slot.enter(S.BLENDING, "", 0.0, 1.0)
    x = torch.randn(2, 4, 3, 3)
    assert slot(x).shape == x.shape


def _holding():
    slot, _ = make(SlotConfig(tempo="fast"))
    slot.germinate("seed1", "conv_small", 0, 0.0)
    slot.enter(S.TRAINING, "", 0.0, 1.0)
    slot.enter(S.BLENDING, "", 0.0, 1.0)
    while not slot.alpha.idle:
        slot.end_epoch()
    slot.enter(S.HOLDING, "", 0.0, 1.0)
    for p in slot.seed.parameters():  # a seed whose output is visible in the blend
        torch.nn.init.normal_(p)
    return slot


@pytest.mark.parametrize("epochs, trace", [
    (1, [0.5, 0.5, 0.5, 0.5, 0.5]),
    (3, [1 - 0.5 / 3, 1 - 1 / 3, 0.5, 0.5, 0.5]),
    (5, [0.9, 0.8, 0.7, 0.6, 0.5]),
])
def test_set_alpha_target_ramps_over_the_chosen_epochs(epochs, trace):
    slot = _holding()
    assert slot.alpha.alpha == 1.0 and slot.alpha.curve == "linear"
    assert slot.set_alpha_target(0.5, epochs)
    seen = []
    for _ in range(5):  # alpha of each following epoch's training, then its end-of-epoch tick
        seen.append(slot.alpha.alpha)
        slot.end_epoch()
    assert seen == pytest.approx(trace)
    assert slot.alpha.idle and slot.alpha.alpha == 0.5


def test_alpha_speed_changes_the_blend_and_a_ramp_is_not_restarted():
    fast, slow = _holding(), _holding()
    slow.seed.load_state_dict(fast.seed.state_dict())
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(fast(x), slow(x))
    fast.set_alpha_target(0.5, 1)
    slow.set_alpha_target(0.5, 5)
    assert fast.alpha.alpha == 0.5 and slow.alpha.alpha == pytest.approx(0.9)
    assert not torch.allclose(fast(x), slow(x))  # the next epoch trains through a different blend
    assert not slow.set_alpha_target(1.0, 1)  # ramping: refused, the ramp goes on
    assert slow.alpha.target == 0.5 and slow.alpha.steps_total == 5


def test_set_alpha_target_only_where_alpha_ramps():
    slot, _ = make()
    slot.germinate("seed1", "conv_small", 0, 0.0)
    slot.enter(S.TRAINING, "", 0.0, 1.0)
    assert not slot.set_alpha_target(0.5, 3)  # alpha does not tick in TRAINING
    assert slot.alpha.alpha == 0.0 and slot.alpha.idle
