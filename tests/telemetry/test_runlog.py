"""read_run: a run read back as one flat table per kind, ranks merged."""

from __future__ import annotations

import pytest

from telemetry_schema import LogError, read_run
from telemetry_schema import events as ev
from telemetry_schema.rundir import create_run


def started(world_size=1):
    return ev.RunStarted(run_id="r", task="t", topology="cnn", host_params=10, slot_ids=["a"],
                         world_size=world_size)


def test_rows_are_flat_with_envelope_and_payload(tmp_path):
    with create_run(tmp_path, started()) as run:
        run.writer.epoch = 3
        run.writer.scalar("train/loss", 0.5, step=7)
        run.writer.emit(ev.StageChanged(from_stage="DORMANT", to_stage="GERMINATED"), slot="a", seed="s1")
    log = read_run(tmp_path / "r")
    (scalar,) = log.rows("scalar")
    assert (scalar["name"], scalar["value"], scalar["step"], scalar["epoch"]) == ("train/loss", 0.5, 7, 3)
    (change,) = log.rows("stage_changed")
    assert (change["slot"], change["seed"], change["to_stage"]) == ("a", "s1", "GERMINATED")
    assert "kind" not in log.table("stage_changed").column_names
    assert log.rows("governor_panic") == []
    assert {"run_started", "scalar", "stage_changed", "run_finished"} <= set(log.kinds)


def test_ranks_are_merged(tmp_path):
    for rank in (0, 1):
        with create_run(tmp_path, started(world_size=2), rank=rank) as run:
            run.writer.scalar("x", float(rank))
    log = read_run(tmp_path / "r")
    assert sorted((r["rank"], r["value"]) for r in log.rows("scalar")) == [(0, 0.0), (1, 1.0)]


def test_unknown_kind_and_missing_run(tmp_path):
    with create_run(tmp_path, started()):
        pass
    with pytest.raises(KeyError):
        read_run(tmp_path / "r").table("no_such_kind")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LogError):
        read_run(tmp_path / "empty")
