"""``esper ppo`` end to end on a tiny setting, and a trained policy driving ``Trainer``."""

import argparse
import io
import math

import pytest

from telemetry_schema import read_run
import torch
from rich.console import Console

from esper.kasmina.model import MorphogeneticModel
from esper.leyline.actions import Op
from esper.leyline.config import TrainConfig
from esper.runtime.synthetic import SyntheticConfig
from esper.runtime.tasks import TaskOptions, build_task
from esper.simic.cli import add_ppo_arguments, configs_from_args, resumed_configs, run_ppo
from esper.simic.losses import pooled_explained_variance
from esper.simic.training import Budget, Configs, PPOTrainer
from esper.tamiyo.policy.controller import load_policy_controller
from esper.tolaria.trainer import Trainer


def parse(*argv):
    return add_ppo_arguments(argparse.ArgumentParser()).parse_args(list(argv))


TINY = ("--envs", "2", "--rounds", "2", "--rollout-steps", "3", "--episode-length", "3", "--train-size", "256",
        "--val-size", "128", "--workers", "1")


def test_defaults():
    a = parse()
    assert (a.task, a.envs, a.reward_mode, a.device, a.episode_length, a.train_size) == (
        "synthetic-images", 4, "paired", "cpu", 23, 2048)
    cfgs = configs_from_args(a)
    assert cfgs.run.rounds == 150 and cfgs.run.time_budget_s == 780.0  # at most 13 min of learning
    assert cfgs.reward.gamma == cfgs.ppo.gamma
    assert (cfgs.ppo.teacher, cfgs.ppo.teacher_coef, cfgs.ppo.teacher_fraction) == ("heuristic", 1.0, 1.0)
    assert cfgs.env.critic_features and not configs_from_args(parse("--no-critic-features")).env.critic_features
    hot = configs_from_args(parse("--entropy-scale", "5"))
    assert hot.ppo.entropy_coefs["op"] == pytest.approx(5 * cfgs.ppo.entropy_coefs["op"])


@pytest.mark.parametrize("flags, match", [(("--envs", "0"), "--envs"), (("--rounds", "0"), "--rounds"),
                                          (("--time-budget", "-1"), "--time-budget"), (("--lr", "0"), "--lr"),
                                          (("--entropy-scale", "-1"), "--entropy-scale"),
                                          (("--teacher-coef", "-1"), "--teacher-coef"),
                                          (("--teacher-fraction", "nan"), "--teacher-fraction"),
                                          (("--resume", "nowhere"), "no learner checkpoint")])
def test_bad_flags_raise_value_error(tmp_path, flags, match):
    with pytest.raises(ValueError, match=match):
        run_ppo(parse(*flags, "--runs-dir", str(tmp_path)), Console(file=io.StringIO()))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    rc = run_ppo(parse(*TINY, "--runs-dir", str(runs), "--run-name", "tiny"), Console(file=io.StringIO()))
    run_dir = next(runs.iterdir())
    return rc, run_dir


def test_run_writes_log_and_checkpoints(trained):
    rc, run_dir = trained
    assert rc == 0 and (run_dir / "policy.pt").is_file() and (run_dir / "learner.pt").is_file()
    log = read_run(run_dir)
    assert len(log.rows("run_started")) == 1 and log.rows("run_finished")[0]["status"] == "completed"
    first, last = log.rows("run_started")[0]["seq"], log.rows("run_finished")[0]["seq"]
    assert first == 0 and last == max(r["seq"] for k in log.kinds for r in log.rows(k))
    assert len(log.rows("ppo_update")) == 2 and len(log.rows("reward")) == 2 * 2 * 3
    for u in log.rows("ppo_update"):
        assert math.isfinite(u["policy_loss"]) and math.isfinite(u["value_loss"]) and u["approx_kl"] >= 0
        assert set(dict(u["head_entropy"])) >= {"op"}
    scalars = {s["name"] for s in log.rows("scalar")}
    assert {"ppo/reward_per_step", "ppo/round_seconds", "reward/paired_gain", "reward/rent"} <= scalars
    assert {d["env"] for d in log.rows("controller_decision")} == {0, 1}
    ckpt = torch.load(run_dir / "learner.pt", weights_only=True)
    assert ckpt["rounds"] == 2 and ckpt["updates"] == 2


