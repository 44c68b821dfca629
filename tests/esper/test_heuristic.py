"""The heuristic controller's rules, on hand-made observations."""

from esper.leyline.actions import Observation, Op, SlotView
from esper.leyline.config import HeuristicConfig
from esper.leyline.stages import SeedStage as S
from esper.tamiyo import HeuristicController, NoController, acc_plateaued, host_stable

FLAT_ACC = [50.0, 60.0, 61.0, 61.1, 61.2, 61.2]
FLAT_LOSS = [2.0, 1.2, 1.0, 0.99, 0.98, 0.98]


def obs(slots, epoch=6, acc=FLAT_ACC, loss=FLAT_LOSS, since_prune=10 ** 6, pruned=()):
    return Observation(epoch, 40, "cnn", list(acc), list(loss), tuple(slots), since_prune, tuple(pruned))


def dormant(*ids):
    return [SlotView(i, S.DORMANT) for i in ids]


def test_plateau_and_stability_helpers():
    assert acc_plateaued([50, 60, 60.2, 60.3, 60.1], 3, 0.5)
    assert not acc_plateaued([50, 60, 60.2, 61.0, 60.1], 3, 0.5)
    assert host_stable([1.0, 0.99, 0.98, 0.985], 3, 0.05)
    assert not host_stable([1.0, 0.8, 0.79, 0.78], 3, 0.05)


def test_germinates_on_plateau_into_the_last_free_slot():
    out = HeuristicController().decide(obs(dormant("a", "b")))
    assert [d.op for d in out] == [Op.GERMINATE, Op.ADVANCE]
    assert out[0].slot_id == "b" and out[0].blueprint == "conv_heavy" and "plateau" in out[0].reason


def test_waits_with_reasons_when_conditions_fail():
    c = HeuristicController()
    early = c.decide(obs(dormant("a"), epoch=3))
    assert early[0].op is Op.WAIT and "epoch 3 < 5" in early[0].reason
    improving = c.decide(obs(dormant("a"), acc=[50, 55, 60, 65, 70, 75]))
    assert improving[0].op is Op.WAIT and "accuracy still improving" in improving[0].reason
    cooling = c.decide(obs(dormant("a"), since_prune=2))
    assert cooling[0].op is Op.WAIT and "since prune" in cooling[0].reason


def test_no_germination_while_a_seed_is_live():
    live = SlotView("a", S.TRAINING, "seed1", "conv_light", epochs_in_stage=1)
    out = HeuristicController().decide(obs([live] + dormant("b")))
    assert [(d.op, d.slot_id) for d in out] == [(Op.ADVANCE, "a")]


def test_holding_fossilizes_contributors_and_prunes_the_rest():
    c = HeuristicController(HeuristicConfig(hold_decide_epochs=2))
    good = SlotView("a", S.HOLDING, "s", "x", epochs_in_stage=1, contribution=2.0, improvement=3.0)
    assert c.decide(obs([good]))[0].op is Op.FOSSILIZE
    meh = SlotView("a", S.HOLDING, "s", "x", epochs_in_stage=2, contribution=0.2, improvement=1.0)
    assert c.decide(obs([meh]))[0].op is Op.PRUNE
    young = SlotView("a", S.HOLDING, "s", "x", epochs_in_stage=0, contribution=0.2, improvement=1.0)
    assert c.decide(obs([young]))[0].op is Op.WAIT


def test_prunes_failing_seeds_and_ransomware():
    c = HeuristicController()
    failing = SlotView("a", S.BLENDING, "s", "x", epochs_since_germination=5, improvement=-2.5)
    assert c.decide(obs([failing]))[0].op is Op.PRUNE
    ransom = SlotView("a", S.HOLDING, "s", "x", epochs_in_stage=1, epochs_since_germination=3,
                      contribution=4.0, improvement=-1.0)
    d = c.decide(obs([ransom]))[0]
    assert d.op is Op.PRUNE and "ransomware" in d.reason


def test_blueprints_rotate_and_pruned_ones_are_penalised():
    c = HeuristicController()
    first = c.decide(obs(dormant("a")))[0].blueprint
    second = c.decide(obs(dormant("a")))[0].blueprint
    assert (first, second) == ("conv_heavy", "conv_light")
    c2 = HeuristicController()
    out = c2.decide(obs(dormant("a"), pruned=("conv_heavy",)))
    assert out[0].blueprint == "conv_light"


def test_no_controller_only_waits():
    assert [d.op for d in NoController().decide(obs(dormant("a")))] == [Op.WAIT]
