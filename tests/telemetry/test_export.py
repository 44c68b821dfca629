"""telemetry_schema.export: every event kind out as CSV, Parquet and JSON Lines, read back
with polars and compared value by value with ``read_run``; ranks merged by time; torn and
corrupt logs exported up to their last whole batch with a warning; format 1 logs; bad input
refused in one line."""

from __future__ import annotations

import json
import math
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from telemetry_schema.export import ExportError, export_run, parse_kinds
from telemetry_schema.rundir import read_run
from telemetry_schema.schema import kind_schema
from tests.telemetry.export_runs import EPOCHS, STEPS, corrupt, ddp_run, single_run, stream, tear

V1 = Path(__file__).parent / "data" / "v1"


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    return single_run(tmp_path_factory.mktemp("runs"))


# -- reading each format back into comparable rows -----------------------------------------

def _fields(kind: str, test) -> set[str]:
    return {f.name for f in kind_schema(kind) if test(f.type)}


def _maps(kind):
    return _fields(kind, pa.types.is_map)


def _nested(kind):
    return _fields(kind, pa.types.is_nested)


def canon(value, json_mode: bool = False):
    """A value comparable with ==: NaN as a token; JSON's nulls for non-finite floats."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if json_mode else ("NaN" if math.isnan(value) else value)
    if isinstance(value, list):
        return [canon(v, json_mode) for v in value]
    if isinstance(value, dict):
        return {k: canon(v, json_mode) for k, v in value.items()}
    return value


def expected(run: Path, kind: str, json_mode: bool = False) -> list[dict]:
    """``read_run``'s rows, every rank merged by (wall time, rank, seq)."""
    rows = sorted(read_run(run).rows(kind), key=lambda r: (r["wall_time"], r["rank"], r["seq"]))
    for row in rows:
        for name in _maps(kind):
            row[name] = None if row[name] is None else dict(row[name])
    return [canon(r, json_mode) for r in rows]


def expected_csv(run: Path, kind: str) -> list[dict]:
    """As ``expected``, lists and maps being JSON text (no NaN in JSON)."""
    rows = expected(run, kind)
    for row, raw in zip(rows, expected(run, kind, json_mode=True)):
        row.update({name: raw[name] for name in _nested(kind)})
    return rows


def from_parquet(path: Path, kind: str) -> list[dict]:
    rows = pl.read_parquet(path).to_dicts()
    for row in rows:
        for name in _maps(kind):
            value = row[name]  # polars 2 reads a map as a dict; older ones as key/value structs
            row[name] = value if value is None or isinstance(value, dict) else {e["key"]: e["value"] for e in value}
    return [canon(r) for r in rows]


def from_csv(path: Path, kind: str) -> list[dict]:
    # CSV holds no types: text that looks like a number ('inf', a governor panic's reason) is
    # read as one unless the reader is told the column is text
    text = {name: pl.String for name in _fields(kind, pa.types.is_string)}
    rows = pl.read_csv(path, try_parse_dates=True, schema_overrides=text).to_dicts()
    for row in rows:
        for name in _nested(kind):
            row[name] = None if row[name] is None else json.loads(row[name])
    return [canon(r) for r in rows]


def from_jsonl(path: Path, kind: str) -> list[dict]:
    if not path.stat().st_size:
        return []
    rows = pl.read_ndjson(path).to_dicts()
    for row in rows:
        row["wall_time"] = datetime.fromisoformat(row["wall_time"])
        for name in _maps(kind):  # polars reads an object as a struct of every key seen
            row[name] = None if row[name] is None else {k: v for k, v in row[name].items() if v is not None}
    return [canon(r, json_mode=True) for r in rows]


def expected_jsonl(run: Path, kind: str) -> list[dict]:
    rows = expected(run, kind, json_mode=True)
    for row in rows:
        for name in _maps(kind):
            row[name] = None if row[name] is None else {k: v for k, v in row[name].items() if v is not None}
    return rows


READERS = {"parquet": (from_parquet, expected), "csv": (from_csv, expected_csv), "jsonl": (from_jsonl, expected_jsonl)}


def assert_same(run: Path, out: Path, fmt: str, kinds: list[str]) -> None:
    read, want = READERS[fmt]
    for kind in kinds:
        got = read(out / f"{kind}.{fmt}", kind)
        assert got == want(run, kind), (fmt, kind)


# -- values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_every_kind_reads_back_with_polars_as_read_run_gives_it(single, tmp_path, fmt):
    done = export_run(single, fmt, tmp_path / fmt)
    kinds = read_run(single).kinds
    assert sorted(done.files) == kinds and len(kinds) == 14 and done.warnings == []
    assert {p.name for p in (tmp_path / fmt).iterdir()} == {f"{k}.{fmt}" for k in kinds}
    assert done.rows["batch_metrics"] == EPOCHS * STEPS and done.rows["epoch_completed"] == EPOCHS
    assert_same(single, tmp_path / fmt, fmt, kinds)