def test_resume_continues_the_learner_in_a_new_run(trained, tmp_path):
    _, run_dir = trained
    ckpt = torch.load(run_dir / "learner.pt", weights_only=True)
    cfgs = resumed_configs(parse("--rounds", "3", "--workers", "1"), ckpt)
    trainer = PPOTrainer.build(cfgs, resume=ckpt)
    net = trainer.learner.ppo.net
    assert all(torch.equal(v, ckpt["state_dict"][k]) for k, v in net.state_dict().items())
    assert trainer.learner.ppo.updates == 2 and trainer.rounds_done == 2
    assert trainer.learner.ppo.opt.state_dict()["state"][0]["step"] == ckpt["optimizer"]["state"][0]["step"]
    assert trainer.env.envs[0].episode == ckpt["next_episode"]  # episodes (host seeds) not used before
    rc = run_ppo(parse("--resume", str(run_dir), "--rounds", "3", "--workers", "1", "--runs-dir", str(tmp_path)),
                 Console(file=io.StringIO()))
    new_dir = next(tmp_path.iterdir())
    assert rc == 0 and new_dir != run_dir
    assert [u["step"] for u in read_run(new_dir).rows("ppo_update")] == [3]
    assert torch.load(new_dir / "learner.pt", weights_only=True)["updates"] == 3
    with pytest.raises(ValueError, match="pass --rounds"):
        resumed_configs(parse(), ckpt)  # the checkpoint's own 2 rounds are done


def test_a_taught_run_logs_its_teacher_and_resumes_with_it(trained, tmp_path):
    rc = run_ppo(parse(*TINY, "--teacher-coef", "2", "--teacher-fraction", "0.5", "--runs-dir", str(tmp_path / "a")),
                 Console(file=io.StringIO()))
    run_dir = next((tmp_path / "a").iterdir())
    scalars = {}
    for r in read_run(run_dir).rows("scalar"):
        scalars.setdefault(r["name"], []).append(r["value"])
    assert rc == 0 and scalars["ppo/teacher_weight"] == [2.0, 2.0 * (1 - 1 / (0.5 * 2))]
    assert all(0.0 <= a <= 1.0 for a in scalars["ppo/teacher_agreement"]) and len(scalars["ppo/imitation_loss"]) == 2
    ckpt = torch.load(run_dir / "learner.pt", weights_only=True)
    cfgs = resumed_configs(parse("--rounds", "3", "--workers", "1"), ckpt)
    assert (cfgs.ppo.teacher, cfgs.ppo.teacher_coef) == ("heuristic", 2.0)
    assert "ppo/teacher_weight" in {r["name"] for r in read_run(trained[1]).rows("scalar")}  # the default
    rc = run_ppo(parse(*TINY, "--teacher", "none", "--no-critic-features", "--runs-dir", str(tmp_path / "b")),
                 Console(file=io.StringIO()))
    plain_dir = next((tmp_path / "b").iterdir())
    untaught = {r["name"] for r in read_run(plain_dir).rows("scalar")}
    assert rc == 0 and "ppo/teacher_weight" not in untaught and "ppo/reward_per_step" in untaught
    # without critic features the network reads the policy's features alone, and deployed reports its value
    ctrl = load_policy_controller(plain_dir / "policy.pt")
    assert ctrl.net.cfg.critic_inputs == 0 and ctrl.net.obs_dim == ctrl.net.actor_dim == ctrl.bridge.obs_dim


def test_each_round_logs_the_moments_its_explained_variance_pools_from(trained):
    log = read_run(trained[1])
    names = ("ppo/return_mean", "ppo/return_var", "ppo/value_error_mean", "ppo/value_error_var")
    moments: dict[int, dict[str, float]] = {}
    for r in log.rows("scalar"):
        if r["name"] in names:
            moments.setdefault(r["step"], {})[r["name"]] = r["value"]
    updates = log.rows("ppo_update")
    assert len(updates) == 2 and all(len(moments[u["step"]]) == 4 for u in updates)
    for u in updates:  # one round pooled alone is that round's own explained variance
        m = tuple(moments[u["step"]][n] for n in names)
        assert m[1] > 0 and pooled_explained_variance([m]) == pytest.approx(u["explained_variance"], abs=1e-5)


