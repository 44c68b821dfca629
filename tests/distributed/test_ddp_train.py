"""Data-parallel `esper train`: 2 CPU processes on gloo, one run directory, one stream per rank."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from esper.cli import CliError, parse_heuristic, strip_nproc
from esper.distributed import ShardedLoader
from telemetry_schema.fold import fold_tables
from telemetry_schema.reader import stream_files
from telemetry_schema.rundir import read_run
from tests.distributed.test_collectives import free_port

# the plateau rule with thresholds low enough that the heuristic germinates one seed, into the
# deepest slot, after epoch 2 of 3
EAGER = ("trigger=plateau,max_live_seeds=1,slot_preference=last,max_flops_ratio=0,grow_until=1,"
         "min_epoch=1,stable_window=1,stable_rel_change=10,plateau_window=1,plateau_pp=1000")
SMALL = ["--train-size", "512", "--val-size", "256", "--batch-size", "64", "--heuristic", EAGER]


def _env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("ESPER_TEST_DIE_AT", None)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _run_dir(runs: Path) -> Path:
    dirs = [p for p in runs.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs  # the run id is agreed: both ranks write into one directory
    return dirs[0]


def _finished(tables) -> dict[int, dict]:
    return {r["rank"]: {"status": r["status"], "reason": r["reason"]} for r in tables.rows("run_finished")}


@pytest.mark.parametrize("epochs,extra,stages", [
    (3, [], ["GERMINATED", "TRAINING"]),
    # permissive gates: the seed goes on through BLENDING and HOLDING (DDP re-wrapped at each move)
    (10, ["--gates", "permissive"], ["GERMINATED", "TRAINING", "BLENDING", "HOLDING"]),
])
def test_two_rank_run_completes_with_identical_lifecycle_and_weights(tmp_path, epochs, extra, stages):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "esper", "train", "--nproc", "2", "--epochs", str(epochs), "--runs-dir",
           str(runs), "--run-name", "ddp", "--dist-timeout", "30", *SMALL, *extra]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)  # a hang guard only
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    run_dir = _run_dir(runs)
    assert {p.name.split(".")[1] for p in stream_files(run_dir)} == {"rank0", "rank1"}

    table = read_run(run_dir)
    assert _finished(table) == {0: {"status": "completed", "reason": ""}, 1: {"status": "completed", "reason": ""}}
    state = fold_tables(table)
    assert state.ranks.divergence is None
    moves = state.ranks.moves
    assert moves[0] == moves[1]
    assert [stage for _, slot, stage in moves[0] if slot == "block2"][:len(stages)] == stages, moves[0]

    # every rank logged the same metrics (averaged train loss, identical validation)
    per_rank: dict[int, list] = {0: [], 1: []}
    for e in table.rows("epoch_completed"):
        per_rank[e["rank"]].append((e["train_loss"], e["val_loss"], e["val_acc"], e["total_params"]))
    assert len(per_rank[0]) == epochs and per_rank[0] == per_rank[1]

    # weights, seed included, and BatchNorm statistics identical on both ranks at the end
    a = torch.load(run_dir / "model.pt")
    b = torch.load(run_dir / "model.rank1.pt")
    assert a.keys() == b.keys()
    if moves[0][-1][2] not in ("PRUNED", "EMBARGOED", "DORMANT"):  # the seed is still in the model
        assert any(k.startswith("slots.block2.seed") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_dead_rank_fails_the_survivor_cleanly_within_the_timeout(tmp_path):
    runs = tmp_path / "runs"
    port = free_port()
    timeout = 10
    procs = []
    for rank in range(2):  # launched by hand: torchrun would SIGTERM the survivor at once
        env = dict(_env(), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), ESPER_TEST_DIE_AT="1:2")
        cmd = [sys.executable, "-m", "esper", "train", "--epochs", "3", "--runs-dir", str(runs),
               "--run-name", "dead", "--dist-timeout", str(timeout), *SMALL]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    out0, err0 = procs[0].communicate(timeout=300)  # the survivor fails (a hang would end here)
    procs[1].communicate(timeout=30)
    assert procs[1].returncode == 17  # the test hook's os._exit
    assert procs[0].returncode == 3, (out0[-2000:], err0[-2000:])
    assert "rank 0: distributed run failed" in err0

    table = read_run(_run_dir(runs))
    finished = _finished(table)
    assert 1 not in finished  # the dead rank never closed its stream
    assert finished[0]["status"] == "failed"
    assert "rank 1" in finished[0]["reason"], finished[0]["reason"]
    epochs0 = [e for e in table.rows("epoch_completed") if e["rank"] == 0]
    assert len(epochs0) == 1  # epoch 1 completed, epoch 2 never did


def test_a_hung_rank_fails_the_survivor_after_the_dist_timeout(tmp_path):
    """Rank 1 stops answering (sleeps) at epoch 2: rank 0's all-reduce times out after --dist-timeout."""
    runs = tmp_path / "runs"
    port, timeout = free_port(), 5
    procs = []
    for rank in range(2):
        env = dict(_env(), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), ESPER_TEST_HANG_AT="1:2")
        cmd = [sys.executable, "-m", "esper", "train", "--epochs", "3", "--runs-dir", str(runs),
               "--run-name", "hung", "--dist-timeout", str(timeout), *SMALL]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        out0, err0 = procs[0].communicate(timeout=90)
    finally:
        procs[1].kill()
        procs[1].communicate(timeout=30)
    assert procs[0].returncode == 3, (out0[-2000:], err0[-2000:])
    finished = _finished(read_run(_run_dir(runs)))
    assert finished[0]["status"] == "failed" and "rank 1" in finished[0]["reason"], finished


def test_under_torchrun_a_dead_rank_fails_the_run(tmp_path):
    """torchrun itself: rank 1 dies at epoch 2; rank 0's stream closes 'failed', the launch exits non-zero."""
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "esper", "train", "--nproc", "2", "--epochs", "3", "--runs-dir", str(runs),
           "--run-name", "dead", "--dist-timeout", "10", *SMALL]
    proc = subprocess.run(cmd, env=dict(_env(), ESPER_TEST_DIE_AT="1:2"), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    finished = _finished(read_run(_run_dir(runs)))
    assert len(finished) and finished[0]["status"] == "failed" and "rank 1" in finished[0]["reason"], \
        (finished, proc.stderr[-3000:])


def test_sharded_loader_gives_disjoint_equal_shards():
    batches = list(range(7))
    shards = [list(ShardedLoader(batches, r, 2)) for r in range(2)]
    assert shards == [[0, 2, 4], [1, 3, 5]]
    assert len(ShardedLoader(batches, 0, 2)) == 3
    with pytest.raises(ValueError):
        ShardedLoader([0], 0, 2)


def test_cli_helpers():
    assert strip_nproc(["train", "--nproc", "2", "--epochs", "3", "--nproc=4"]) == ["train", "--epochs", "3"]
    cfg = parse_heuristic("min_epoch=1,plateau_pp=1000")
    assert cfg.min_epoch == 1 and cfg.plateau_pp == 1000.0
    with pytest.raises(CliError):
        parse_heuristic("nope=1")
