"""The learned policy: masks, op-first sampling, relevant heads only, checkpoints, features."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from esper.leyline.actions import Observation, Op, SlotView
from esper.leyline.stages import TRANSITIONS, SeedStage
from esper.tamiyo.policy.actions import ALPHA_SPEEDS, ALPHA_TARGETS, BLENDS, CURVES, OPS, TEMPOS, ActionSpace
from esper.tamiyo.policy.features import FeatureConfig, encode_observation
from esper.tamiyo.policy.masks import build_masks, stack_masks
from esper.tamiyo.policy.network import NetworkConfig, PolicyNetwork
from esper.tamiyo.policy.normalizer import RunningNorm

S = SeedStage
SPACE = ActionSpace(("a", "b", "c"), ("noop", "conv_light", "attention"))


def legal(op: Op, stage: SeedStage) -> bool:
    """Independent legality from the transition table."""
    if op is Op.GERMINATE:
        return S.GERMINATED in TRANSITIONS[stage]
    if op is Op.PRUNE:
        return S.PRUNED in TRANSITIONS[stage]
    if op is Op.FOSSILIZE:
        return S.FOSSILIZED in TRANSITIONS[stage]
    if op is Op.SET_ALPHA_TARGET:
        return stage is S.HOLDING
    if op is Op.ADVANCE:
        nxt = {S.GERMINATED: S.TRAINING, S.TRAINING: S.BLENDING, S.BLENDING: S.HOLDING}
        return stage in nxt and nxt[stage] in TRANSITIONS[stage]
    return True


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list(SeedStage)), min_size=3, max_size=3), st.integers(0, 2 ** 31 - 1))
def test_masks_make_illegal_actions_impossible(stages, seed):
    g = torch.Generator().manual_seed(seed)
    masks = stack_masks([build_masks(SPACE, stages)] * 64)
    logits = {h: torch.randn(64, n, generator=g) * 5 for h, n in SPACE.head_sizes.items()}
    net = PolicyNetwork(4, SPACE)
    dist = net.distribution(logits, masks)
    acts = dist.sample(g)
    for b in range(64):
        op = OPS[acts["op"][b]]
        if op is not Op.WAIT:
            assert legal(op, stages[acts["slot"][b]]), (op, stages)
    assert torch.isfinite(dist.log_prob(acts)).all()


def test_only_relevant_heads_count():
    net = PolicyNetwork(4, SPACE)
    masks = stack_masks([build_masks(SPACE, [S.DORMANT, S.HOLDING, S.TRAINING])] * 2)
    logits = {h: torch.randn(2, n) for h, n in SPACE.head_sizes.items()}
    acts = {h: torch.zeros(2, dtype=torch.long) for h in SPACE.heads}
    acts["op"] = torch.tensor([OPS.index(Op.WAIT), OPS.index(Op.PRUNE)])
    acts["slot"] = torch.tensor([0, 1])
    d1 = net.distribution(logits, masks)
    other = dict(logits, blueprint=torch.randn(2, 3) * 9, blend=torch.randn(2, 3) * 9, slot=logits["slot"])
    d2 = net.distribution(other, masks)
    assert torch.equal(d1.log_prob(acts), d2.log_prob(acts))  # blueprint/blend irrelevant to WAIT, PRUNE
    assert torch.equal(d1.head_entropy(acts["op"]), d2.head_entropy(acts["op"]))
    ent = d1.head_entropy(acts["op"])
    heads = list(SPACE.heads)
    assert ent[0].nonzero().flatten().tolist() == [heads.index("op")]
    assert sorted(ent[1].nonzero().flatten().tolist()) == [heads.index("op"), heads.index("slot")]
    # WAIT's log-prob is the op head's alone
    op_lp = torch.log_softmax(torch.where(masks["op"][0], logits["op"][0], torch.tensor(-1e4)), -1)[acts["op"][0]]
    assert abs(d1.log_prob(acts)[0].item() - op_lp.item()) < 1e-6


RELEVANT = {  # written out independently of HEADS_FOR_OP
    Op.WAIT: {"op"},
    Op.GERMINATE: {"op", "slot", "blueprint", "blend", "tempo", "curve"},
    Op.SET_ALPHA_TARGET: {"op", "slot", "alpha_target", "alpha_speed"},
    Op.PRUNE: {"op", "slot"},
    Op.FOSSILIZE: {"op", "slot"},
    Op.ADVANCE: {"op", "slot"},
}


def test_head_relevance_per_op():
    net = PolicyNetwork(4, SPACE)
    assert SPACE.head_sizes["alpha_speed"] == len(ALPHA_SPEEDS)
    for op in OPS:
        rel = net.relevance[OPS.index(op)].tolist()
        assert {h for h, r in zip(SPACE.heads, rel) if r} == RELEVANT[op], op


def test_alpha_speed_counts_only_for_set_alpha_target():
    net = PolicyNetwork(4, SPACE)
    masks = stack_masks([build_masks(SPACE, [S.HOLDING, S.HOLDING, S.DORMANT])] * len(OPS))
    assert masks["alpha_speed"].shape == (len(OPS), len(ALPHA_SPEEDS)) and masks["alpha_speed"].all()
    logits = {h: torch.randn(len(OPS), n) for h, n in SPACE.head_sizes.items()}
    acts = {h: torch.zeros(len(OPS), dtype=torch.long) for h in SPACE.heads}
    acts["op"] = torch.arange(len(OPS))
    acts["slot"] = torch.tensor([2 if op is Op.GERMINATE else 0 for op in OPS])  # a legal slot each
    acts["alpha_speed"] = torch.full((len(OPS),), 2)
    d1 = net.distribution(logits, masks)
    d2 = net.distribution(dict(logits, alpha_speed=torch.randn(len(OPS), len(ALPHA_SPEEDS)) * 9), masks)
    changed_lp = (d1.log_prob(acts) != d2.log_prob(acts)).tolist()
    changed_ent = (d1.head_entropy(acts["op"]) != d2.head_entropy(acts["op"])).any(1).tolist()
    expected = [op is Op.SET_ALPHA_TARGET for op in OPS]
    assert changed_lp == expected and changed_ent == expected


def test_decode_alpha_speed():
    act = {h: 0 for h in SPACE.heads} | {"op": OPS.index(Op.SET_ALPHA_TARGET), "slot": 1,
                                          "alpha_target": 1, "alpha_speed": 2}
    d = SPACE.decode(act)
    assert (d.op, d.slot_id, d.alpha_target, d.alpha_steps) == (Op.SET_ALPHA_TARGET, "b", ALPHA_TARGETS[1],
                                                                ALPHA_SPEEDS[2])
    assert d.reason == f"alpha_target={ALPHA_TARGETS[1]:g} alpha_speed_epochs={ALPHA_SPEEDS[2]}"
    for op in (Op.WAIT, Op.GERMINATE, Op.PRUNE, Op.ADVANCE):
        d = SPACE.decode(dict(act, op=OPS.index(op)), reason="policy")
        assert d.alpha_steps is None and d.alpha_target is None and d.reason == "policy"


def test_germinate_counts_its_settings_heads():
    net = PolicyNetwork(4, SPACE)
    rel = net.relevance[OPS.index(Op.GERMINATE)].tolist()
    assert [h for h, r in zip(SPACE.heads, rel) if r] == ["op", "slot", "blueprint", "blend", "tempo", "curve"]


def test_checkpoint_round_trip_weights_only(tmp_path):
    torch.manual_seed(0)
    net = PolicyNetwork(7, SPACE)
    net.norm.update(torch.randn(20, 7) * 3 + 1)
    net.save(tmp_path / "p.pt", {"task": "synthetic-images", "rounds": 3})
    loaded, extra = PolicyNetwork.load(tmp_path / "p.pt")
    assert extra == {"task": "synthetic-images", "rounds": 3}
    x = torch.randn(2, 3, 7)
    starts = torch.zeros(2, 3, dtype=torch.bool)
    a, va, _ = net(x, net.initial_state(3), starts)
    b, vb, _ = loaded(x, loaded.initial_state(3), starts)
    assert torch.equal(va, vb) and all(torch.equal(a[h], b[h]) for h in a)
    assert torch.equal(loaded.norm.mean, net.norm.mean)


def test_checkpoint_without_alpha_speed_loads_with_the_old_one_epoch_ramp(tmp_path, caplog):
    torch.manual_seed(0)
    net = PolicyNetwork(7, SPACE)
    net.save(tmp_path / "new.pt")
    old = torch.load(tmp_path / "new.pt", weights_only=True)
    old["state_dict"] = {k: v for k, v in old["state_dict"].items() if not k.startswith("heads.alpha_speed.")}
    torch.save(old, tmp_path / "old.pt")
    with caplog.at_level("WARNING"):
        loaded, _ = PolicyNetwork.load(tmp_path / "old.pt")
    assert "alpha_speed" in caplog.text
    x = torch.randn(1, 5, 7)
    starts = torch.zeros(1, 5, dtype=torch.bool)
    a, va, _ = net(x, net.initial_state(5), starts)
    b, vb, _ = loaded(x, loaded.initial_state(5), starts)
    assert torch.equal(va, vb) and all(torch.equal(a[h], b[h]) for h in a if h != "alpha_speed")
    masks = stack_masks([build_masks(SPACE, [S.HOLDING] * 3)] * 5)
    dist = loaded.distribution({h: v[0] for h, v in b.items()}, masks)
    speeds = dist.sample(torch.Generator().manual_seed(0))["alpha_speed"]
    assert [ALPHA_SPEEDS[i] for i in speeds.tolist()] == [1] * 5  # what SET_ALPHA_TARGET did before
    assert torch.equal(dist.sample(greedy=True)["alpha_speed"], speeds)


def test_checkpoint_missing_other_weights_is_refused_in_one_line(tmp_path):
    net = PolicyNetwork(7, SPACE)
    net.save(tmp_path / "p.pt")
    ckpt = torch.load(tmp_path / "p.pt", weights_only=True)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("heads.blend.")}
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a checkpoint of this PolicyNetwork") as info:
        PolicyNetwork.load(tmp_path / "bad.pt")
    assert "\n" not in str(info.value) and "heads.blend" in str(info.value)
    ckpt = torch.load(tmp_path / "p.pt", weights_only=True)
    ckpt["obs_dim"] = 8  # the encoder's input width no longer matches its weights
    torch.save(ckpt, tmp_path / "wide.pt")
    with pytest.raises(ValueError, match="size mismatch") as info:
        PolicyNetwork.load(tmp_path / "wide.pt")
    assert "\n" not in str(info.value)


def test_running_norm_matches_batch_statistics():
    x = torch.randn(50, 3, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1]) + 2
    n = RunningNorm(3)
    for chunk in x.split(7):
        n.update(chunk)
    torch.testing.assert_close(n.mean, x.mean(0))
    torch.testing.assert_close(n.var, x.var(0, unbiased=False))
    assert n.count.item() == 50


def test_episode_start_resets_lstm_state():
    torch.manual_seed(1)
    net = PolicyNetwork(5, SPACE)
    x = torch.randn(1, 1, 5)
    warm = (torch.randn(1, 1, 64), torch.randn(1, 1, 64))
    _, v_reset, _ = net(x, warm, torch.ones(1, 1, dtype=torch.bool))
    _, v_fresh, _ = net(x, net.initial_state(1), torch.zeros(1, 1, dtype=torch.bool))
    _, v_warm, _ = net(x, warm, torch.zeros(1, 1, dtype=torch.bool))
    assert torch.equal(v_reset, v_fresh) and not torch.equal(v_warm, v_fresh)


def test_features_shape_and_content():
    cfg = FeatureConfig()
    obs = Observation(epoch=4, total_epochs=8, topology="cnn", val_acc=[10.0, 20.0, 25.0],
                      train_loss=[2.0, 1.5, 1.2],
                      slots=(SlotView("b", S.BLENDING, "seed1", "noop", 2, 3, 1.5, 2.0, 0.3, 0.4),))
    f = encode_observation(obs, OPS.index(Op.ADVANCE), SPACE.slot_ids, cfg)
    assert f.shape == (cfg.dim(3),)
    assert f[0].item() == 0.5 and abs(f[2].item() - 0.25) < 1e-6
    slot_b = f[cfg.run_dim() + cfg.slot_dim():cfg.run_dim() + 2 * cfg.slot_dim()]
    stage_idx = list(SeedStage).index(S.BLENDING)
    assert slot_b[stage_idx].item() == 1.0 and abs(slot_b[len(SeedStage)].item() - 0.4) < 1e-6
    slot_a = f[cfg.run_dim():cfg.run_dim() + cfg.slot_dim()]
    assert slot_a[list(SeedStage).index(S.DORMANT)].item() == 1.0


def test_a_new_policy_mostly_waits():
    torch.manual_seed(0)
    net = PolicyNetwork(4, SPACE)
    masks = stack_masks([build_masks(SPACE, [S.DORMANT, S.TRAINING, S.HOLDING])])
    res = net.act(torch.zeros(1, 4), masks, net.initial_state(1), torch.ones(1, dtype=torch.bool))
    e = float(torch.tensor(2.0).exp())
    assert res.op_probs[0, OPS.index(Op.WAIT)].item() == pytest.approx(e / (e + 5), abs=0.01)  # 6 legal ops
    flat = PolicyNetwork(4, SPACE, NetworkConfig(wait_bias=0.0))
    res = flat.act(torch.zeros(1, 4), masks, flat.initial_state(1), torch.ones(1, dtype=torch.bool))
    assert res.op_probs[0].tolist() == pytest.approx([1 / 6] * 6, abs=0.01)
    # and it germinates with the slot's default settings (add, fast, linear) about 0.7 of the time each
    logits, _, _ = net(torch.zeros(1, 1, 4), net.initial_state(1), torch.ones(1, 1, dtype=torch.bool))
    e3 = float(torch.tensor(3.0).exp())
    for head, choice, n in (("blend", BLENDS.index("add"), 3), ("tempo", TEMPOS.index("fast"), 3),
                            ("curve", CURVES.index("linear"), 4)):
        assert torch.softmax(logits[head][0, 0], -1)[choice].item() == pytest.approx(e3 / (e3 + n - 1), abs=0.01)


def test_the_critic_s_own_features_reach_the_value_and_never_the_actor():
    torch.manual_seed(0)
    net = PolicyNetwork(8, SPACE, NetworkConfig(critic_inputs=2))
    with torch.no_grad():  # a normaliser that has seen data, so the critic features are not scaled away
        net.norm.update(torch.randn(256, 8) * 3)
    obs = torch.randn(5, 3, 8)
    other = obs.clone()
    other[..., 6:] = torch.randn(5, 3, 2) * 10  # only the critic's features differ
    starts = torch.zeros(5, 3, dtype=torch.bool)
    logits, values, state = net(obs, net.initial_state(3), starts)
    logits2, values2, state2 = net(other, net.initial_state(3), starts)
    assert net.actor_dim == 6 and net.encoder[0].in_features == 6
    assert all(torch.equal(logits[h], logits2[h]) for h in logits) and torch.equal(state[0], state2[0])
    assert (values - values2).abs().min() > 0
    with pytest.raises(ValueError, match="critic_inputs"):
        PolicyNetwork(2, SPACE, NetworkConfig(critic_inputs=2))
