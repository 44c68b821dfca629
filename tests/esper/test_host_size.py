"""Host size from the command line, and a grown architecture trained from epoch 1 (--init-seeds)."""

import pytest
import torch
from telemetry_schema import read_run

from esper.cli import main, parse_init_seeds
from esper.kasmina.blueprints import blueprint_params
from esper.leyline.config import TrainConfig
from esper.leyline.stages import SeedStage as S
from esper.runtime.tasks import TaskOptions, build_task
from esper.session import run_training
from esper.tolaria.trainer import Trainer

from esper_testkit import tiny_data, tiny_model
from test_end_to_end import small_spec


def cnn_params(base, blocks, classes=10, k=3, cin=3):
    chans = [base * 2 ** i for i in range(blocks)]
    convs = sum(a * b * k * k for a, b in zip([cin] + chans[:-1], chans))
    return convs + 2 * sum(chans) + chans[-1] * classes + classes  # convs, BatchNorm, head


@pytest.mark.parametrize("width,depth", [(None, None), (16, None), (8, 4), (4, 1)])
def test_cnn_width_and_depth(width, depth):
    task = build_task("synthetic-images", TaskOptions(host_width=width, host_depth=depth))
    base, blocks = width or 8, depth or 3
    assert sum(p.numel() for p in task.host.parameters()) == cnn_params(base, blocks)
    assert [s.channels for s in task.host.injection_specs()] == [base * 2 ** i for i in range(blocks)]
    assert task.host(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_transformer_width_and_layers():
    task = build_task("pydoc-text", TaskOptions(host_width=32, host_depth=3, text_max_bytes=20_000))
    assert task.host.cfg.width == 32 and len(task.host.layers) == 3
    assert [s.slot_id for s in task.host.injection_specs()] == ["layer0", "layer1", "layer2"]


@pytest.mark.parametrize("argv,needle", [
    (["--host-width", "0"], "host width must be >= 1"),
    (["--host-depth", "-2"], "host depth must be >= 1"),
    (["--task", "pydoc-text", "--host-width", "30"], "multiple of the 4 attention heads"),
    (["--init-seeds", "block1"], "expected SLOT=BLUEPRINT"),
    (["--init-seeds", "block9=conv_light"], "no slot block9"),
    (["--init-seeds", "block1=conv_giant"], "unknown blueprint"),
    (["--init-seeds", "block1=conv_light,block1=norm"], "given twice"),
    (["--slots", "block2", "--init-seeds", "block1=conv_light"], "no slot block1"),
])
def test_bad_sizes_and_seeds_are_one_line_errors(argv, needle, tmp_path, capsys):
    assert main(["train", "--runs-dir", str(tmp_path)] + argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_parse_init_seeds():
    assert parse_init_seeds("block1=conv_light, block2 = conv_heavy") == [
        ("block1", "conv_light"), ("block2", "conv_heavy")]
    assert parse_init_seeds(None) == [] == parse_init_seeds("")


def test_init_seeds_are_fossilized_before_epoch_one_and_train_with_the_host(tmp_path):
    spec = small_spec(tmp_path, epochs=2, controller="none")
    spec.init_seeds = [("block0", "conv_light"), ("block2", "bottleneck")]
    out = run_training(spec)
    log = read_run(out.run_dir)
    fossils = log.rows("seed_fossilized")
    assert [(r["slot"], r["epoch"], r["reason"]) for r in fossils] == [
        ("block0", 0, "initial architecture"), ("block2", 0, "initial architecture")]
    expected = blueprint_params("cnn", "conv_light", 8) + blueprint_params("cnn", "bottleneck", 32)
    epochs = log.rows("epoch_completed")
    assert all(e["total_params"] - e["host_params"] == expected for e in epochs)
    assert {r["name"] for r in log.rows("scalar") if r["name"].endswith("/flops_train")} == {
        "seed/block0/flops_train", "seed/block2/flops_train"}
    assert out.summary.germinated == out.summary.fossilized == 0  # an initial architecture is not growth
    state = torch.load(out.run_dir / "model.pt", weights_only=True)
    last = state["slots.block0.seed.body.3.weight"]  # zero-initialised: nonzero only if it trained
    assert last.abs().sum() > 0


def test_a_fossil_follows_the_host_schedule_and_a_live_seed_keeps_its_rate():
    model = tiny_model(["block0", "block1"])
    cfg = TrainConfig(epochs=5, host_lr=1e-2, seed_lr=1e-2, lr_floor=0.1)
    trainer = Trainer(model, tiny_data(), tiny_data(seed=1), num_classes=3, cfg=cfg)
    trainer.implant([("block0", "conv_light")])
    model.slots["block1"].germinate("s", "conv_small", 0, 0.0)
    model.slots["block1"].enter(S.TRAINING, "t", 0.0, 1.0)
    trainer._sync_seed_optimizers()
    trainer._apply_lr(5)
    lr = {sid: o.param_groups[0]["lr"] for sid, o in trainer.seed_opts.items()}
    assert lr == {"block0": pytest.approx(1e-3), "block1": pytest.approx(1e-2)}
    assert trainer.host_opt.param_groups[0]["lr"] == pytest.approx(1e-3)


@pytest.mark.parametrize("argv,epochs", [([], 40), (["--task", "pydoc-text"], 15),
                                         (["--task", "pydoc-text", "--epochs", "3"], 3)])
def test_a_task_has_its_default_epochs(argv, epochs):
    from esper.cli import make_parser, spec_from_args
    spec, _ = spec_from_args(make_parser().parse_args(["train", *argv]))
    assert spec.train.epochs == epochs
