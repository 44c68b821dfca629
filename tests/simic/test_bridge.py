"""The policy bridge: no inert actions (zero-parameter blueprints masked, stuck seeds expire), the
Decisions an action stands for, and the observation features of CORE_SPEC §7."""

import dataclasses

import pytest
import torch

from esper.kasmina.blueprints import blueprint_names
from esper.kasmina.model import MorphogeneticModel
from esper.leyline.actions import Observation, Op, SlotView
from esper.leyline.config import GateConfig, TrainConfig
from esper.leyline.stages import SeedStage
from esper.runtime.synthetic import SyntheticConfig
from esper.runtime.tasks import TaskOptions, build_task
from esper.tamiyo.policy.actions import BLENDS, CURVES, OPS, TEMPOS, ActionSpace
from esper.tamiyo.policy.bridge import BridgeConfig, PolicyBridge, inert_blueprints
from esper.tamiyo.policy.controller import PolicyController
from esper.tamiyo.policy.features import STAGES, FeatureConfig, slot_features
from esper.tamiyo.policy.masks import stack_masks
from esper.tamiyo.policy.network import PolicyNetwork
from esper.tolaria.trainer import Trainer

S = SeedStage
CNN = ActionSpace(("block0", "block1", "block2"), tuple(blueprint_names("cnn")))


def obs(*slots: SlotView, epoch: int = 3) -> Observation:
    return Observation(epoch, 10, "cnn", [10.0, 12.0], [2.0, 1.9], tuple(slots), host_params=6000)


def test_zero_parameter_blueprints_are_inert_and_masked():
    assert inert_blueprints("cnn", CNN.blueprints) == {"noop"}
    assert inert_blueprints("transformer", tuple(blueprint_names("transformer"))) == {"noop"}
    bridge = PolicyBridge(CNN, "cnn")
    masks = bridge.masks(obs(SlotView("block0", S.DORMANT), SlotView("block1", S.DORMANT),
                             SlotView("block2", S.DORMANT)))
    assert masks["blueprint"].tolist() == [b != "noop" for b in CNN.blueprints]
    net = PolicyNetwork(bridge.obs_dim, CNN)
    logits = {h: torch.zeros(500, n) for h, n in CNN.head_sizes.items()}
    logits["blueprint"][:, CNN.blueprints.index("noop")] = 5.0  # a policy that prefers noop ...
    picks = net.distribution(logits, stack_masks([masks] * 500)).sample(torch.Generator().manual_seed(0))
    assert CNN.blueprints.index("noop") not in picks["blueprint"].tolist()  # ... never gets it
    unmasked = PolicyBridge(CNN, "cnn", cfg=BridgeConfig(mask_inert_blueprints=False))
    assert unmasked.masks(obs(SlotView("block0", S.DORMANT)))["blueprint"].all()


def test_no_blueprint_left_makes_germinate_illegal():
    space = ActionSpace(("a",), ("noop",))
    masks = PolicyBridge(space, "cnn").masks(Observation(1, 5, "cnn", slots=(SlotView("a", S.DORMANT),)))
    assert not masks["op"][OPS.index(Op.GERMINATE)] and masks["op"][OPS.index(Op.WAIT)]


def test_slots_the_model_lacks_take_no_op():
    masks = PolicyBridge(CNN, "cnn").masks(obs(SlotView("block2", S.DORMANT)))
    assert masks["slot"][OPS.index(Op.GERMINATE)].tolist() == [False, False, True]


def act(op: Op, slot: int = 2, **heads) -> dict[str, int]:
    return {h: 0 for h in CNN.heads} | {"op": OPS.index(op), "slot": slot} | heads


def test_germinate_carries_its_settings_and_starts_the_incubation():
    bridge = PolicyBridge(CNN, "cnn")
    a = act(Op.GERMINATE, blueprint=CNN.blueprints.index("conv_light"), blend=BLENDS.index("gate"),
            tempo=TEMPOS.index("slow"), curve=CURVES.index("sigmoid"))
    first, second = bridge.decisions(a, obs(SlotView("block2", S.DORMANT)))
    assert (first.op, first.slot_id, first.blueprint, first.blend, first.tempo, first.curve) == (
        Op.GERMINATE, "block2", "conv_light", "gate", "slow", "sigmoid")
    assert (second.op, second.slot_id) == (Op.ADVANCE, "block2")
    alone = PolicyBridge(CNN, "cnn", cfg=BridgeConfig(germinate_starts_training=False))
    assert len(alone.decisions(a, obs(SlotView("block2", S.DORMANT)))) == 1


