"""Short CPU runs through the same code path as `esper train`, asserting on the logs they write."""

import math
import subprocess
import sys

import pytest
import torch
from telemetry_schema import read_run

from esper.cli import main
from esper.leyline.config import GateConfig, GradientConfig, HeuristicConfig, SlotConfig, TrainConfig
from esper.leyline.stages import TRANSITIONS, SeedStage
from esper.nissa.sink import Sink
from esper.runtime.synthetic import SyntheticConfig
from esper.runtime.tasks import TaskOptions
from esper.session import RunSpec, run_training
from esper.tolaria.trainer import FaultSpec

EAGER = HeuristicConfig(min_epoch=1, stable_window=1, stable_rel_change=10.0, plateau_window=1,
                        plateau_pp=1e9, prune_cooldown=0, hold_decide_epochs=1, failing_epochs=100)


def small_spec(tmp_path, epochs=9, fault=None, **kw) -> RunSpec:
    train = TrainConfig(epochs=epochs, batch_stride=2,
                        gates=GateConfig(min_training_epochs=1, min_holding_epochs=1),
                        gradients=GradientConfig(stride=2), slot=SlotConfig(embargo_epochs=1))
    opts = TaskOptions(synthetic=SyntheticConfig(train_size=256, val_size=128, image_size=8))
    return RunSpec(runs_dir=str(tmp_path), run_name="t", train=train, heuristic=EAGER, task_options=opts,
                   fault=fault, **kw)


def rows_of(run_dir, kind):
    return read_run(run_dir).rows(kind)


@pytest.fixture(scope="module")
def heuristic_run(tmp_path_factory):
    return run_training(small_spec(tmp_path_factory.mktemp("runs")))


def test_run_log_has_legal_stage_order_per_slot(heuristic_run):
    changes = rows_of(heuristic_run.run_dir, "stage_changed")
    assert changes, "no seed ever moved"
    by_slot: dict[str, list] = {}
    for r in changes:
        by_slot.setdefault(r["slot"], []).append(r)
    for slot, moves in by_slot.items():
        assert moves[0]["from_stage"] == "DORMANT"
        for a, b in zip(moves, moves[1:]):
            assert b["from_stage"] == a["to_stage"], slot
        for m in moves:
            assert SeedStage[m["to_stage"]] in TRANSITIONS[SeedStage[m["from_stage"]]]
    reached = {m["to_stage"] for moves in by_slot.values() for m in moves}
    assert {"GERMINATED", "TRAINING", "BLENDING", "HOLDING"} <= reached
    assert reached & {"FOSSILIZED", "PRUNED"}


def test_run_log_has_gates_with_check_codes_and_measurements(heuristic_run):
    gates = rows_of(heuristic_run.run_dir, "gate_evaluated")
    assert {g["gate"] for g in gates} >= {"G0", "G1", "G2", "G3"}
    assert all(g["checks_passed"] or g["checks_failed"] for g in gates)
    assert all(g["passed"] == (not g["checks_failed"]) for g in gates)
    assert any(not g["passed"] for g in gates) and any(g["passed"] for g in gates)
    grads = rows_of(heuristic_run.run_dir, "gradient_stats")
    assert grads and any(g["ratio"] is not None and g["ratio"] > 0 for g in grads)
    cfs = rows_of(heuristic_run.run_dir, "counterfactual")
    assert cfs and all(c["contribution"] == pytest.approx(c["real_acc"] - c["off_acc"]) for c in cfs)
    decisions = rows_of(heuristic_run.run_dir, "controller_decision")
    assert {d["op"] for d in decisions} >= {"GERMINATE", "ADVANCE"}
    assert all(d["reason"] for d in decisions)


