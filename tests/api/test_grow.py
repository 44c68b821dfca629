"""esper.grow: the user's own module, slots they place, their loaders, loss and metric, through
the same lifecycle, gates, governor and telemetry as `esper train`."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from telemetry_schema import read_run

import esper
from esper.leyline.config import GateConfig, HeuristicConfig, SlotConfig, TrainConfig
from esper.leyline.stages import TRANSITIONS, SeedStage

README = Path(__file__).resolve().parents[2] / "README.md"
EAGER = HeuristicConfig(min_epoch=1, stable_window=1, stable_rel_change=10.0, plateau_window=1,
                        plateau_pp=1e9, prune_cooldown=0, hold_decide_epochs=1, failing_epochs=100,
                        fossilize_pp=-100.0)
FAST = TrainConfig(batch_stride=2, gates=GateConfig(min_training_epochs=1, min_holding_epochs=1,
                                                    min_contribution_permissive=-100.0),
                   slot=SlotConfig(embargo_epochs=1))


def readme_example() -> str:
    """The code block of the README's `esper.grow` section, exactly as written."""
    text = README.read_text()
    section = text[text.index("## Grow your own model"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_as_written(tmp_path):
    code = readme_example()
    assert 15 <= len(code.strip().splitlines()) <= 30
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert str(Path("runs") / run_dir.name) in out.stdout and "'slot': (" in out.stdout
    log = read_run(run_dir)
    (started,) = log.rows("run_started")
    assert (started["topology"], started["slot_ids"], started["task"]) == ("mlp", ["slot"], "Net")
    epochs = log.rows("epoch_completed")
    assert len(epochs) == 15 and epochs[-1]["val_acc"] > 50.0  # chance is 25 %
    assert log.rows("run_finished")[0]["status"] == "completed"
    assert log.rows("controller_decision") and (run_dir / "model.pt").is_file()


# -- small models and data ------------------------------------------------------------------

def class_data(n: int, shape: tuple[int, ...], classes: int = 3, seed: int = 0):
    """The class is which channel (dim 1) is brightest: learnable by any of the small nets."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = 0.5 * torch.randn(n, *shape, generator=g)
    x[torch.arange(n), y] += 1.0
    return x, y


def loaders(shape, n=192, batch=32, classes=3):
    x, y = class_data(n, shape, classes)
    xv, yv = class_data(n // 2, shape, classes, seed=1)
    return (DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0)),
            DataLoader(TensorDataset(xv, yv), batch_size=64))


class SmallCNN(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.grow_here = esper.Slot(8)
        self.mid = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        h = self.mid(self.grow_here(self.stem(x)))
        return self.head(h.mean(dim=(2, 3)))


def grow(model, shape=(3, 6, 6), tmp_path=None, **kw):
    train, val = loaders(shape)
    kw = {"epochs": 6, "config": FAST, "heuristic": EAGER, "runs_dir": tmp_path, **kw}
    return esper.grow(model, train, val, **kw)


# -- a whole run ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    torch.manual_seed(0)
    model = SmallCNN()
    return model, grow(model, tmp_path=tmp_path_factory.mktemp("runs"), epochs=9)


def test_a_grown_run_walks_the_lifecycle_through_gates(cnn_run):
    _, result = cnn_run
    log = read_run(result.run_dir)
    (started,) = log.rows("run_started")
    assert started["topology"] == "cnn" and started["slot_ids"] == ["grow_here"]
    moves = [(r["from_stage"], r["to_stage"]) for r in log.rows("stage_changed")]
    assert moves[0] == ("DORMANT", "GERMINATED")
    for (a, b), (c, _) in zip(moves, moves[1:]):
        assert b == c and SeedStage[b] in TRANSITIONS[SeedStage[a]]
    reached = {b for _, b in moves}
    assert {"TRAINING", "BLENDING", "HOLDING", "FOSSILIZED"} <= reached
    gates = log.rows("gate_evaluated")
    assert {g["gate"] for g in gates} >= {"G0", "G1", "G2", "G3", "G5"}
    assert all(g["slot"] == "grow_here" for g in gates)
    assert log.rows("counterfactual") and log.rows("gradient_stats") and log.rows("governor_snapshot")
    epochs = log.rows("epoch_completed")
    assert len(epochs) == 9 and all(math.isfinite(e["val_loss"]) for e in epochs)
    assert len(epochs[-1]["per_class_acc"]) == 3 and epochs[-1]["total_params"] > epochs[-1]["host_params"]
    assert log.rows("run_finished")[0]["status"] == "completed"
    config = json.loads(started["config_json"])["grow"]
    assert config["model"] == "SmallCNN" and config["train"]["epochs"] == 9


def test_the_users_model_runs_through_the_grown_seed(cnn_run):
    model, result = cnn_run
    assert result.seeds["grow_here"][0] == "FOSSILIZED"
    assert result.model.host.net is model
    x = class_data(8, (3, 6, 6), seed=5)[0]
    model.eval()
    with torch.no_grad():
        grown_out, user_out = result.model(x), model(x)
        seed = result.model.slots["grow_here"]
        seed.forced_alpha = 0.0  # the seed switched off: the output changes
        off = model(x)
        seed.forced_alpha = None
    assert torch.equal(grown_out, user_out)
    assert not torch.allclose(off, user_out)
    state = torch.load(result.run_dir / "model.pt", weights_only=True)
    assert any(k.startswith("host.net.stem.") for k in state)
    assert any(k.startswith("slots.grow_here.seed.") for k in state)
    assert set(state) == set(result.model.state_dict())


def test_a_model_grows_once(cnn_run, tmp_path):
    model, _ = cnn_run
    with pytest.raises(ValueError, match="already bound"):
        grow(model, tmp_path=tmp_path)


def test_dormant_slots_change_nothing_and_the_host_is_the_users_model(tmp_path):
    torch.manual_seed(0)
    model = SmallCNN()
    x = class_data(8, (3, 6, 6))[0]
    model.eval()
    before = model(x)
    result = grow(model, tmp_path=tmp_path, epochs=1, controller="none", config=TrainConfig(lr_schedule="constant"))
    assert result.seeds == {"grow_here": ("DORMANT", None)}
    assert result.model.host_param_count() == sum(p.numel() for p in model.parameters())
    assert not torch.equal(before, model.eval()(x))  # it trained
    assert read_run(result.run_dir).rows("seed_germinated") == []


# -- slots ----------------------------------------------------------------------------------

class Nested(nn.Module):
    """Slots in a Sequential and in an attribute, and a plain submodule named by the caller."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(5, 16), esper.Slot(16), nn.ReLU(), nn.Linear(16, 12))
        self.late = esper.Slot(12, name="late")
        self.proj = nn.Linear(12, 12)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        return self.head(self.proj(self.late(torch.relu(self.encoder(x)))))


def test_slots_are_found_in_forward_order_with_ids_and_hooks(tmp_path):
    result = grow(Nested(), shape=(5,), tmp_path=tmp_path, epochs=2, slots=["proj"])
    assert result.model.order == ["encoder_1", "late", "proj"]
    assert result.model.topology == "mlp"
    assert {s: result.model.slots[s].channels for s in result.model.order} == {"encoder_1": 16, "late": 12, "proj": 12}
    assert read_run(result.run_dir).rows("run_started")[0]["slot_ids"] == ["encoder_1", "late", "proj"]


class Seq(nn.Module):
    """(B, C, L) or (B, T, C) features: 3-D, told apart by the slot's channels."""

    def __init__(self, channels_first: bool, c=6, length=10):
        super().__init__()
        self.first = channels_first
        self.conv = nn.Conv1d(3, c, 3, padding=1)
        self.slot = esper.Slot(c)
        self.head = nn.Linear(c, 3)

    def forward(self, x):  # x: (B, 3, L)
        h = self.conv(x)  # (B, C, L)
        if self.first:
            return self.head(self.slot(h).mean(dim=2))
        return self.head(self.slot(h.transpose(1, 2)).mean(dim=1))  # (B, L, C)


@pytest.mark.parametrize("channels_first, topology", [(True, "conv1d"), (False, "transformer")])
def test_three_d_features_take_their_layout_from_the_channels(tmp_path, channels_first, topology):
    result = grow(Seq(channels_first), shape=(3, 10), tmp_path=tmp_path, epochs=4)
    assert result.model.topology == topology
    germinated = read_run(result.run_dir).rows("seed_germinated")
    assert germinated and all(g["blueprint"] in esper.api.__dict__ or True for g in germinated)
    from esper.kasmina import BLUEPRINTS
    assert all(g["blueprint"] in BLUEPRINTS[topology] for g in germinated)


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.slot = esper.Slot(4)

    def forward(self, x):
        return self.slot(self.slot(self.lin(x)))


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.slot = esper.Slot(4)

    def forward(self, x):
        return self.lin(x)


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.a, self.b = esper.Slot(4), esper.Slot(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.b(self.a(self.conv(x)).mean(dim=(2, 3))))


class Square(Seq):
    def __init__(self):
        super().__init__(True, c=10, length=10)


@pytest.mark.parametrize("make, shape, kw, message", [
    (lambda: nn.Linear(4, 3), (4,), {}, "no slot: put esper.Slot"),
    (lambda: nn.Linear(4, 3), (4,), {"slots": ["nope"]}, "no submodule named 'nope'"),
    (Twice, (4,), {}, "called 2 times per forward"),
    (Unused, (4,), {}, "slot 'slot' was not called"),
    (Mixed, (3, 5, 5), {}, "must share a feature layout; got a: cnn, b: mlp"),
    (lambda: SmallCNN().__setattr__("grow_here", esper.Slot(5)) or None, (3, 6, 6), {}, None),
    (Square, (3, 10), {}, "give the slot channels="),
    (lambda: SmallCNN(), (3, 6, 6), {"epochs": 0}, "epochs must be a positive int"),
    (lambda: SmallCNN(), (3, 6, 6), {"controller": "magic"}, "controller 'magic'"),
])
def test_bad_models_and_options_are_clear_errors(tmp_path, make, shape, kw, message):
    model = make()
    if model is None:  # a slot declared with the wrong channel count
        model, message = SmallCNN(), "declared 5 channels, but its features (64, 8, 6, 6) have 8"
        model.grow_here = esper.Slot(5)
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        grow(model, shape=shape, tmp_path=tmp_path, **kw)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # nothing started


def test_square_features_with_an_explicit_topology_and_hooks_removed_on_error(tmp_path):
    model = Square()
    model.slot = esper.Slot(10, topology="conv1d")
    assert grow(model, shape=(3, 10), tmp_path=tmp_path, epochs=1).model.topology == "conv1d"
    plain = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="no submodule"):
        grow(plain, shape=(4,), tmp_path=tmp_path, slots=["0", "nope"])
    with pytest.raises(ValueError, match="called 2 times"):
        shared = nn.Sequential(plain[0], plain[0], nn.Linear(4, 3))
        grow(shared, shape=(4,), tmp_path=tmp_path, slots=["0"])
    assert not shared[0]._forward_hooks  # the probe's hook did not stay behind


def test_bad_batches_and_loaders_are_clear_errors(tmp_path):
    x, y = class_data(32, (4,))
    model = nn.Sequential(nn.Linear(4, 4), esper.Slot(4), nn.Linear(4, 3))
    with pytest.raises(TypeError, match="one-shot iterator"):
        esper.grow(model, iter([(x, y)]), [(x, y)], runs_dir=tmp_path)
    with pytest.raises(TypeError, match=r"\(inputs, targets\) pairs; the validation loader gave tuple of 3"):
        esper.grow(model, [(x, y)], [(x, y, y)], runs_dir=tmp_path)
    with pytest.raises(ValueError, match="yielded no batch"):
        esper.grow(model, [(x, y)], [], runs_dir=tmp_path)
    with pytest.raises(ValueError, match="default loss and metric need integer class labels"):
        esper.grow(model, [(x, y.float())], [(x, y.float())], runs_dir=tmp_path)
    with pytest.raises(ValueError, match="target 5 is outside the model's 3 outputs"):
        esper.grow(model, [(x, y + 3)], [(x, y + 3)], runs_dir=tmp_path)
    with pytest.raises(ValueError, match=r"the loss or metric fails on the first validation batch \(outputs \(32, 3\)"):
        esper.grow(model, [(x, y)], [(x, y)], runs_dir=tmp_path, loss_fn=nn.functional.binary_cross_entropy)


# -- loss, metric and governor ----------------------------------------------------------------

def top2(outputs, targets):
    """Percent of samples whose target is among the two largest outputs."""
    return 100.0 * (outputs.topk(2, dim=-1).indices == targets[:, None]).any(dim=1).float().mean()


def test_a_custom_loss_and_metric_drive_the_scores(tmp_path):
    torch.manual_seed(0)
    smooth = nn.CrossEntropyLoss(label_smoothing=0.2)
    result = grow(SmallCNN(classes=4), tmp_path=tmp_path, epochs=3, controller="none", loss_fn=smooth,
                  metric=top2)
    train, val = loaders((3, 6, 6))
    model = result.model.eval()
    with torch.no_grad():
        batches = [(model(x), y) for x, y in val]
    n = sum(len(y) for _, y in batches)
    expected_score = sum(float(top2(o, y)) * len(y) for o, y in batches) / n
    expected_loss = sum(float(smooth(o, y)) * len(y) for o, y in batches) / n
    last = read_run(result.run_dir).rows("epoch_completed")[-1]
    assert last["val_acc"] == pytest.approx(expected_score, abs=1e-4)
    assert last["val_loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert last["per_class_acc"] == []
    governor = json.loads(read_run(result.run_dir).rows("run_started")[0]["config_json"])["grow"]["train"]["governor"]
    assert governor["floor_fraction"] == 0.0 and governor["lobotomy_tolerance"] == 0.0


def test_regression_targets_with_a_metric_of_their_own(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 6, generator=g)
    y = x @ torch.randn(6, 1, generator=g)  # (N, 1) float targets
    data = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 128, 32)]
    val = [(x[128:], y[128:])]
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), esper.Slot(16), nn.Linear(16, 1))

    def explained(out, target):  # percent of the variance explained, clipped at 0
        return 100.0 * max(0.0, 1.0 - float(((out - target) ** 2).mean() / target.var()))

    result = esper.grow(model, data, val, epochs=8, loss_fn=nn.MSELoss(), metric=explained, config=FAST,
                        heuristic=EAGER, runs_dir=tmp_path)
    log = read_run(result.run_dir)
    epochs = log.rows("epoch_completed")
    assert epochs[-1]["val_acc"] > epochs[0]["val_acc"] and epochs[-1]["val_loss"] < epochs[0]["val_loss"]
    assert log.rows("seed_germinated")
    val_acc = {e["epoch"]: e["val_acc"] for e in epochs}
    cfs = log.rows("counterfactual")  # the seed switched off is scored by the same metric
    assert cfs and all(c["real_acc"] == val_acc[c["epoch"]] and abs(c["contribution"]) < 30 for c in cfs)


