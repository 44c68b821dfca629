"""The heuristic controller's rules, on hand-made observations."""

import dataclasses

from esper.leyline.actions import Observation, Op, SlotView
from esper.leyline.config import HeuristicConfig
from esper.leyline.stages import SeedStage as S
from esper.tamiyo import HeuristicController, NoController, acc_plateaued, host_stable

PLATEAU = HeuristicConfig(trigger="plateau", min_epoch=5, max_live_seeds=1, slot_preference="last",
                          max_flops_ratio=0.0, fossilize_se=0.0, grow_until=1.0)
"""The earlier rule (CORE_SPEC §7): one seed at a time, on a plateau, deepest slot, no budget."""
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
    out = HeuristicController(PLATEAU).decide(obs(dormant("a", "b")))
    assert [d.op for d in out] == [Op.GERMINATE, Op.ADVANCE]
    assert out[0].slot_id == "b" and out[0].blueprint == "conv_heavy" and "plateau" in out[0].reason


def test_waits_with_reasons_when_conditions_fail():
    c = HeuristicController(PLATEAU)
    early = c.decide(obs(dormant("a"), epoch=3))
    assert early[0].op is Op.WAIT and "epoch 3 < 5" in early[0].reason
    improving = c.decide(obs(dormant("a"), acc=[50, 55, 60, 65, 70, 75]))
    assert improving[0].op is Op.WAIT and "accuracy still improving" in improving[0].reason
    cooling = c.decide(obs(dormant("a"), since_prune=2))
    assert cooling[0].op is Op.WAIT and "since prune" in cooling[0].reason


def test_no_germination_while_a_seed_is_live():
    live = SlotView("a", S.TRAINING, "seed1", "conv_light", epochs_in_stage=1)
    out = HeuristicController(PLATEAU).decide(obs([live] + dormant("b")))
    assert [(d.op, d.slot_id) for d in out] == [(Op.ADVANCE, "a")]


def test_holding_fossilizes_contributors_and_prunes_the_rest():
    c = HeuristicController(dataclasses.replace(PLATEAU, hold_decide_epochs=2))
    good = SlotView("a", S.HOLDING, "s", "x", epochs_in_stage=1, contribution=2.0, improvement=3.0)
    assert c.decide(obs([good]))[0].op is Op.FOSSILIZE
    meh = SlotView("a", S.HOLDING, "s", "x", epochs_in_stage=2, contribution=0.2, improvement=1.0)
    assert c.decide(obs([meh]))[0].op is Op.PRUNE
    young = SlotView("a", S.HOLDING, "s", "x", epochs_in_stage=0, contribution=0.2, improvement=1.0)
    assert c.decide(obs([young]))[0].op is Op.WAIT


def test_prunes_failing_seeds_and_ransomware():
    c = HeuristicController(PLATEAU)
    failing = SlotView("a", S.BLENDING, "s", "x", epochs_since_germination=5, improvement=-2.5)
    assert c.decide(obs([failing]))[0].op is Op.PRUNE
    ransom = SlotView("a", S.HOLDING, "s", "x", epochs_in_stage=1, epochs_since_germination=3,
                      contribution=4.0, improvement=-1.0)
    d = c.decide(obs([ransom]))[0]
    assert d.op is Op.PRUNE and "ransomware" in d.reason


def test_blueprints_rotate_and_pruned_ones_are_penalised():
    c = HeuristicController(PLATEAU)
    first = c.decide(obs(dormant("a")))[0].blueprint
    second = c.decide(obs(dormant("a")))[0].blueprint
    assert (first, second) == ("conv_heavy", "conv_light")
    c2 = HeuristicController(PLATEAU)
    out = c2.decide(obs(dormant("a"), pruned=("conv_heavy",)))
    assert out[0].blueprint == "conv_light"


def test_no_controller_only_waits():
    assert [d.op for d in NoController().decide(obs(dormant("a")))] == [Op.WAIT]


# -- growth levers: early trigger, several live seeds, cheapest first, budget, noise-aware keep ----

import pytest  # noqa: E402

from esper.cli import CliError, main, parse_heuristic  # noqa: E402

IMPROVING = [50, 55, 60, 65, 70, 75]


def lever(**kw):
    """The earlier rule with some levers set (each test names what it relies on)."""
    return dataclasses.replace(PLATEAU, **kw)
COSTS = {s: {"conv_heavy": (4000, 600), "conv_light": (600, 80), "bottleneck": (200, 25), "attention": (70, 1)}
         for s in ("a", "b", "c")}


def costed(slots, **kw):
    base = obs(slots, acc=IMPROVING, **kw)
    return dataclasses.replace(base, host_params=6000, host_flops=400, blueprint_costs=COSTS)


def germinations(decisions):
    return [(d.slot_id, d.blueprint) for d in decisions if d.op is Op.GERMINATE]


def test_early_trigger_germinates_without_waiting_for_a_plateau():
    plateau = HeuristicController(lever(min_epoch=1))
    assert plateau.decide(costed(dormant("a"), epoch=2))[0].op is Op.WAIT
    early = HeuristicController(lever(min_epoch=1, trigger="early"))
    out = early.decide(costed(dormant("a"), epoch=2))
    assert germinations(out) == [("a", "conv_heavy")] and "early growth" in out[0].reason
    assert early.decide(costed(dormant("a"), epoch=0))[0].op is Op.WAIT  # min_epoch still holds


