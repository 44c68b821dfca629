"""The heuristic teacher (esper ppo --teacher heuristic): labels that are the heuristic's own
choices and legal, an imitation term that teaches the policy what no reward does, and a weight
that decays."""

import dataclasses

import pytest
import torch

from esper.leyline.actions import Decision, Op
from esper.simic.collect import Learner, collect, new_policy
from esper.simic.env import EnvConfig
from esper.simic.ppo import PPO, PPOConfig
from esper.simic.teacher import HeuristicTeacher, legal
from esper.simic.vec_env import VecMorphEnv
from esper.tamiyo.heuristic import HeuristicController
from esper.tamiyo.policy.actions import OPS, ActionSpace
from esper.tamiyo.policy.masks import build_masks
from esper.tamiyo.policy.network import NetworkConfig, PolicyNetwork
from tests.simic.toy_env import SPACE, STAGES, ContextEnv

TINY = EnvConfig(episode_length=4, synthetic_train=256, synthetic_val=128)


@pytest.mark.parametrize("d", [
    Decision(Op.WAIT),
    Decision(Op.GERMINATE, "s1", "bad", blend="gate", tempo="slow", curve="tanh"),
    Decision(Op.SET_ALPHA_TARGET, "s2", alpha_target=0.7, alpha_steps=5),
    Decision(Op.PRUNE, "s2"),
    Decision(Op.FOSSILIZE, "s0"),
])
def test_encode_is_the_inverse_of_decode(d):
    back = SPACE.decode(SPACE.encode(d), d.reason)
    assert (back.op, back.slot_id, back.blueprint, back.blend, back.tempo, back.curve, back.alpha_target) == \
        (d.op, d.slot_id, d.blueprint, d.blend, d.tempo, d.curve, d.alpha_target)


def test_encode_fills_slot_defaults_and_refuses_what_the_space_lacks():
    a = SPACE.encode(Decision(Op.GERMINATE, "s0", "good"), blend="multiply", tempo="standard", curve="cosine")
    d = SPACE.decode(a)
    assert (d.blend, d.tempo, d.curve) == ("multiply", "standard", "cosine")
    with pytest.raises(ValueError, match="outside the action space"):
        SPACE.encode(Decision(Op.GERMINATE, "s9", "good"))
    with pytest.raises(ValueError, match="outside the action space"):
        SPACE.encode(Decision(Op.GERMINATE, "s0", "conv_heavy"))


def test_a_label_is_the_first_legal_decision_the_bridge_does_not_take_itself():
    masks = build_masks(SPACE, STAGES)  # s0, s1 dormant; s2 training
    teacher = HeuristicTeacher(SPACE)
    first = teacher._first_legal([Decision(Op.ADVANCE, "s2"), Decision(Op.GERMINATE, "s2", "good"),
                                  Decision(Op.GERMINATE, "s1", "good")], masks)
    # ADVANCE is the bridge's; s2 holds a seed, so a GERMINATE there is illegal; s1 is free
    assert SPACE.decode(first).slot_id == "s1" and OPS[first["op"]] is Op.GERMINATE
    assert teacher._first_legal([Decision(Op.FOSSILIZE, "s2"), Decision(Op.GERMINATE, "s7", "good")],
                                masks) == teacher.wait  # s2 is not HOLDING; s7 is not a slot
    assert legal(first, masks) and not legal(SPACE.encode(Decision(Op.GERMINATE, "s2", "good")), masks)


def test_environment_labels_are_the_heuristic_s_choice_once_per_epoch():
    env = VecMorphEnv(2, TINY, teacher="heuristic")
    obs = env.envs[0].obs
    mine = HeuristicController().decide(obs)  # a fresh heuristic on the same state
    want = next(d for d in mine if d.op not in (Op.WAIT, Op.ADVANCE))
    labels = env.teacher_actions()
    got = env.space.decode({h: int(v[0]) for h, v in labels.items()})
    assert (got.op, got.slot_id, got.blueprint) == (Op.GERMINATE, want.slot_id, want.blueprint)
    assert all(legal({h: int(v[i]) for h, v in labels.items()}, env.bridge.masks(e.obs)) for i, e in enumerate(env.envs))
    # asking again in the same state neither moves the heuristic's rotation nor changes the label
    assert all(torch.equal(labels[h], v) for h, v in env.teacher_actions().items())
    assert VecMorphEnv(1, TINY).teacher_actions() is None
    with pytest.raises(ValueError, match="unknown teacher"):
        VecMorphEnv(1, TINY, teacher="oracle")


