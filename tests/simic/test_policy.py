"""The learned policy: masks, op-first sampling, relevant heads only, checkpoints, features."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from esper.leyline.actions import Observation, Op, SlotView
from esper.leyline.stages import TRANSITIONS, SeedStage
from esper.tamiyo.policy.actions import OPS, ActionSpace
from esper.tamiyo.policy.features import FeatureConfig, encode_observation
from esper.tamiyo.policy.masks import build_masks, stack_masks
from esper.tamiyo.policy.network import PolicyNetwork
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