def test_run_log_numbers_are_finite_and_run_finished(heuristic_run):
    epochs = rows_of(heuristic_run.run_dir, "epoch_completed")
    assert len(epochs) == 9
    for e in epochs:
        assert all(math.isfinite(e[k]) for k in ("train_loss", "train_acc", "val_loss", "val_acc"))
        assert len(e["per_class_acc"]) == 10 and e["total_params"] >= e["host_params"] > 0
    assert [r["epoch"] for r in rows_of(heuristic_run.run_dir, "epoch_completed")] == list(range(1, 10))
    finished = rows_of(heuristic_run.run_dir, "run_finished")
    assert len(finished) == 1 and finished[0]["status"] == "completed"
    assert rows_of(heuristic_run.run_dir, "batch_metrics")


def test_final_checkpoint_loads_with_weights_only(heuristic_run):
    state = torch.load(heuristic_run.run_dir / "model.pt", weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    assert any(k.startswith("host.") for k in state)


def test_injected_nan_makes_the_governor_panic_and_roll_back(tmp_path):
    out = run_training(small_spec(tmp_path, epochs=4, fault=FaultSpec("nan", 3), controller="none"))
    panics = rows_of(out.run_dir, "governor_panic")
    rollbacks = [r for r in rows_of(out.run_dir, "governor_rollback")]
    assert [p["reason"] for p in panics] == ["nan"]
    assert len(rollbacks) == 1 and rollbacks[0]["epoch"] == 3
    epochs = rows_of(out.run_dir, "epoch_completed")
    assert math.isnan(epochs[2]["val_loss"]) and math.isfinite(epochs[3]["val_loss"])  # recovered
    assert out.summary.rollbacks == 1


def test_spike_fault_rolls_back_after_three_statistical_anomalies(tmp_path):
    spec = small_spec(tmp_path, epochs=14, fault=FaultSpec("spike", 11), controller="none")
    out = run_training(spec)
    panics = rows_of(out.run_dir, "governor_panic")
    assert [p["reason"] for p in panics] == ["statistical"] * 3
    assert [p["consecutive"] for p in panics] == [1, 2, 3]
    assert len(rows_of(out.run_dir, "governor_rollback")) == 1


class Interrupt(Sink):
    def epoch_completed(self, epoch, *a, **k):
        if epoch == 2:
            raise KeyboardInterrupt


def test_ctrl_c_ends_cleanly_as_interrupted(tmp_path):
    out = run_training(small_spec(tmp_path, epochs=5), extra_sink=Interrupt())
    assert out.status == "interrupted"
    finished = rows_of(out.run_dir, "run_finished")
    assert finished[0]["status"] == "interrupted"


@pytest.mark.parametrize("argv,needle", [
    (["train", "--task", "bogus"], "unknown task"),
    (["train", "--task", "cifar10", "--data-dir", "/nonexistent"], "CIFAR-10"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--inject-fault", "boom@x"], "inject-fault"),
    (["train", "--slots", "block9"], "unknown slot"),
    (["train", "--bogus-flag"], "unrecognized"),
    (["train", "--task", "text:/nonexistent.txt"], "not found"),
])
def test_cli_errors_are_one_line_without_traceback(argv, needle, tmp_path, capsys):
    code = main(argv + ["--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_empty_text_corpus_is_an_error(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["train", "--task", f"text:{empty}", "--runs-dir", str(tmp_path)]) == 2
    assert "empty dataset" in capsys.readouterr().err


def test_python_dash_m_esper_reports_bad_flags():
    proc = subprocess.run([sys.executable, "-m", "esper", "train", "--controller", "magic"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "controller" in proc.stderr


def test_cli_language_task_runs_and_prints_watch_commands(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 120)
    code = main(["train", "--task", f"text:{text}", "--epochs", "1", "--runs-dir", str(tmp_path / "r"),
                 "--run-name", "lm"])
    out = capsys.readouterr().out
    assert code == 0
    assert "esper-tui" in out and "esper-dashboard --logdir" in out
    run_dir = next((tmp_path / "r").iterdir())
    epochs = rows_of(run_dir, "epoch_completed")
    ppl = epochs[0]["perplexity"]
    assert ppl is not None and 1.0 < ppl < 300.0
    assert epochs[0]["per_class_acc"] == []