def test_a_seed_stuck_in_training_expires():
    bridge = PolicyBridge(CNN, "cnn", cfg=BridgeConfig(auto_advance=False))
    stuck = SlotView("block1", S.TRAINING, "seed1", "conv_light", epochs_in_stage=8)
    young = SlotView("block0", S.TRAINING, "seed2", "conv_light", epochs_in_stage=7)
    out = bridge.decisions(act(Op.WAIT), obs(young, stuck))
    assert [(d.op, d.slot_id, d.seed_id) for d in out] == [(Op.WAIT, None, None), (Op.PRUNE, "block1", "seed1")]
    assert out[1].reason == "expired: 8 epochs in TRAINING"
    # the policy's own decision about that slot goes alone (it may prune or advance it itself)
    own = bridge.decisions(act(Op.ADVANCE, slot=1), obs(young, stuck))
    assert [(d.op, d.slot_id) for d in own] == [(Op.ADVANCE, "block1")]
    never = PolicyBridge(CNN, "cnn", cfg=BridgeConfig(expire_training_epochs=0, auto_advance=False))
    assert len(never.decisions(act(Op.WAIT), obs(stuck))) == 1


def test_seeds_on_their_way_are_advanced_and_the_advance_op_is_masked():
    bridge = PolicyBridge(CNN, "cnn")
    view = obs(SlotView("block0", S.TRAINING, "seed1", "conv_light", epochs_in_stage=2),
               SlotView("block1", S.BLENDING, "seed2", "attention"), SlotView("block2", S.HOLDING, "seed3", "norm"))
    out = bridge.decisions(act(Op.FOSSILIZE, slot=2), view)
    assert [(d.op, d.slot_id) for d in out] == [(Op.FOSSILIZE, "block2"), (Op.ADVANCE, "block0"),
                                                (Op.ADVANCE, "block1")]
    assert not bridge.masks(view)["op"][OPS.index(Op.ADVANCE)]
    manual = PolicyBridge(CNN, "cnn", cfg=BridgeConfig(auto_advance=False))
    assert manual.masks(view)["op"][OPS.index(Op.ADVANCE)]
    assert len(manual.decisions(act(Op.FOSSILIZE, slot=2), view)) == 1


def test_a_policy_set_on_blocked_seeds_cannot_block_growth():
    """Issue 14: a greedy policy filled every slot with noop seeds that G2 refused forever. Here a
    policy that prefers noop and keeps advancing germinates real seeds; when G2 can never pass
    (an unreachable gradient-ratio bar), its seeds expire and the slots are used again."""
    torch.manual_seed(0)
    task = build_task("synthetic-images", TaskOptions(synthetic=SyntheticConfig(train_size=128, val_size=64)))
    bridge = PolicyBridge(CNN, "cnn")
    net = PolicyNetwork(bridge.obs_dim, CNN)
    with torch.no_grad():
        for head, pref in (("op", {Op.GERMINATE: 6.0, Op.ADVANCE: 4.0}), ("blueprint", {"noop": 9.0})):
            bias = net.heads[head][-1].bias
            bias.zero_()
            for k, v in pref.items():
                bias[(OPS if head == "op" else CNN.blueprints).index(k)] = v
    gates = dataclasses.replace(GateConfig(), gradient_ratio_threshold={"cnn": 1e9, "transformer": 1e9})
    model = MorphogeneticModel(task.host)
    trainer = Trainer(model, task.train_loader, task.val_loader, num_classes=10,
                      cfg=TrainConfig(epochs=20, gates=gates), controller=PolicyController(net, bridge))
    summary = trainer.fit()
    assert "noop" not in trainer.lifecycle.log.pruned_blueprints
    assert summary.germinated > 3 and summary.pruned >= 3  # three slots filled, expired, cooled down, refilled


def test_slot_features_carry_alpha_target_freshness_gradient_health_and_size():
    cfg = FeatureConfig()
    view = SlotView("b", S.BLENDING, "seed1", "conv_light", 2, 3, 1.5, 2.0, 0.3, 0.4, (), alpha_target=0.7,
                    contribution_age=2, gradient_health=0.75, params=600)
    f = slot_features(view, cfg, CNN.blueprints, host_params=6000)
    n = len(STAGES)
    assert len(f) == cfg.slot_dim(len(CNN.blueprints))
    assert f[n:n + 3] == [0.4, 0.7, 1.0]  # alpha, its target, ramping
    assert f[n + 5] == pytest.approx(2 / cfg.freshness_cap)  # measured two epochs ago
    assert f[n + 8:n + 10] == [1.0, 0.75]  # gradient health measured, its value
    assert f[n + 13] == pytest.approx(torch.log1p(torch.tensor(0.1)).item())
    assert f[n + 14:] == [float(b == "conv_light") for b in CNN.blueprints]
    never = slot_features(SlotView("b", S.TRAINING), cfg, CNN.blueprints, 6000)
    assert never[n + 5] == 1.0 and never[n + 8:n + 10] == [0.0, 0.0]  # never measured: stale, unknown