def test_a_rollout_carries_the_labels_of_the_states_the_policy_reached():
    env = VecMorphEnv(2, TINY, teacher="heuristic")
    torch.manual_seed(0)
    net = new_policy(env)
    r, *_ = collect(env, net, 6, net.initial_state(2), [0.0] * 2, torch.Generator().manual_seed(0), teacher=True)
    assert set(r.teacher_actions) == set(env.space.heads) and r.teacher_actions["op"].shape == (6, 2)
    ops = {OPS[i] for i in r.teacher_actions["op"].flatten().tolist()}
    assert Op.GERMINATE in ops and Op.ADVANCE not in ops
    for t in range(6):  # every label was legal in the state it labels
        for i in range(2):
            a = {h: int(v[t, i]) for h, v in r.teacher_actions.items()}
            assert legal(a, {h: m[t, i] for h, m in r.masks.items()})


def toy(teacher: str, seed: int = 0):
    torch.manual_seed(seed)
    net = PolicyNetwork(3, SPACE, NetworkConfig(hidden=32, head_hidden=32, wait_bias=0.0))
    cfg = dataclasses.replace(PPOConfig(), teacher=teacher, teacher_fraction=1.0, warmup_updates=0, lr=3e-3)
    env = ContextEnv(8, 16, seed=1, teach=teacher != "none", reward_scale=0.0)  # no reward: the teacher alone
    return net, Learner(env, PPO(net, cfg, total_updates=40), torch.Generator().manual_seed(2))


def greedy_right(net) -> list:
    masks = {k: v[:3] for k, v in ContextEnv(3, 1, 0).masks.items()}
    res = net.act(torch.eye(3), masks, net.initial_state(3), torch.ones(3, dtype=torch.bool), greedy=True)
    return [OPS[i] for i in res.actions["op"].tolist()], int(res.actions["blueprint"][1])


def test_imitation_teaches_what_the_reward_does_not():
    net, learner = toy("heuristic")
    stats = [learner.round(8).stats for _ in range(25)]
    assert stats[0].teacher_weight == 1.0 and stats[-1].teacher_weight == pytest.approx(1 - 24 / 40)
    assert stats[-1].teacher_agreement == 1.0 and stats[-1].imitation_loss < stats[0].imitation_loss / 3
    assert greedy_right(net) == ([Op.WAIT, Op.GERMINATE, Op.PRUNE], 1)
    # the same run without a teacher has nothing to learn from (every reward is 0)
    net0, learner0 = toy("none")
    plain = [learner0.round(8).stats for _ in range(25)]
    assert plain[-1].teacher_weight == 0.0 and plain[-1].imitation_loss != plain[-1].imitation_loss  # NaN
    assert greedy_right(net0) != ([Op.WAIT, Op.GERMINATE, Op.PRUNE], 1)


def test_teacher_weight_decays_linearly_to_zero():
    net = PolicyNetwork(3, SPACE)
    ppo = PPO(net, dataclasses.replace(PPOConfig(), teacher="heuristic", teacher_coef=2.0, teacher_fraction=0.5),
              total_updates=100)
    weights = []
    for u in (0, 25, 50, 80):
        ppo.updates = u
        weights.append(ppo.teacher_weight())
    assert weights == [2.0, 1.0, 0.0, 0.0]
    assert PPO(net, PPOConfig(), total_updates=100).teacher_weight() == 1.0  # the default: taught throughout
    assert PPO(net, dataclasses.replace(PPOConfig(), teacher="none"), total_updates=100).teacher_weight() == 0.0


def test_space_encode_uses_the_space_s_own_names():
    space = ActionSpace(("a", "b"), ("x", "y"))
    assert space.encode(Decision(Op.FOSSILIZE, "b"))["slot"] == 1
