"""Pins of the review fixes (shared/seeds): each test fails when its fix is undone."""

import ast
import collections
import importlib
import pkgutil
from pathlib import Path

import pytest
import torch

import esper
from esper.kasmina.gates import GateContext, gate_g2, gate_g4, gate_g5
from esper.kasmina.gradients import GradientCollector
from esper.kasmina.protocol import InjectionSpec
from esper.kasmina.slot import SeedSlot
from esper.leyline.actions import Decision, Op
from esper.leyline.config import GateConfig, GradientConfig, SlotConfig, TrainConfig
from esper.leyline.stages import SeedStage as S
from esper.nissa.sink import Sink
from esper.tolaria.governor import GovernorVerdict
from esper.tolaria.runners import StepHooks, train_epoch
from esper.tolaria.trainer import Trainer

from esper_testkit import tiny_data, tiny_model

CPU = torch.device("cpu")
PERMISSIVE, STRICT = GateConfig(mode="permissive"), GateConfig(mode="strict")


def slot_in(stage, topology="cnn", isolate=True):
    spec = InjectionSpec("s", 4, 0)
    slot = SeedSlot(spec, topology, SlotConfig(tempo="fast", isolate_blending=isolate))
    slot.germinate("seed1", "conv_small" if topology == "cnn" else "lora", 0, 0.0)
    for st in (S.TRAINING, S.BLENDING, S.HOLDING):
        if slot.stage is stage:
            break
        if st is S.HOLDING:
            while not slot.alpha.idle:
                slot.end_epoch()
        slot.enter(st, "test", 0.0, 1.0)
    return slot


def test_g2_threshold_is_per_topology():
    cfg = GateConfig(mode="permissive", gradient_ratio_threshold={"cnn": 0.05, "transformer": 0.5},
                     min_gradient_samples=0)
    verdicts = {}
    for topology in ("cnn", "transformer"):
        slot = slot_in(S.TRAINING, topology)
        slot.record.epochs_in_stage = 3
        slot.record.grad.ema.update(0.2)
        verdicts[topology] = gate_g2(slot, GateContext(50.0, 1.0), cfg)
    assert verdicts["cnn"].passed
    assert "seed_gradient_low_0.20" in verdicts["transformer"].checks_failed


def test_blending_isolates_a_cnn_seed_from_the_host():
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    slot = slot_in(S.BLENDING, isolate=True)
    torch.nn.init.normal_(slot.seed.body.weight)
    alpha = slot.alpha.alpha
    slot(x).sum().backward()
    assert 0 < alpha < 1
    assert torch.allclose(x.grad, torch.full_like(x, 1 - alpha))  # the direct path only
    co = slot_in(S.BLENDING, isolate=False)
    co.seed.load_state_dict(slot.seed.state_dict())
    x.grad = None
    co(x).sum().backward()
    assert not torch.allclose(x.grad, torch.full_like(x, 1 - alpha))  # co-adapting: the seed path too


class Recorder(Sink):
    def __init__(self):
        self.counterfactuals, self.snapshots = [], []

    def counterfactual(self, slot_id, seed_id, real_acc, off_acc, se=None):
        self.counterfactuals.append(slot_id)

    def governor_snapshot(self, reason, tensors):
        self.snapshots.append(reason)


def trainer_with(stage, sink=None, gates=PERMISSIVE):
    model = tiny_model(["block1"])
    cfg = TrainConfig(epochs=3, gates=gates, gradients=GradientConfig(stride=1), slot=SlotConfig(tempo="fast"))
    trainer = Trainer(model, tiny_data(), tiny_data(seed=1), num_classes=3, cfg=cfg, sink=sink)
    trainer.lifecycle.apply(Decision(Op.GERMINATE, "block1", "conv_small"), 0, 0.0, 1.0)
    slot = model.slots["block1"]
    for st in (S.TRAINING, S.BLENDING, S.HOLDING):
        if slot.stage is stage:
            break
        if st is S.HOLDING:
            while not slot.alpha.idle:
                slot.end_epoch()
        slot.enter(st, "test", 0.0, 1.0)
    trainer._sync_seed_optimizers()
    return trainer, slot


def test_counterfactual_is_measured_during_blending():
    rec = Recorder()
    trainer, slot = trainer_with(S.BLENDING, rec)
    trainer.run_epoch(1)
    assert rec.counterfactuals == ["block1"] and slot.record.contribution is not None


class Fossilize:
    name = "test"

    def decide(self, obs):
        return [Decision(Op.FOSSILIZE, "block1", reason="test")]


