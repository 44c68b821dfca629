"""``esper export``: the command line (tables and TensorBoard), read back with TensorBoard's own
reader; bad input is one line and exit status 2; neither ``esper export`` nor ``esper --help``
imports torch."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from esper.cli import main
from telemetry_schema.fold import fold_tables
from telemetry_schema.rundir import read_run
from telemetry_schema.series import metrics
from tests.telemetry.export_runs import EPOCHS, STEPS, T0, ddp_run, ppo_run, single_run, stream, tear

V1 = Path(__file__).parents[1] / "telemetry" / "data" / "v1"


def esper(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["export", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def accumulator(path: Path) -> EventAccumulator:
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(acc: EventAccumulator, tag: str) -> list[tuple[int, float, float]]:
    return [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)]


def same(a: float, b: float) -> bool:
    """Equal as TensorBoard keeps it (a 32-bit float), NaN equal to NaN."""
    a32, b32 = np.float32(a), np.float32(b)
    return bool(a32 == b32 or (np.isnan(a32) and np.isnan(b32)))


# -- tables -----------------------------------------------------------------------------------

def test_tables_to_the_default_directory_with_a_line_per_file(tmp_path, capsys):
    run = single_run(tmp_path)
    rc, out, err = esper(capsys, run, "--format", "parquet", "--kinds", "epoch_completed,scalar")
    assert rc == 0 and err == ""
    assert out.splitlines() == [
        "  epoch_completed.parquet          3 events",
        "  scalar.parquet                  12 events",
        f"wrote 2 parquet tables (15 events) to {run / 'export' / 'parquet'}"]
    df = pl.read_parquet(run / "export" / "parquet" / "epoch_completed.parquet")
    assert df["val_acc"].to_list() == [41.5, 42.5, 43.5]


def test_tables_default_to_csv_and_warn_about_a_torn_tail_on_stderr(tmp_path, capsys):
    run = single_run(tmp_path)
    tear(stream(run, "epoch_completed"))
    rc, out, err = esper(capsys, run, "--out", tmp_path / "out")
    assert rc == 0 and out.endswith(f"to {tmp_path / 'out'}\n")
    assert err.startswith("esper: warning: the log ends in 10 bytes that do not form a whole batch") and err.count("\n") == 1
    assert pl.read_csv(tmp_path / "out" / "epoch_completed.csv").height == EPOCHS - 1


@pytest.mark.parametrize("argv, message", [
    (["{missing}"], "{missing}: no such run directory"),
    (["{empty}"], "{empty}: no event log in this directory"),
    (["{run}", "--format", "xlsx"], "argument --format: invalid choice: 'xlsx'"),
    (["{run}", "--kinds", "epochs"], "--kinds: no event kind 'epochs' (kinds: run_started,"),
    (["{run}", "--out", "{file}"], "cannot write to {file}: File exists"),
    (["{run}", "{tmp}/tb"], "unexpected argument '{tmp}/tb' (tables go to --out DIR;"),
    (["--tensorboard", "{run}"], "--tensorboard needs a directory to write to"),
    (["--tensorboard", "{run}", "{tmp}/tb", "--format", "csv"], "--format does not apply to --tensorboard"),
    (["--tensorboard", "{missing}", "{tmp}/tb"], "{missing}: no such run directory"),
    (["--tensorboard", "{run}", "{file}"], "cannot write to {file}: not a directory"),
    ([], "the following arguments are required: RUN"),
    (["{run}", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    run = single_run(tmp_path, "run")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    names = {"run": run, "missing": tmp_path / "missing", "empty": tmp_path / "empty", "file": tmp_path / "file",
             "tmp": tmp_path}
    rc, out, err = esper(capsys, *[a.format(**names) for a in argv])
    assert rc == 2 and out == ""
    assert err.startswith("esper: error: " + message.format(**names)) and err.count("\n") == 1, err


def test_existing_tables_are_refused_then_replaced_with_force(tmp_path, capsys):
    run = single_run(tmp_path)
    assert esper(capsys, run, "--format", "jsonl")[0] == 0
    rc, _, err = esper(capsys, run, "--format", "jsonl")
    assert rc == 2 and "exists (and 13 more): --force overwrites" in err
    assert esper(capsys, run, "--format", "jsonl", "--force")[0] == 0


def _no_torch(code: str) -> subprocess.CompletedProcess:
    check = f"import sys\n{code}\nassert 'torch' not in sys.modules, 'torch was imported'\n"
    return subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)


def test_esper_export_and_esper_help_do_not_import_torch(tmp_path):
    run = single_run(tmp_path)
    done = _no_torch(f"from esper.cli import main\nassert main(['export', {str(run)!r}, '--format', 'parquet']) == 0")
    assert done.returncode == 0, done.stderr
    done = _no_torch("from esper.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
                     "    assert e.code == 0\nprint('ok')")
    assert done.returncode == 0 and "export" in done.stdout and done.stdout.endswith("ok\n"), done.stderr
    done = _no_torch("from esper.cli import main\nassert main(['bogus']) == 2")
    assert done.returncode == 0 and "invalid choice: 'bogus'" in done.stderr, done.stderr


# -- TensorBoard ------------------------------------------------------------------------------

def test_tensorboard_has_every_metric_the_viewers_offer_with_step_value_and_wall_time(tmp_path, capsys):
    run = single_run(tmp_path / "runs")
    rc, out, err = esper(capsys, "--tensorboard", run, tmp_path / "tb")
    assert rc == 0 and err == "" and "tensorboard --logdir" in out
    acc = accumulator(tmp_path / "tb")
    state = fold_tables(read_run(run))
    tags = acc.Tags()["scalars"]
    assert sorted(tags) == sorted(metrics(state))
    assert {"val_acc", "batch/loss", "train/grad_norm", "system/cpu_percent", "alpha/s0", "ppo_update/entropy",
            "reward_total", "reward_component/rent"} <= set(tags)
    # every point of every tag against the log: the event's step, value and wall time
    tables = read_run(run)
    checks = {"val_acc": ("epoch_completed", "val_acc"), "batch/loss": ("batch_metrics", "loss"),
              "system/rss_bytes": ("system", "rss_bytes"), "alpha/s0": ("alpha", "value"),
              "grad_ratio/s0": ("gradient_stats", "ratio"), "ppo_update/entropy": ("ppo_update", "entropy"),
              "reward_total": ("reward", "total")}
    for tag, (kind, column) in checks.items():
        rows = tables.rows(kind)
        want = [(r["step"], math.nan if r[column] is None else r[column], r["wall_time"].timestamp()) for r in rows]
        got = scalars(acc, tag)
        assert len(got) == len(want) and all(
            gs == ws and same(gv, wv) and abs(gw - ww) < 1e-6 for (gs, gv, gw), (ws, wv, ww) in zip(got, want)), tag
    grad = scalars(acc, "train/grad_norm")
    assert [s for s, _, _ in grad] == list(range(1, EPOCHS * STEPS + 1))
    assert [v for _, v, _ in grad][4:7][1:] == [math.inf, -math.inf] and math.isnan(grad[4][1])
    assert [v for _, v, _ in scalars(acc, "reward_component/rent")] == [np.float32(-0.1 * e) for e in (1, 2, 3)]
    assert [s for s, _, _ in scalars(acc, "reward_component/rent")] == [STEPS * e for e in (1, 2, 3)]


def test_tensorboard_text_holds_the_run_and_its_config(tmp_path, capsys):
    run = single_run(tmp_path / "runs")
    assert esper(capsys, "--tensorboard", run, tmp_path / "tb")[0] == 0
    (event,) = accumulator(tmp_path / "tb").Tensors("run/text_summary")
    text = event.tensor_proto.string_val[0].decode()
    assert event.wall_time == T0 and "**run**: single" in text and "**ended**: completed" in text
    config = json.loads("\n".join(line[4:] for line in text.splitlines() if line.startswith("    ")))
    assert config == {"lr": 0.1, "name": "export test", "layers": [1, 2]}


def test_tensorboard_writes_a_directory_per_rank(tmp_path, capsys):
    run = ddp_run(tmp_path / "runs")
    assert esper(capsys, "--tensorboard", run, tmp_path / "tb")[0] == 0
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["rank0", "rank1"]
    for rank in (0, 1):
        acc = accumulator(tmp_path / "tb" / f"rank{rank}")
        assert [(s, v) for s, v, _ in scalars(acc, "val_acc")] == [(STEPS * e, 40.0 + e + 10 * rank) for e in (1, 2, 3)]
        assert [w for _, _, w in scalars(acc, "val_acc")] == pytest.approx([T0 + 0.1 * rank + e for e in (1, 2, 3)])
        assert len(scalars(acc, "batch/loss")) == EPOCHS * STEPS and "host/grad_norm" in acc.Tags()["scalars"]


def test_tensorboard_puts_each_environment_of_a_ppo_run_in_its_own_directory(tmp_path, capsys):
    run = ppo_run(tmp_path / "runs")
    assert esper(capsys, "--tensorboard", run, tmp_path / "tb")[0] == 0
    root = accumulator(tmp_path / "tb")
    assert {"ppo_update/policy_loss", "ppo/episode_return", "reward_component/rent"} <= set(root.Tags()["scalars"])
    assert "val_acc" not in root.Tags()["scalars"]
    assert [(s, v) for s, v, _ in scalars(root, "ppo/episode_return")] == [(0, 1.0), (1, 2.0)]
    for env in (0, 1):
        acc = accumulator(tmp_path / "tb" / f"env{env}")
        assert sorted(acc.Tags()["scalars"]) == ["host_params", "reward_total", "total_params", "train_acc",
                                                 "train_loss", "val_acc", "val_loss"]
        assert [(s, v) for s, v, _ in scalars(acc, "val_acc")] == [(5, 10 * env + 1), (10, 10 * env + 2),
                                                                    (5, 10 * env + 2), (10, 10 * env + 3)]


def test_tensorboard_refuses_to_mix_with_old_event_files_unless_forced(tmp_path, capsys):
    run = single_run(tmp_path / "runs")
    assert esper(capsys, "--tensorboard", run, tmp_path / "tb")[0] == 0
    rc, _, err = esper(capsys, "--tensorboard", run, tmp_path / "tb")
    assert rc == 2 and "already holds TensorBoard event files" in err and "--force replaces them" in err
    assert esper(capsys, "--tensorboard", run, tmp_path / "tb", "--force")[0] == 0
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1
    assert len(scalars(accumulator(tmp_path / "tb"), "val_acc")) == EPOCHS


def test_tensorboard_from_a_format_1_run_with_two_ranks(tmp_path, capsys):
    run = tmp_path / "v1-ranks"
    shutil.copytree(V1 / "v1-ranks", run)
    rc, out, err = esper(capsys, "--tensorboard", run, tmp_path / "tb")
    assert rc == 0 and err == ""
    tables = read_run(run)
    for rank in (0, 1):
        acc = accumulator(tmp_path / "tb" / f"rank{rank}")
        assert sorted(acc.Tags()["scalars"]) == sorted(metrics(fold_tables(tables, rank=rank)))
        assert acc.Tags()["scalars"], "the fixture has scalars"


def test_tensorboard_missing_is_one_line_telling_how_to_install(tmp_path, capsys, monkeypatch):
    run = single_run(tmp_path / "runs")
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard raises ImportError
    rc, out, err = esper(capsys, "--tensorboard", run, tmp_path / "tb")
    assert rc == 2 and out == ""
    assert err == "esper: error: --tensorboard needs the tensorboard package (pip install tensorboard)\n"
    assert not (tmp_path / "tb").exists()
