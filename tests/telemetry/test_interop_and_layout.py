"""The log is plain Arrow: polars, DuckDB and pandas read any one kind as a flat table with no
Esper code, for one rank or many; the viewers' packages stay free of torch and esper; run
directories behave."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from telemetry_schema import events as ev
from telemetry_schema.reader import RunFollower, stream_files
from telemetry_schema.rundir import create_run, new_run_id, read_manifest, read_run, validate_run_id
from telemetry_schema.synth import SynthConfig, generate
from telemetry_schema.writer import WriterConfig


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("runs"), SynthConfig(events=3000, seed=3, run_id="interop"))


def without_esper(code: str) -> list[str]:
    code += '\nassert "telemetry_schema" not in sys.modules and "esper" not in sys.modules\n'
    return subprocess.run([sys.executable, "-c", "import sys\n" + code], capture_output=True, text=True,
                          check=True).stdout.split()


def test_polars_reads_a_kind_as_a_flat_table_in_one_line(synth_run):
    out = without_esper(f"""
import polars as pl
gates = pl.read_ipc_stream({str(synth_run / 'events' / 'gate_evaluated.rank0.arrows')!r})
print(gates.height, gates["passed"].sum(), gates["gate"][0], gates["checks_failed"].list.len().sum())
""")
    gates = read_run(synth_run).rows("gate_evaluated")
    assert int(out[0]) == len(gates) and int(out[1]) == sum(g["passed"] for g in gates)
    assert out[2] == gates[0]["gate"] and int(out[3]) == sum(len(g["checks_failed"]) for g in gates)


def test_duckdb_and_pandas_read_a_kind_without_esper(synth_run):
    out = without_esper(f"""
import duckdb, pyarrow as pa, pandas as pd
stages = pa.ipc.open_stream({str(synth_run / 'events' / 'stage_changed.rank0.arrows')!r}).read_all()
(n, first), = duckdb.sql("select count(*), arg_min(to_stage, seq) from stages").fetchall()
df = pa.ipc.open_stream({str(synth_run / 'events' / 'epoch_completed.rank0.arrows')!r}).read_pandas()
print(n, first, len(df), df["epoch"].dtype, df["val_acc"].dtype)
""")
    got = read_run(synth_run)
    assert int(out[0]) == len(got.rows("stage_changed")) and out[1] == "GERMINATED"
    assert int(out[2]) == len(got.rows("epoch_completed"))
    assert out[3:] == ["int32", "float64"]  # integers stay integers


def test_many_ranks_read_as_one_table_in_one_line(tmp_path):
    for rank in (0, 1):
        started = ev.RunStarted(run_id="ddp", task="t", topology="cnn", host_params=1, world_size=2)
        with create_run(tmp_path, started, rank=rank, config=WriterConfig(heartbeat_s=0)) as rw:
            for i in range(3):
                rw.writer.scalar("loss", float(rank * 10 + i))
    out = without_esper(f"""
import glob, polars as pl
df = pl.concat(map(pl.read_ipc_stream, sorted(glob.glob({str(tmp_path / 'ddp/events/scalar.rank*.arrows')!r}))))
print(df.height, sorted(df["rank"].to_list()), sorted(df["value"].to_list()))
""")
    assert out[0] == "6" and "".join(out[1:]).startswith("[0,0,0,1,1,1][0.0,1.0,2.0,10.0,11.0,12.0]")


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
    assert RunFollower(tmp_path / "exp-1").poll().kinds == ["run_started"]
    rw.writer.scalar("x", 1.0)
    rw.close("interrupted", "KeyboardInterrupt")
    manifest = read_manifest(tmp_path / "exp-1")
    assert manifest["status"] == "interrupted" and manifest["events"] == 3
    assert [p.name for p in stream_files(tmp_path / "exp-1")] == [
        "run_finished.rank0.arrows", "run_started.rank0.arrows", "scalar.rank0.arrows"]
    with pytest.raises(FileExistsError):  # never overwrite a written log
        create_run(tmp_path, started)
    assert read_run(tmp_path / "exp-1").kinds == ["run_finished", "run_started", "scalar"]


def test_rank_streams_are_merged_in_time_order(tmp_path):
    for rank, offset in ((0, 1.0), (1, 1.5)):  # rank 1's events fall half a second after rank 0's
        now = {"t": 0.0}
        started = ev.RunStarted(run_id="ddp", task="t", topology="cnn", host_params=1, world_size=2)
        rw = create_run(tmp_path, started, rank=rank, config=WriterConfig(heartbeat_s=0),
                        clock=lambda: now["t"], wall_clock=lambda: 1000.0, background=False)
        for i in range(3):
            now["t"] = offset + i
            rw.writer.scalar("loss", float(rank * 10 + i))
        rw.close()
    merged = read_run(tmp_path / "ddp").rows("scalar")
    assert [r["value"] for r in merged] == [0.0, 10.0, 1.0, 11.0, 2.0, 12.0]


@pytest.mark.parametrize("bad", ["../etc", "a/b", "..", "", ".hidden", "x" * 200, "a\\b", None, 3])
def test_run_ids_that_could_escape_are_rejected(bad):
    with pytest.raises(ValueError):
        validate_run_id(bad)


def test_new_run_id_is_safe():
    rid = new_run_id("my run/../x", clock=lambda: 0.0)
    assert validate_run_id(rid) == rid and "/" not in rid


@pytest.mark.parametrize("content", ["null", "[1, 2]", "\"text\"", "{not json", ""])
def test_a_manifest_of_any_shape_reads_as_a_dict(tmp_path, content):
    (tmp_path / "run.json").write_text(content)
    assert read_manifest(tmp_path) == {}


def test_readme_event_reference_is_current():
    from telemetry_schema.docs import README, updated_readme

    text = README.read_text()
    assert updated_readme(text) == text, "run: python -m telemetry_schema.docs --write"
    for cls in ev.EVENT_TYPES:
        assert f"### `{cls.KIND}`" in text
