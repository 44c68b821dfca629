"""Reward components: shaping telescopes, every component stays in its bound, named terms."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esper.leyline.actions import Op
from esper.leyline.stages import SeedStage
from esper.simic.rewards import (
    COMPONENTS,
    RewardConfig,
    StepFacts,
    compute_reward,
    potential,
    rent,
    reward_bounds,
    shaping,
    windowed_change,
)

S = SeedStage
CFG = RewardConfig(mode="shaped")
PAIRED = RewardConfig()


def test_stage_potentials_of_the_spec():
    assert [potential([s], CFG) for s in (S.DORMANT, S.GERMINATED, S.TRAINING, S.BLENDING, S.HOLDING,
                                          S.FOSSILIZED, S.PRUNED)] == [0, 1, 2, 3.5, 5.5, 6, 0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from(list(SeedStage)), min_size=2, max_size=2), min_size=2, max_size=30))
def test_shaping_telescopes_to_discounted_potential_difference(seq):
    g = CFG.gamma
    total = sum(g ** t * shaping(seq[t], seq[t + 1], CFG) for t in range(len(seq) - 1))
    T = len(seq) - 1
    expected = 0.3 * (g ** T * potential(seq[-1], CFG) - potential(seq[0], CFG))
    assert total == pytest.approx(expected, abs=1e-9)


def test_rent_formula_and_cap():
    assert rent(1000, 0, CFG) == 0.0
    assert rent(1000, 1000, CFG) == pytest.approx(-0.1 * 0.5 * math.log(2))
    assert rent(100, 10 ** 9, CFG) == pytest.approx(-0.1 * 1.5)


def facts(**kw):
    base = {"op": Op.WAIT, "took_effect": False, "contribution": None, "improvement": None,
                "stages_before": (S.DORMANT, S.DORMANT), "stages_after": (S.DORMANT, S.DORMANT),
                "host_params": 1000, "added_params": 0}
    return StepFacts(**{**base, **kw})


def test_fossilizing_contributor_is_paid_and_noncontributor_penalised():
    good = compute_reward(facts(op=Op.FOSSILIZE, took_effect=True, contribution=3.0, improvement=2.0), CFG)
    assert good["attribution"] == pytest.approx(1.5) and good["fossilize_penalty"] == 0.0
    bad = compute_reward(facts(op=Op.FOSSILIZE, took_effect=True, contribution=0.1, improvement=2.0), CFG)
    assert bad["fossilize_penalty"] == -1.0
    refused = compute_reward(facts(op=Op.FOSSILIZE, took_effect=False, contribution=3.0), CFG)
    assert refused["attribution"] == 0.0 and refused["action"] == -0.01


def test_ransomware_gets_no_attribution_and_a_penalty():
    r = compute_reward(facts(op=Op.FOSSILIZE, took_effect=True, contribution=4.0, improvement=-1.0), CFG)
    assert r["attribution"] == 0.0 and r["ransomware"] == -2.0
    pruned = compute_reward(facts(op=Op.PRUNE, took_effect=True, contribution=-2.0, improvement=-3.0), CFG)
    assert pruned["attribution"] == pytest.approx(1.0)  # pruning a harmful seed pays


def test_death_and_terminal():
    d = compute_reward(facts(died=True, stages_before=(S.TRAINING, S.DORMANT)), CFG)
    assert d["death"] == -10.0 and d["terminal"] == 0.0
    assert d["shaping"] == pytest.approx(-0.3 * 2.0)  # terminal state has potential 0
    t = compute_reward(facts(episode_end=True, acc_gain=12.0), CFG)
    assert t["terminal"] == pytest.approx(0.6)
    assert compute_reward(facts(episode_end=True, acc_gain=1e4), CFG)["terminal"] == 5.0
    sparse = compute_reward(facts(op=Op.GERMINATE, took_effect=True, episode_end=True, acc_gain=5.0,
                                  stages_after=(S.GERMINATED, S.DORMANT)), RewardConfig(mode="sparse"))
    assert sparse["terminal"] == pytest.approx(0.25) and sparse["shaping"] == 0.0 and sparse["action"] == 0.0


finite = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(Op)), st.booleans(), st.one_of(st.none(), finite), st.one_of(st.none(), finite),
       st.lists(st.sampled_from(list(SeedStage)), min_size=3, max_size=3),
       st.lists(st.sampled_from(list(SeedStage)), min_size=3, max_size=3),
       st.integers(1, 10 ** 7), st.integers(0, 10 ** 9), st.booleans(), st.booleans(), finite)
def test_every_component_is_bounded(op, eff, c, imp, before, after, host, added, died, end, gain):
    for cfg in (CFG, PAIRED, RewardConfig(mode="sparse")):
        f = StepFacts(op, eff, c, imp, tuple(before), tuple(after), host, added, died, end, gain,
                      gaps=(0.0, gain, -gain), extra_compute=abs(gain), episode_length=1)
        r = compute_reward(f, cfg)
        assert tuple(r) == COMPONENTS
        bounds = reward_bounds(cfg, 3, max_ratio=10 ** 9)
        for name, value in r.items():
            lo, hi = bounds[name]
            assert lo - 1e-9 <= value <= hi + 1e-9, (cfg.mode, name, value)


def test_paired_reward_nets_out_the_host_s_own_learning():
    one = RewardConfig(paired_window=1)
    # the host learned 3 pp this step, the shadow 2.5 pp: the decisions are credited with 0.5 pp
    r = compute_reward(facts(gaps=(0.0, 1.0, 1.5), episode_length=10), one)
    assert r["paired_gain"] == pytest.approx(0.1 * 0.5)
    assert r["terminal"] == r["shaping"] == r["attribution"] == r["action"] == 0.0
    # an episode's paired gains telescope to its final gap (window 1) or the mean of its last
    # three gaps (the default window)
    accs, shadow = [50.0, 53.0, 55.5, 57.0, 58.0], [50.0, 52.5, 55.0, 57.5, 57.0]
    gaps = [a - b for a, b in zip(accs, shadow)]
    for cfg, expected in ((one, gaps[-1]), (PAIRED, sum(gaps[-3:]) / 3)):
        total = sum(compute_reward(facts(gaps=tuple(gaps[:t + 1])), cfg)["paired_gain"] for t in range(1, 5))
        assert total == pytest.approx(0.1 * expected)


def test_windowed_change_against_a_slow_reference():
    gaps = [0.0, 1.0, -2.0, 4.0, 0.5]
    for w in (1, 2, 3, 4):
        for t in range(1, len(gaps)):
            now = gaps[max(0, t - w + 1):t + 1]
            before = gaps[max(0, t - w):t]
            assert windowed_change(gaps[:t + 1], w) == pytest.approx(sum(now) / len(now) - sum(before) / len(before))
    assert windowed_change([0.0], 3) == 0.0


def test_paired_rents_are_per_episode_spread_over_steps():
    r = compute_reward(facts(host_params=1000, added_params=1000, extra_compute=2.0, episode_length=8), PAIRED)
    assert r["rent"] == pytest.approx(-0.05 * math.log(2) / 8)
    assert r["compute_rent"] == pytest.approx(-0.05 * 2.0 / 8)
    died = compute_reward(facts(died=True, gaps=(0.0, 5.0), added_params=1000), PAIRED)
    assert died["death"] == -10.0 and died["paired_gain"] == 0.0 and died["rent"] == 0.0
