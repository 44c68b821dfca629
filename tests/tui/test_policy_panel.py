"""The policy tab shows PPO updates, per-head entropy, rewards and the action mix of a log."""

from __future__ import annotations

from telemetry_schema import events as ev
from telemetry_schema.rundir import create_run
from telemetry_schema.writer import WriterConfig
from tui.widgets.policy import PolicyPanel, op_distribution, sparkline

from .conftest import wait_loaded
from .test_app import make_app, text_of


def write_ppo_run(tmp_path):
    started = ev.RunStarted(run_id="ppo-demo", task="synthetic-images", topology="cnn", host_params=10, num_envs=2)
    with create_run(tmp_path, started, config=WriterConfig(heartbeat_s=0)) as run:
        w = run.writer
        for r in range(4):
            w.epoch = r + 1
            for env in range(2):
                w.emit(ev.ControllerDecision(controller="policy", op="GERMINATE" if r < 2 else "WAIT",
                                             action_probs={"WAIT": 0.3, "GERMINATE": 0.7}, value=0.5), env=env)
                w.emit(ev.Reward(total=float(r), components={"rent": -0.1, "attribution": float(r) + 0.1}), env=env)
            w.emit(ev.PPOUpdate(policy_loss=0.1 * r, value_loss=1.0 - 0.2 * r, entropy=1.5 - 0.1 * r,
                                approx_kl=0.01, clip_fraction=0.2, explained_variance=0.1 * r, lr=3e-4,
                                head_entropy={"op": 1.2 - 0.1 * r, "slot": 0.9}, early_stopped=r == 3))
    return tmp_path / "ppo-demo"


def test_sparkline_scales_to_its_range():
    assert sparkline([0.0, 1.0, 2.0, 3.0]) == "▁▃▆█"  # floor of value/range·8
    assert sparkline([]) == "" and sparkline([float("nan")]) == ""


async def test_policy_tab_shows_the_logged_learning_signal(tmp_path):
    run = write_ppo_run(tmp_path)
    app = make_app(run)
    async with app.run_test(size=(160, 60)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("7")
        await pilot.pause()
        text = text_of(app.query_one(PolicyPanel))
    assert "PPO updates (4)" in text and "KL early stops" in text
    assert "policy loss" in text and "0.3" in text          # the last policy loss
    assert "op" in text and "0.9" in text                    # per-head entropy (op's last is 0.9)
    assert "attribution" in text and "rent" in text and "-0.1" in text
    assert "reward (8 steps)" in text


def test_op_distribution_splits_the_run(tmp_path):
    from telemetry_schema.fold import fold_tables
    from telemetry_schema.rundir import read_run

    state = fold_tables(read_run(write_ppo_run(tmp_path)))
    spans = op_distribution(state, buckets=2)
    assert [dict(c) for _, c in spans] == [{"GERMINATE": 4}, {"WAIT": 4}]


async def test_policy_tab_says_when_a_log_has_no_policy(tmp_path):
    started = ev.RunStarted(run_id="plain", task="t", topology="cnn", host_params=1)
    with create_run(tmp_path, started, config=WriterConfig(heartbeat_s=0)) as run:
        run.writer.scalar("x", 1.0)
    app = make_app(tmp_path / "plain")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("7")
        await pilot.pause()
        assert "no PPO updates" in text_of(app.query_one(PolicyPanel))