def test_parquet_keeps_the_arrow_types(single, tmp_path):
    export_run(single, "parquet", tmp_path)
    for kind in read_run(single).kinds:
        schema = pq.read_schema(tmp_path / f"{kind}.parquet")
        assert schema.equals(kind_schema(kind), check_metadata=False), kind
    df = pl.read_parquet(tmp_path / "epoch_completed.parquet")
    assert df.schema["wall_time"] == pl.Datetime("us", "UTC") and df.schema["per_class_acc"] == pl.List(pl.Float64)


def test_csv_writes_iso_times_json_lists_and_floats_readers_take_as_floats(single, tmp_path):
    export_run(single, "csv", tmp_path)
    lines = (tmp_path / "scalar.csv").read_text().splitlines()
    assert re.fullmatch(r'\d+,"2023-11-14T22:13:20\.250000Z",0,.*', lines[1])
    values = [line.rsplit(",", 1)[1] for line in lines[1:]]
    assert values[4:7] == ['"NaN"', '"inf"', '"-inf"']
    df = pl.read_csv(tmp_path / "scalar.csv", try_parse_dates=True)
    assert df.schema["value"] == pl.Float64 and df.schema["wall_time"] == pl.Datetime("us", "UTC")
    epochs = pl.read_csv(tmp_path / "epoch_completed.csv")
    assert epochs.schema["val_acc"] == pl.Float64 and epochs.schema["total_params"] == pl.Int64
    batches = pl.read_csv(tmp_path / "batch_metrics.csv")  # every value whole: 101.0, 102.0, ...
    assert batches.schema["samples_per_s"] == pl.Float64 and batches["samples_per_s"][0] == 101.0
    assert json.loads(epochs["per_class_acc"][0]) == [10.0, None]  # JSON has no NaN
    decisions = pl.read_csv(tmp_path / "controller_decision.csv")
    assert [json.loads(v) for v in decisions["action_probs"]] == [
        {"WAIT": 0.75, "GERMINATE": 0.25}, {"WAIT": 0.75, "GERMINATE": None}, {"WAIT": 0.75, "GERMINATE": 0.25}]
    log = pl.read_csv(tmp_path / "log.csv")
    assert log["text"][0] == 'epoch 1, "done"\nnext line ünïcode'


def test_jsonl_is_one_strict_json_object_per_event(single, tmp_path):
    export_run(single, "jsonl", tmp_path)
    lines = (tmp_path / "controller_decision.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}")) for line in lines]
    assert [r["action_probs"] for r in rows] == [{"WAIT": 0.75, "GERMINATE": 0.25}, {"WAIT": 0.75, "GERMINATE": None},
                                                  {"WAIT": 0.75, "GERMINATE": 0.25}]
    assert rows[0]["wall_time"] == "2023-11-14T22:13:21.000000Z" and rows[0]["value"] is None
    (panic,) = [json.loads(line) for line in (tmp_path / "governor_panic.jsonl").read_text().splitlines()]
    assert panic["loss"] is None and panic["threshold"] is None and panic["reason"] == "inf"


# -- ranks, torn and corrupt logs, format 1 ---------------------------------------------------

@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_a_distributed_run_is_one_table_per_kind_merged_by_time(tmp_path, fmt):
    run = ddp_run(tmp_path / "runs")
    done = export_run(run, fmt, tmp_path / "out")
    assert done.rows == {"batch_metrics": 24, "epoch_completed": 6, "run_finished": 2, "run_started": 2, "scalar": 6}
    assert_same(run, tmp_path / "out", fmt, read_run(run).kinds)
    read = READERS[fmt][0]
    epochs = read(tmp_path / "out" / f"epoch_completed.{fmt}", "epoch_completed")
    assert [(r["rank"], r["val_acc"]) for r in epochs] == [(0, 41.0), (1, 51.0), (0, 42.0), (1, 52.0), (0, 43.0), (1, 53.0)]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_a_torn_tail_is_exported_up_to_the_last_whole_batch_with_a_warning(tmp_path, fmt):
    run = single_run(tmp_path / "runs")
    tear(stream(run, "epoch_completed"))
    done = export_run(run, fmt, tmp_path / "out")
    assert done.rows["epoch_completed"] == EPOCHS - 1 and done.rows["batch_metrics"] == EPOCHS * STEPS
    (warning,) = done.warnings
    assert "10 bytes" in warning and "torn tail" in warning and "\n" not in warning
    assert_same(run, tmp_path / "out", fmt, ["epoch_completed", "batch_metrics"])


def test_a_corrupt_stream_is_exported_up_to_its_last_whole_batch_with_a_warning(tmp_path):
    run = single_run(tmp_path / "runs")
    corrupt(stream(run, "batch_metrics"))
    done = export_run(run, "parquet", tmp_path / "out")
    assert done.rows["batch_metrics"] == (EPOCHS - 1) * STEPS and done.rows["epoch_completed"] == EPOCHS
    (warning,) = done.warnings
    assert re.fullmatch(r".*batch_metrics\.rank0\.arrows: corrupt at byte \d+ \(checksum mismatch\): "
                        r"exported up to its last whole batch", warning)
    assert_same(run, tmp_path / "out", "parquet", ["batch_metrics"])


