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
from esper.simic.cli import add_ppo_arguments, run_ppo
from esper.tamiyo.policy.controller import load_policy_controller
from esper.tolaria.trainer import Trainer


def parse(*argv):
    return add_ppo_arguments(argparse.ArgumentParser()).parse_args(list(argv))


def test_defaults():
    a = parse()
    assert (a.task, a.envs, a.reward_mode, a.device, a.episode_length) == ("synthetic-images", 4, "shaped", "cpu", 20)


def test_bad_flags_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="--envs"):
        run_ppo(parse("--envs", "0", "--runs-dir", str(tmp_path)), Console(file=io.StringIO()))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    args = parse("--envs", "2", "--rounds", "2", "--episode-length", "3", "--train-size", "256",
                 "--runs-dir", str(runs), "--run-name", "tiny")
    rc = run_ppo(args, Console(file=io.StringIO()))
    run_dir = next(runs.iterdir())
    return rc, run_dir


def test_run_writes_log_and_checkpoint(trained):
    rc, run_dir = trained
    assert rc == 0 and (run_dir / "policy.pt").is_file()
    log = read_run(run_dir)
    first, last = log.rows("run_started")[0]["seq"], log.rows("run_finished")[0]["seq"]
    assert first == 0 and last == max(r["seq"] for k in log.kinds for r in log.rows(k))
    assert len(log.rows("ppo_update")) == 2 and len(log.rows("reward")) == 2 * 2 * 3
    for u in log.rows("ppo_update"):
        assert math.isfinite(u["policy_loss"]) and math.isfinite(u["value_loss"]) and u["approx_kl"] >= 0
        assert set(dict(u["head_entropy"])) >= {"op", "slot", "blueprint"}
    scalars = {s["name"] for s in log.rows("scalar")}
    assert {"ppo/reward_per_step", "reward/shaping", "reward/rent"} <= scalars
    assert {d["env"] for d in log.rows("controller_decision")} == {0, 1}


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
    assert abs(sum(ctrl.last_probs.values()) - 1.0) < 1e-4 and ctrl.last_value is not None


def test_controller_masks_slots_the_model_lacks(trained):
    _, run_dir = trained
    from esper.leyline.actions import Observation, SlotView
    from esper.leyline.stages import SeedStage
    ctrl = load_policy_controller(run_dir / "policy.pt", greedy=False, seed=3)
    obs = Observation(epoch=2, total_epochs=5, topology="cnn", val_acc=[10.0], train_loss=[2.0],
                      slots=(SlotView("block2", SeedStage.DORMANT),))
    for _ in range(30):
        (d,) = ctrl.decide(obs)
        assert d.slot_id in (None, "block2")


def test_controller_refuses_another_topology(trained):
    _, run_dir = trained
    from esper.leyline.actions import Observation
    ctrl = load_policy_controller(run_dir / "policy.pt")
    with pytest.raises(ValueError, match="cnn host"):
        ctrl.decide(Observation(epoch=1, total_epochs=3, topology="transformer"))