def test_several_live_seeds_fill_free_slots_in_preference_order():
    c = HeuristicController(lever(min_epoch=1, trigger="early", max_live_seeds=2))
    live = SlotView("c", S.TRAINING, "s1", "conv_light", epochs_in_stage=1)
    assert germinations(c.decide(costed([*dormant("a", "b"), live]))) == [("b", "conv_heavy")]
    c = HeuristicController(lever(min_epoch=1, trigger="early", max_live_seeds=3, slot_preference="first"))
    assert [s for s, _ in germinations(c.decide(costed(dormant("a", "b", "c"))))] == ["a", "b", "c"]


def test_cheapest_first_and_pruned_ones_last():
    cfg = lever(min_epoch=1, trigger="early", blueprint_order="cheapest")
    assert germinations(HeuristicController(cfg).decide(costed(dormant("a")))) == [("a", "attention")]
    out = HeuristicController(cfg).decide(costed(dormant("a"), pruned=("attention",)))
    assert germinations(out) == [("a", "bottleneck")]


def test_flops_budget_counts_the_seeds_already_grown():
    cfg = lever(min_epoch=1, trigger="early", max_flops_ratio=1.3, max_live_seeds=3)
    fossil = SlotView("c", S.FOSSILIZED, "s0", "conv_light")  # 80 of the 120 FLOPs the budget allows
    out = HeuristicController(cfg).decide(costed([*dormant("a", "b"), fossil]))
    assert germinations(out) == [("b", "bottleneck"), ("a", "attention")]  # 80 + 25 + 1 of 120 FLOPs
    wait = HeuristicController(cfg).decide(costed([SlotView("a", S.FOSSILIZED, "s", "conv_heavy")] + dormant("b")))
    assert wait[0].op is Op.WAIT and "over budget (forward FLOPs" in wait[0].reason


def test_params_budget_and_unknown_costs_fail_closed():
    cfg = lever(min_epoch=1, trigger="early", max_params=6700)
    assert germinations(HeuristicController(cfg).decide(costed(dormant("a")))) == [("a", "conv_light")]
    blind = dataclasses.replace(costed(dormant("a")), blueprint_costs={})
    out = HeuristicController(cfg).decide(blind)
    assert out[0].op is Op.WAIT and "cost unknown" in out[0].reason


@pytest.mark.parametrize("se,op", [(0.5, Op.PRUNE), (0.3, Op.FOSSILIZE), (None, Op.PRUNE)])
def test_fossilize_only_clear_of_noise(se, op):
    c = HeuristicController(lever(fossilize_se=2.0, hold_decide_epochs=2))
    v = SlotView("a", S.HOLDING, "s", "x", epochs_in_stage=2, contribution=0.8, improvement=1.0,
                 contribution_se=se)
    assert c.decide(obs([v]))[0].op is op


def test_parse_heuristic_words_lists_and_budget_flags(tmp_path, capsys):
    cfg = parse_heuristic("trigger=early,blueprint_order=cheapest,blueprints=conv_light+attention,max_live_seeds=3")
    assert (cfg.trigger, cfg.blueprint_order, cfg.blueprints, cfg.max_live_seeds) == (
        "early", "cheapest", ("conv_light", "attention"), 3)
    with pytest.raises(CliError, match="trigger is one of plateau, early"):
        parse_heuristic("trigger=soon")
    assert main(["train", "--max-flops-ratio", "0", "--runs-dir", str(tmp_path)]) == 2
    assert "--max-flops-ratio must be > 0" in capsys.readouterr().err


def test_no_growth_late_in_the_run():
    c = HeuristicController(lever(min_epoch=1, trigger="early", grow_until=0.5))
    assert germinations(c.decide(costed(dormant("a"), epoch=20)))  # 20 of 40: still on time
    late = c.decide(costed(dormant("a"), epoch=21))
    assert late[0].op is Op.WAIT and "too late to grow" in late[0].reason


def test_gate_overrides(tmp_path, capsys):
    from esper.cli import make_parser, spec_from_args
    spec, _ = spec_from_args(make_parser().parse_args(["train", "--gates", "strict", "--gate",
                                                       "min_training_epochs=1,min_contribution_strict=2"]))
    g = spec.train.gates
    assert (g.mode, g.min_training_epochs, g.min_contribution_strict) == ("strict", 1, 2.0)
    assert main(["train", "--gate", "gradient_ratio_threshold=1", "--runs-dir", str(tmp_path)]) == 2
    assert "--gate 'gradient_ratio_threshold=1'" in capsys.readouterr().err


def test_defaults_are_the_measured_winners():
    c = HeuristicConfig()
    assert (c.trigger, c.min_epoch, c.max_live_seeds, c.slot_preference) == ("early", 1, 3, "first")
    assert (c.max_flops_ratio, c.fossilize_se, c.grow_until) == (1.5, 2.0, 0.5)
    out = HeuristicController().decide(costed(dormant("a", "b", "c"), epoch=1))
    assert germinations(out) == [("a", "conv_light"), ("b", "bottleneck"), ("c", "attention")]  # 1.265x