def test_trainer_fills_the_new_slot_view_fields():
    torch.manual_seed(0)
    task = build_task("synthetic-images", TaskOptions(synthetic=SyntheticConfig(train_size=128, val_size=64)))
    model = MorphogeneticModel(task.host)
    trainer = Trainer(model, task.train_loader, task.val_loader, num_classes=10, cfg=TrainConfig(epochs=3))
    slot = model.slots["block2"]
    slot.germinate("seed1", "conv_light", 1, 0.0)
    slot.enter(S.TRAINING, "", 0.0, 1.0)
    trainer.run_epoch(1)
    slot.enter(S.BLENDING, "", 0.0, 1.0)
    trainer.run_epoch(2)
    view = next(v for v in trainer.observe(2, 3).slots if v.slot_id == "block2")
    assert view.contribution is not None and view.contribution_age == 0
    assert view.alpha_target == 1.0 and 0 < view.alpha < 1.0
    assert view.gradient_health is not None and 0.0 <= view.gradient_health <= 1.0
    assert view.params == slot.record.params > 0
    assert trainer.observe(4, 5).slots[2].contribution_age == 2
    assert trainer.observe(2, 3).host_params == model.host_param_count()


def test_only_a_seed_whose_blend_is_complete_may_be_pruned():
    bridge = PolicyBridge(CNN, "cnn")
    view = obs(SlotView("block0", S.HOLDING, "seed1", "conv_light"), SlotView("block1", S.BLENDING, "seed2", "norm"),
               SlotView("block2", S.TRAINING, "seed3", "norm"))
    assert bridge.masks(view)["slot"][OPS.index(Op.PRUNE)].tolist() == [True, False, False]
    blending = bridge.masks(obs(SlotView("block1", S.BLENDING, "seed2", "norm")))
    assert not blending["op"][OPS.index(Op.PRUNE)]
    # a checkpoint written before the setting existed keeps the rule it learned under
    old = PolicyBridge.from_config(CNN, {"topology": "cnn", "bridge": {"prune_judged_only": True}})
    assert not old.cfg.prune_after_blend and old.masks(view)["slot"][OPS.index(Op.PRUNE)].tolist() == [True, True, False]


def test_only_a_seed_that_has_blended_may_be_pruned_under_the_earlier_rule():
    bridge = PolicyBridge(CNN, "cnn", cfg=BridgeConfig(prune_after_blend=False))
    view = obs(SlotView("block0", S.TRAINING, "seed1", "conv_light"), SlotView("block1", S.BLENDING, "seed2", "norm"),
               SlotView("block2", S.GERMINATED, "seed3", "norm"))
    masks = bridge.masks(view)
    assert masks["slot"][OPS.index(Op.PRUNE)].tolist() == [False, True, False]
    young = bridge.masks(obs(SlotView("block0", S.TRAINING, "seed1", "conv_light")))
    assert not young["op"][OPS.index(Op.PRUNE)]
    anytime = PolicyBridge(CNN, "cnn", cfg=BridgeConfig(prune_judged_only=False))
    assert anytime.masks(view)["slot"][OPS.index(Op.PRUNE)].tolist() == [True, True, True]


def test_a_new_policy_tries_cheap_blueprints_first():
    bridge = PolicyBridge(CNN, "cnn")
    costs = dict(zip(CNN.blueprints, bridge.blueprint_log_costs().tolist()))
    assert costs["norm"] == 0.0 and costs["noop"] == 0.0  # the cheapest; noop is masked anyway
    assert costs["attention"] < costs["conv_light"] < costs["conv_heavy"]
    net = PolicyNetwork(bridge.obs_dim, CNN)
    net.set_blueprint_prior(bridge.blueprint_log_costs())
    masks = bridge.masks(obs(SlotView("block2", S.DORMANT)))
    logits, _, _ = net(torch.zeros(1, 1, bridge.obs_dim), net.initial_state(1), torch.ones(1, 1, dtype=torch.bool))
    probs = torch.softmax(torch.where(masks["blueprint"], logits["blueprint"][0, 0], torch.tensor(-1e4)), -1)
    p = dict(zip(CNN.blueprints, probs.tolist()))
    assert p["norm"] > p["attention"] > p["depthwise"] > p["conv_light"] > p["conv_heavy"] > 0.005
    assert p["noop"] == 0.0
