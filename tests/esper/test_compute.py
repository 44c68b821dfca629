"""Compute accounting of the training loop: every FLOP torch counts in an epoch is in the log."""

import pytest
from telemetry_schema import read_run
from telemetry_schema.fold import Fold
from telemetry_schema.series import SeriesOptions, curves
from torch.utils.flop_counter import FlopCounterMode

from esper.leyline.actions import Decision, Op
from esper.leyline.config import GradientConfig, SlotConfig, TrainConfig
from esper.leyline.stages import SeedStage as S
from esper.nissa.sink import Sink
from esper.session import run_training
from esper.tolaria.trainer import Trainer

from esper_testkit import tiny_data, tiny_model
from test_end_to_end import small_spec


class Recorder(Sink):
    def __init__(self):
        self.epochs, self.seeds = [], []

    def epoch_completed(self, epoch, result, host_params, total_params, seconds, compute=None):
        self.epochs.append(compute)

    def seed_compute(self, slot_id, seed_id, compute):
        self.seeds.append((slot_id, compute))


def trainer_with_seed(stage):
    model = tiny_model(["block0", "block1"])
    for slot in model.slots.values():
        slot.cfg = SlotConfig(isolate_blending=False)
    rec = Recorder()
    cfg = TrainConfig(epochs=4, gradients=GradientConfig(stride=1), lr_schedule="constant")
    trainer = Trainer(model, tiny_data(n=80, batch=32), tiny_data(n=40, seed=1), num_classes=3, cfg=cfg, sink=rec)
    trainer.lifecycle.apply(Decision(Op.GERMINATE, "block1", "conv_light"), 0, 0.0, 1.0)
    slot = model.slots["block1"]
    for st in (S.TRAINING, S.BLENDING, S.HOLDING, S.FOSSILIZED):
        if slot.stage is stage:
            break
        slot.enter(st, "test", 0.0, 1.0)
    trainer._sync_seed_optimizers()
    return trainer, rec


@pytest.mark.parametrize("stage", [S.TRAINING, S.BLENDING, S.FOSSILIZED])
def test_an_epochs_flops_are_what_torch_counts(stage):
    trainer, rec = trainer_with_seed(stage)
    trainer.run_epoch(1)  # the first epoch also costs the blueprints once, for the controller
    with FlopCounterMode(display=False) as counter:
        trainer.run_epoch(2)
    c = rec.epochs[-1]
    per_sample_probe = c.forward_per_sample  # the count's own one-sample forward, seen by torch too
    assert c.train + c.val + c.counterfactual + per_sample_probe == counter.get_total_flops()
    assert c.val == 40 * c.forward_per_sample
    assert (c.counterfactual > 0) == (stage is S.BLENDING)  # measured in BLENDING and HOLDING
    assert c.cumulative == rec.epochs[-2].cumulative + c.train + c.val + c.counterfactual


def test_host_and_seed_shares_add_up_and_accumulate():
    trainer, rec = trainer_with_seed(S.BLENDING)
    trainer.run_epoch(1)
    trainer.run_epoch(2)
    first, second = rec.epochs
    assert second.cumulative == first.total + second.total
    for c in (first, second):
        seed = c.seeds["block1"]
        assert c.host + seed.train + seed.eval == c.total
        assert seed.stage in ("BLENDING", "HOLDING") and seed.params > 0
        assert seed.eval == 40 * seed.forward_per_sample  # runs in validation, off in its own counterfactual
    assert second.seeds["block1"].cumulative == first.seeds["block1"].train + first.seeds["block1"].eval \
        + second.seeds["block1"].train + second.seeds["block1"].eval
    assert [sid for sid, _ in rec.seeds] == ["block1", "block1"]


def test_germinated_seed_costs_nothing_and_summary_has_the_total():
    trainer, rec = trainer_with_seed(S.GERMINATED)
    trainer.fit(2)
    assert all(c.seeds == {} for c in rec.epochs)
    assert trainer.summary.flops == rec.epochs[-1].cumulative > 0
    assert trainer.summary.params == trainer.model.total_param_count()


def test_the_log_carries_compute_on_each_epoch_and_seed(tmp_path):
    out = run_training(small_spec(tmp_path, epochs=6))
    log = read_run(out.run_dir)
    epochs = log.rows("epoch_completed")
    assert [e["epoch"] for e in epochs] == list(range(1, 7))
    running = 0
    for e in epochs:
        assert e["flops_train"] > 0 and e["flops_val"] > 0 and e["forward_flops"] > 0
        running += e["flops_train"] + e["flops_val"] + e["flops_counterfactual"]
        assert e["flops_cumulative"] == running
        assert 0 < e["flops_host"] <= e["flops_train"] + e["flops_val"] + e["flops_counterfactual"]
    scalars = [r for r in log.rows("scalar") if r["name"].startswith("seed/")]
    assert scalars, "no seed ran in the forward pass"
    slots = {r["name"].split("/")[1] for r in scalars}
    assert slots and {r["name"] for r in scalars} == {
        f"seed/{slot}/{m}" for slot in slots
        for m in ("forward_flops", "flops_train", "flops_eval", "flops_cumulative", "params")}
    for r in scalars:
        assert r["value"] > 0
        if r["name"].endswith("/flops_train"):
            same_epoch = next(e for e in epochs if e["epoch"] == r["epoch"])
            assert r["value"] < same_epoch["flops_train"]
    state = Fold().update(log)
    x = curves(state, "val_acc", SeriesOptions(x="flops"))[0].x
    assert list(x) == [e["flops_cumulative"] for e in epochs]  # the compute axis of every viewer
    assert out.summary.flops == epochs[-1]["flops_cumulative"]