def interleave_v1(run: Path) -> None:
    """Move rank 1 of the format 1 fixture back in time so that its events fall between rank
    0's (in the fixture, rank 1 starts after rank 0 has finished)."""
    path = run / "events.rank1.arrows"
    with pa.ipc.open_stream(path) as reader:
        table = reader.read_all()
    with pa.ipc.open_stream(run / "events.rank0.arrows") as reader:
        first0 = reader.read_all().filter(pc.equal(pc.field("seq"), 1)).column("wall_time")[0].value
    first1 = table.filter(pc.equal(pc.field("seq"), 1)).column("wall_time")[0].value
    walls = pc.cast(pc.subtract(pc.cast(table.column("wall_time"), pa.int64()), first1 - first0 - 1), pa.int64())
    table = table.set_column(1, "wall_time", walls.cast(table.schema.field("wall_time").type))
    with pa.ipc.new_stream(path, table.schema) as writer:
        writer.write_table(table)


@pytest.mark.parametrize("name", ["v1-synth", "v1-ranks"])
def test_format_1_runs_export_like_format_2(tmp_path, name):
    run = tmp_path / name
    shutil.copytree(V1 / name, run)
    done = export_run(run, "csv")
    assert done.out == run / "export" / "csv" and done.rows and done.warnings == []
    assert_same(run, done.out, "csv", read_run(run).kinds)


def test_format_1_ranks_are_merged_by_time(tmp_path):
    run = tmp_path / "v1-ranks"
    shutil.copytree(V1 / "v1-ranks", run)
    interleave_v1(run)
    assert [r["rank"] for r in read_run(run).rows("scalar")] == [0, 0, 0, 1, 1, 1]  # format 1: rank after rank
    done = export_run(run, "csv")
    rows = from_csv(done.out / "scalar.csv", "scalar")
    assert [(r["rank"], r["seq"]) for r in rows] == [(0, 1), (1, 1), (0, 3), (0, 5), (1, 3), (1, 5)]
    assert [r["wall_time"] for r in rows] == sorted(r["wall_time"] for r in rows)


# -- choosing kinds, where files go, and bad input --------------------------------------------

def test_kinds_asked_for_only_and_a_kind_without_events_is_an_empty_table(single, tmp_path):
    done = export_run(single, "csv", tmp_path, kinds=parse_kinds("epoch_completed, reward,stage_changed"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_completed.csv", "reward.csv", "stage_changed.csv"]
    assert done.rows == {"epoch_completed": 3, "reward": 3, "stage_changed": 0}
    assert done.warnings == ["no stage_changed events in this run: stage_changed.csv has no rows"]
    assert (tmp_path / "stage_changed.csv").read_text().startswith('"seq","wall_time","rank","env"')


def test_the_default_out_is_inside_the_run_and_existing_files_are_kept_unless_forced(tmp_path):
    run = single_run(tmp_path)
    done = export_run(run, "jsonl")
    assert done.out == run / "export" / "jsonl"
    (done.out / "scalar.jsonl").write_text("mine\n")
    with pytest.raises(ExportError, match=r"scalar\.jsonl exists: --force overwrites"):
        export_run(run, "jsonl", kinds=["scalar"])
    with pytest.raises(ExportError, match=r"exists \(and \d+ more\): --force overwrites"):
        export_run(run, "jsonl")
    assert (done.out / "scalar.jsonl").read_text() == "mine\n"
    export_run(run, "jsonl", force=True)
    assert len((done.out / "scalar.jsonl").read_text().splitlines()) == EPOCHS * STEPS
    assert not [p for p in done.out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("case, message", [
    ("missing", r"missing: no such run directory"),
    ("empty", r"empty: no event log in this directory"),
    ("file", r"file: not a run directory \(a file"),
])
def test_a_path_that_is_not_a_run_is_one_line(tmp_path, case, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match=message) as err:
        export_run(tmp_path / case, "csv", tmp_path / "out")
    assert "\n" not in str(err.value)


def test_bad_format_kind_and_out_are_one_line(single, tmp_path):
    with pytest.raises(ExportError, match=r"format 'xlsx': expected one of csv, parquet, jsonl"):
        export_run(single, "xlsx", tmp_path)
    with pytest.raises(ExportError, match=r"--kinds: no event kind 'epochs' \(kinds: run_started, "):
        parse_kinds("epoch_completed,epochs")
    with pytest.raises(ExportError, match=r"--kinds: no kind named"):
        parse_kinds(" , ")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ExportError, match=r"cannot write to .*a-file/out: Not a directory"):
        export_run(single, "csv", tmp_path / "a-file" / "out")
    with pytest.raises(ExportError, match=r"cannot write to .*a-file: File exists"):
        export_run(single, "csv", tmp_path / "a-file")


def test_times_and_rows_match_the_clock_that_wrote_them(single, tmp_path):
    """The export's wall times are the writer's: 0.25 s per step from the run's start."""
    export_run(single, "parquet", tmp_path, kinds=["batch_metrics"])
    times = pl.read_parquet(tmp_path / "batch_metrics.parquet")["wall_time"].to_list()
    start = datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert [(t - start).total_seconds() for t in times] == [0.25 * i for i in range(1, EPOCHS * STEPS + 1)]