class NaNAt:
    """Cross-entropy that turns NaN on the ``at``-th training step (weights go NaN: the governor
    must roll back). Validation and the probe run without gradients and are not counted."""

    def __init__(self, at: int) -> None:
        self.calls, self.at = 0, at

    def __call__(self, out, y):
        training = torch.is_grad_enabled()
        self.calls += training
        loss = nn.functional.cross_entropy(out, y)
        return loss * float("nan") if training and self.calls == self.at else loss


@pytest.mark.parametrize("controller", ["none", "heuristic"])
def test_the_governor_rolls_a_grown_model_back(tmp_path, controller):
    torch.manual_seed(0)
    loss = NaNAt(at=6 * 2 + 1)  # two epochs of 6 batches, then the first of epoch 3
    result = grow(SmallCNN(), tmp_path=tmp_path, epochs=4, loss_fn=loss, controller=controller)
    log = read_run(result.run_dir)
    if controller == "heuristic":  # the seed germinated at epoch 2 was live: pruned by the rollback
        (pruned,) = log.rows("seed_pruned")
        assert pruned["initiator"] == "governor" and pruned["epoch"] == 3
    assert [p["reason"] for p in log.rows("governor_panic")] == ["nan"]
    (rollback,) = log.rows("governor_rollback")
    assert rollback["epoch"] == 3
    vals = [e["val_loss"] for e in log.rows("epoch_completed")]
    assert math.isnan(vals[2]) and math.isfinite(vals[3])
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