def test_snapshot_after_fossilization_lets_a_later_rollback_load():
    rec = Recorder()
    gates = GateConfig(mode="permissive", min_holding_epochs=0, min_gradient_samples=0,
                       min_contribution_permissive=-100.0, hold_loss_tolerance=100.0)
    trainer, slot = trainer_with(S.HOLDING, rec, gates)
    trainer.sink.governor_snapshot("initial", trainer.governor.take_snapshot(trainer.model, 0))
    trainer.controller = Fossilize()
    result = trainer.run_epoch(1)  # measures the contribution, then fossilizes
    assert slot.stage is S.FOSSILIZED and rec.snapshots[-1] == "fossilized"
    fossil = {k: v.clone() for k, v in slot.seed.state_dict().items()}
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)
    verdict = GovernorVerdict("nan", float("nan"), None, 0.0, 0.0, 1, True)
    assert not trainer._govern(2, result, verdict)  # loads strictly: the fossil's keys are in the snapshot
    assert slot.stage is S.FOSSILIZED
    assert all(torch.equal(v, fossil[k]) for k, v in slot.seed.state_dict().items())


def test_gradient_norms_are_collected_before_clipping():
    model = tiny_model(["block1"])
    slot = model.slots["block1"]
    slot.germinate("s", "conv_small", 0, 0.0)
    slot.enter(S.TRAINING, "t", 0.0, 1.0)
    batch = next(iter(tiny_data()))
    probe = tiny_model(["block1"])
    probe.load_state_dict(model.state_dict(), strict=False)
    probe.slots["block1"].germinate("s", "conv_small", 0, 0.0)
    probe.slots["block1"].seed.load_state_dict(slot.seed.state_dict())
    probe.slots["block1"].enter(S.TRAINING, "t", 0.0, 1.0)
    torch.nn.functional.cross_entropy(probe(batch[0]), batch[1]).backward()
    unclipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in probe.host.parameters()]))
    col = GradientCollector()
    host_opt = torch.optim.SGD(model.host.parameters(), lr=0.0)
    seed_opt = torch.optim.SGD(slot.seed.parameters(), lr=0.0)
    hooks = StepHooks(1, lambda: (list(model.host.parameters()), {"block1": slot.seed_parameters()}), col,
                      clip_norm=1e-4)
    train_epoch(model, [batch], host_opt, {"block1": seed_opt}, CPU, hooks)
    sample, = col.flush()
    assert unclipped > 1e-2
    assert sample.host_norm == pytest.approx(unclipped.item(), rel=1e-4)


def test_every_torch_load_in_esper_is_weights_only():
    calls = []
    for path in Path(esper.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                kw = {k.arg: k.value for k in node.keywords}
                calls.append((path.name, "weights_only" in kw and ast.literal_eval(kw["weights_only"]) is True))
    assert calls, "no torch.load found: the scan is broken"
    assert all(ok for _, ok in calls), calls


def test_no_module_level_mutable_state_in_esper():
    skip = ("esper.simic", "esper.tamiyo.policy", "esper.__main__")  # simic's own test covers those two
    found = []
    for info in pkgutil.walk_packages(esper.__path__, "esper."):
        if info.name.startswith(skip):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name.startswith("__"):
                continue
            if isinstance(value, (list, dict, set, bytearray, collections.deque)):
                found.append(f"{info.name}.{name}")
    assert found == []


def test_shaping_discount_is_ppos_gamma(monkeypatch):
    import esper.simic.cli as simic_cli
    from esper.cli import make_parser
    from esper.simic.ppo import PPOConfig
    args = make_parser().parse_args(["ppo"])
    monkeypatch.setattr(simic_cli, "PPOConfig", lambda: PPOConfig(gamma=0.9))
    cfgs = simic_cli.configs_from_args(args)
    assert cfgs.ppo.gamma == 0.9 and cfgs.reward.gamma == 0.9


@pytest.mark.parametrize("contribution,strict,permissive", [(0.8, False, True), (1.2, True, True),
                                                            (0.0, False, False)])
def test_g5_strict_bar_is_one_point(contribution, strict, permissive):
    slot = slot_in(S.HOLDING)
    slot.record.contribution = contribution
    assert gate_g5(slot, GateContext(50.0, 1.0), STRICT).passed is strict
    assert gate_g5(slot, GateContext(50.0, 1.0), PERMISSIVE).passed is permissive


@pytest.mark.parametrize("loss,ok", [(1.02, True), (1.10, False)])
def test_g4_refuses_a_loss_that_got_worse_in_holding(loss, ok):
    slot = slot_in(S.HOLDING)
    slot.record.epochs_in_stage, slot.record.loss_at_hold_start = 2, 1.0
    for _ in range(3):
        slot.record.grad.update(1.0, [0.5], slot.record.params, 1000, GradientConfig())
    result = gate_g4(slot, GateContext(50.0, loss), PERMISSIVE)
    assert result.passed is ok, result.checks_failed
    assert ok or "val_loss_worse_+0.100" in result.checks_failed


def test_the_seed_optimizer_changes_the_seed_and_only_the_seed():
    trainer, slot = trainer_with(S.TRAINING)
    seed_before = [p.detach().clone() for p in slot.seed.parameters()]
    host_ids = {id(p) for g in trainer.host_opt.param_groups for p in g["params"]}
    assert not host_ids & {id(p) for p in slot.seed.parameters()}
    trainer.run_epoch(1)
    after = list(slot.seed.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(after, seed_before))
    assert set(trainer.seed_opts["block1"].state) == set(after)  # the seed optimizer stepped them
