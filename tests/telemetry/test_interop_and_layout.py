"""The log is plain Arrow (polars, DuckDB, pandas read it with no Esper code); the viewers'
packages stay free of torch and esper; run directories behave."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from telemetry_schema import events as ev
from telemetry_schema.rundir import (RunFollower, create_run, new_run_id, read_manifest, stream_paths,
                                     validate_run_id)
from telemetry_schema.synth import SynthConfig, generate


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("runs"), SynthConfig(events=3000, seed=3, run_id="interop"))


def test_polars_reads_the_log_without_esper(synth_run):
    code = f"""
import sys, polars as pl
df = pl.read_ipc_stream({str(synth_run / 'events.arrows')!r})
assert "telemetry_schema" not in sys.modules and "esper" not in sys.modules
gates = df.filter(pl.col("kind") == "gate_evaluated").select(
    pl.col("slot"), pl.col("gate_evaluated").struct.field("gate"), pl.col("gate_evaluated").struct.field("passed"))
print(df.height, gates.height, gates["passed"].sum(), df["kind"][0], df["kind"][-1])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from telemetry_schema.reader import read_log

    table = read_log(synth_run / "events.arrows").table
    gates = [r for r in table.to_pylist() if r["kind"] == "gate_evaluated"]
    assert int(out[0]) == table.num_rows
    assert int(out[1]) == len(gates)
    assert int(out[2]) == sum(g["gate_evaluated"]["passed"] for g in gates)
    assert out[3:] == ["run_started", "run_finished"]


def test_duckdb_and_pandas_read_the_log_without_esper(synth_run):
    code = f"""
import sys, duckdb, pyarrow as pa
tbl = pa.ipc.open_stream({str(synth_run / 'events.arrows')!r}).read_all()
n = duckdb.sql("select count(*) from tbl where kind = 'stage_changed'").fetchall()[0][0]
stages = duckdb.sql("select stage_changed.to_stage from tbl where kind = 'stage_changed' order by seq").fetchall()
df = tbl.to_pandas()
assert "telemetry_schema" not in sys.modules and "esper" not in sys.modules
print(n, stages[0][0], int((df["kind"] == "epoch_completed").sum()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from telemetry_schema.fold import fold_table
    from telemetry_schema.reader import read_log

    state = fold_table(read_log(synth_run / "events.arrows").table)
    assert int(out[0]) == state.count("stage_changed")
    assert out[1] == "GERMINATED"
    assert int(out[2]) == len(state.epochs)


def test_viewer_packages_import_neither_torch_nor_esper():
    code = """
import sys
import telemetry_schema, telemetry_schema.fold, telemetry_schema.replay, telemetry_schema.synth
import tui, dashboard
for mod in ("tui.app", "tui.cli", "dashboard.app", "dashboard.cli"):
    try:
        __import__(mod)
    except ModuleNotFoundError as exc:
        if exc.name != mod:
            raise
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "esper"))
print(",".join(bad) or "clean")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "clean"


def test_run_directory_manifest_and_streams(tmp_path):
    started = ev.RunStarted(run_id="exp-1", task="t", topology="cnn", host_params=10,
                            config_json=json.dumps({"lr": 0.1}))
    rw = create_run(tmp_path, started)
    manifest = read_manifest(tmp_path / "exp-1")
    assert manifest["status"] == "running" and manifest["config"] == {"lr": 0.1}
    # run_started is on disk at once (not after the writer's first time-based flush)
    assert RunFollower(tmp_path / "exp-1").poll().column("kind").to_pylist() == ["run_started"]
    rw.writer.scalar("x", 1.0)
    rw.close("interrupted", "KeyboardInterrupt")
    manifest = read_manifest(tmp_path / "exp-1")
    assert manifest["status"] == "interrupted" and manifest["events"] == 3
    assert stream_paths(tmp_path / "exp-1") == [tmp_path / "exp-1" / "events.arrows"]
    with pytest.raises(FileExistsError):  # never overwrite a written log
        create_run(tmp_path, started)
    table = RunFollower(tmp_path / "exp-1").poll()
    assert table.column("kind").to_pylist() == ["run_started", "scalar", "run_finished"]


def test_rank_streams_are_merged_in_time_order(tmp_path):
    clock_a = iter([0.0] + [1.0 + i for i in range(100)]).__next__
    clock_b = iter([0.0] + [1.5 + i for i in range(100)]).__next__
    for rank, clock in ((0, clock_a), (1, clock_b)):
        started = ev.RunStarted(run_id="ddp", task="t", topology="cnn", host_params=1, world_size=2)
        from telemetry_schema.writer import WriterConfig

        rw = create_run(tmp_path, started, rank=rank, config=WriterConfig(heartbeat_s=0),
                        clock=clock, wall_clock=lambda: 1000.0)
        for i in range(3):
            rw.writer.scalar("loss", float(rank * 10 + i))
        rw.close()
    paths = stream_paths(tmp_path / "ddp")
    assert [p.name for p in paths] == ["events.rank0.arrows", "events.rank1.arrows"]
    merged = RunFollower(tmp_path / "ddp").poll()
    ranks = merged.column("rank").to_pylist()
    values = [r["scalar"]["value"] if r["scalar"] else None for r in merged.to_pylist()]
    assert ranks[:2] == [0, 1] and sorted(ranks) == [0] * 5 + [1] * 5
    scalars = [v for v in values if v is not None]
    assert scalars == [0.0, 10.0, 1.0, 11.0, 2.0, 12.0]


@pytest.mark.parametrize("bad", ["../etc", "a/b", "..", "", ".hidden", "x" * 200, "a\\b"])
def test_run_ids_that_could_escape_are_rejected(bad):
    with pytest.raises(ValueError):
        validate_run_id(bad)


def test_new_run_id_is_safe():
    rid = new_run_id("my run/../x", clock=lambda: 0.0)
    assert validate_run_id(rid) == rid and "/" not in rid


def test_readme_event_reference_is_current():
    from telemetry_schema.docs import README, updated_readme

    text = README.read_text()
    assert updated_readme(text) == text, "run: python -m telemetry_schema.docs --write"
    for cls in ev.EVENT_TYPES:
        assert f"### `{cls.KIND}`" in text