class Stop:
    def __init__(self, exc: BaseException, at: int) -> None:
        self.exc, self.at, self.calls = exc, at, 0

    def __call__(self, out, y):
        self.calls += 1
        if self.calls == self.at:
            raise self.exc
        return nn.functional.cross_entropy(out, y)


@pytest.mark.parametrize("exc, status", [(KeyboardInterrupt(), "interrupted"), (RuntimeError("bad batch"), "failed")])
def test_interrupts_and_errors_close_the_run_and_propagate(tmp_path, exc, status):
    with pytest.raises(type(exc)):
        grow(SmallCNN(), tmp_path=tmp_path, loss_fn=Stop(exc, at=9))
    (run_dir,) = tmp_path.iterdir()
    (finished,) = read_run(run_dir).rows("run_finished")
    assert finished["status"] == status
    assert json.loads((run_dir / "run.json").read_text())["status"] == status


def test_sequence_outputs_report_perplexity(tmp_path):
    class TinyLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(11, 12)
            self.slot = esper.Slot(12)
            self.out = nn.Linear(12, 11)

        def forward(self, idx):  # (B, T) -> (B, T, V)
            return self.out(self.slot(self.emb(idx)))

    g = torch.Generator().manual_seed(0)
    seq = torch.randint(0, 11, (64, 9), generator=g)
    data = [(seq[i:i + 16, :-1], seq[i:i + 16, 1:]) for i in range(0, 64, 16)]
    result = esper.grow(TinyLM(), data, data[:1], epochs=2, controller="none", runs_dir=tmp_path)
    assert result.model.topology == "transformer"
    (first, second) = read_run(result.run_dir).rows("epoch_completed")
    assert second["perplexity"] == pytest.approx(math.exp(second["val_loss"]), rel=1e-6)


GROW_UNTIL_SIGNALLED = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_DFL)
import torch
from torch import nn
import esper

calls = []
def loss(out, y):
    calls.append(torch.is_grad_enabled())
    if sum(calls) == 5:  # the fifth training step waits for the signal
        print("ready", flush=True)
        for _ in range(1200):
            time.sleep(0.05)
    return nn.functional.cross_entropy(out, y)

x, y = torch.randn(64, 4), torch.arange(64) % 3
data = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
model = nn.Sequential(nn.Linear(4, 8), esper.Slot(8), nn.Linear(8, 3))
esper.grow(model, data, data, epochs=3, loss_fn=loss, runs_dir="runs")
"""


def test_sigterm_closes_a_grown_run_as_interrupted(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", GROW_UNTIL_SIGNALLED], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "RunInterrupted: SIGTERM" in err
    (run_dir,) = (tmp_path / "runs").iterdir()
    (finished,) = read_run(run_dir).rows("run_finished")
    assert (finished["status"], finished["reason"]) == ("interrupted", "SIGTERM")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert len(read_run(run_dir).rows("epoch_completed")) == 1
