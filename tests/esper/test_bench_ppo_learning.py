"""bench/bench_ppo_learning.py: curves and their summary read back from a real (tiny) esper ppo run."""

import math

import pytest


@pytest.fixture(scope="module")
def bench(load_bench):
    return load_bench("bench_ppo_learning")


def test_head_use_counts_the_ops_that_use_each_head(bench):
    use = bench.head_use(["WAIT", "GERMINATE", "SET_ALPHA_TARGET", "ADVANCE"])
    assert use["op"] == 1.0 and use["slot"] == 0.75
    assert use["blueprint"] == use["curve"] == use["alpha_target"] == use["alpha_speed"] == 0.25
    assert bench.head_use([]) == {}


def test_curves_of_a_tiny_run(bench, tmp_path):
    run = bench.learn(["--rounds", "3", "--envs", "2", "--rollout-steps", "4", "--episode-length", "5",
                       "--train-size", "128", "--val-size", "64", "--workers", "1"], tmp_path)
    c = bench.curves(run)
    assert [r["update"] for r in c["rows"]] == [1, 2, 3]
    assert len(c["ops"]) >= 3 * 2 * 4  # a decision per environment step, at least
    s = bench.curve_summary(c)
    assert s["updates"] == 3 and 0.0 <= s["kl_in_band_share"] <= 1.0
    use = s["head_use_last_fifth"]
    assert use["op"] == 1.0
    assert use["blueprint"] == use["blend"] == use["tempo"] == use["curve"]  # GERMINATE uses all four
    assert math.isfinite(s["teacher_agreement_last_fifth"])