def test_budget_stops_before_a_round_that_would_overrun():
    now = [0.0]
    budget = Budget(rounds=100, seconds=10.0, clock=lambda: now[0])
    assert budget.allows_another()
    for _ in range(3):  # rounds of 3 s: after three (9 s), a fourth would end at 12 s > 10 s
        now[0] += 3.0
        budget.record(3.0)
    assert not budget.allows_another() and budget.eta_s() == pytest.approx(1.0)
    rounds = Budget(rounds=2, seconds=0.0, clock=lambda: now[0])
    rounds.record(1.0)
    assert rounds.allows_another() and rounds.eta_s() == pytest.approx(1.0)
    rounds.record(1.0)
    assert not rounds.allows_another()


def test_trained_policy_drives_the_trainer(trained):
    _, run_dir = trained
    ctrl = load_policy_controller(run_dir / "policy.pt", greedy=False, seed=1)
    torch.manual_seed(0)
    task = build_task("synthetic-images", TaskOptions(synthetic=SyntheticConfig(train_size=256, val_size=128)))
    model = MorphogeneticModel(task.host)
    trainer = Trainer(model, task.train_loader, task.val_loader, num_classes=task.num_classes,
                      cfg=TrainConfig(epochs=4), controller=ctrl)
    summary = trainer.fit()
    assert summary.epochs == 4
    assert set(ctrl.last_probs) == {op.name for op in Op}
    assert abs(sum(ctrl.last_probs.values()) - 1.0) < 1e-4
    # its critic reads what only training knows (the gap to the shadow): deployed, it reports no value
    assert ctrl.net.cfg.critic_inputs == 2 and ctrl.last_value is None


def test_controller_masks_slots_the_model_lacks(trained):
    _, run_dir = trained
    from esper.leyline.actions import Observation, SlotView
    from esper.leyline.stages import SeedStage
    ctrl = load_policy_controller(run_dir / "policy.pt", greedy=False, seed=3)
    obs = Observation(epoch=2, total_epochs=5, topology="cnn", val_acc=[10.0], train_loss=[2.0],
                      slots=(SlotView("block2", SeedStage.DORMANT),))
    for _ in range(30):
        decisions = ctrl.decide(obs)
        assert decisions and all(d.slot_id in (None, "block2") for d in decisions)


def test_controller_refuses_another_topology(trained):
    _, run_dir = trained
    from esper.leyline.actions import Observation
    ctrl = load_policy_controller(run_dir / "policy.pt")
    with pytest.raises(ValueError, match="cnn host"):
        ctrl.decide(Observation(epoch=1, total_epochs=3, topology="transformer"))


def test_sigterm_ends_the_run_as_interrupted_with_its_checkpoints(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    cmd = [sys.executable, "-m", "esper", "ppo", *TINY[:2], "--rounds", "50", *TINY[4:], "--runs-dir", str(tmp_path),
           "--run-name", "term"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "term" / "learner.pt").exists():  # wait for the first round's checkpoint
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        proc.kill()
    run_dir = tmp_path / "term"
    finished = read_run(run_dir).rows("run_finished")
    assert [(f["status"], f["reason"]) for f in finished] == [("interrupted", "SIGTERM")]
    assert torch.load(run_dir / "learner.pt", weights_only=True)["rounds"] >= 1


def test_configs_round_trip_through_a_checkpoint_dict():
    from esper.simic.training import Configs
    cfgs = configs_from_args(parse("--envs", "3", "--workers", "1", "--episode-length", "5", "--entropy-scale", "2"))
    assert Configs.from_dict(cfgs.as_dict()) == cfgs
    assert Configs.from_dict({}) == Configs()


def test_configs_of_an_earlier_checkpoint_keep_the_settings_it_was_made_with():
    new = Configs()
    assert Configs.from_dict(new.as_dict()) == new and new.env.critic_features and new.bridge.prune_after_blend
    old = new.as_dict()
    del old["env"]["critic_features"], old["bridge"]["prune_after_blend"]
    legacy = Configs.from_dict(old)
    assert not legacy.env.critic_features and not legacy.bridge.prune_after_blend
    assert legacy.env.task == new.env.task and Configs.from_dict({}) == new  # absent sections: the defaults
