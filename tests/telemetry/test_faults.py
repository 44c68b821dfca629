"""The reader survives torn tails, corruption, killed writers and bad files; the follower
follows; a full disk leaves the log closed at its last whole batch."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pytest

from telemetry_schema import events as ev
from telemetry_schema.codec import BatchEncoder
from telemetry_schema.fold import fold_tables
from telemetry_schema.reader import LogError, RunFollower, StreamFollower, read_memory
from telemetry_schema.rundir import read_run
from telemetry_schema.schema import KIND_KEY, VERSION_KEY, kind_schema
from telemetry_schema.sinks import DirectorySink, MemorySink, TelemetryError
from telemetry_schema.writer import EventWriter, WriterConfig


class StepClock:
    """A deterministic clock: every reading is 1 ms after the last (same bytes every run)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def writer(sink, **cfg) -> EventWriter:
    clock = StepClock()
    return EventWriter(sink, config=WriterConfig(heartbeat_s=0, flush_interval=3600, **cfg),
                       clock=clock, wall_clock=clock, background=False)


def gate_stream(batches: int = 4, per_batch: int = 3) -> tuple[bytes, list[int], list[list[dict]]]:
    """One kind's stream of several batches: its bytes, the offset where each batch ends, and
    each batch's rows."""
    sink = MemorySink()
    w = writer(sink)
    ends, rows = [], []
    for b in range(batches):
        for i in range(per_batch):
            w.emit(ev.GateEvaluated(gate=f"G{i}", target_stage="BLENDING", passed=i % 2 == 0,
                                    checks_failed=[f"check_{b}_{i}"]), slot="s0", seed=f"x{b}")
        w.flush()
        ends.append(len(sink.streams["gate_evaluated"]))
    w._finished = True
    w.close()
    data = bytes(sink.streams["gate_evaluated"])
    follower = StreamFollower("gate_evaluated.rank0.arrows", source=lambda off: pa.py_buffer(data[off:]))
    rows = [b.batch.to_pylist() for b in follower.poll()]
    return data, ends, rows


def follow_bytes(data: bytes) -> tuple[StreamFollower, list[list[dict]]]:
    f = StreamFollower("gate_evaluated.rank0.arrows", source=lambda off: pa.py_buffer(data[off:]))
    return f, [b.batch.to_pylist() for b in f.poll()]


def test_a_stream_cut_at_every_byte_gives_exactly_its_complete_batches():
    data, ends, rows = gate_stream(batches=3)
    for cut in range(len(data) + 1):
        f, got = follow_bytes(data[:cut])
        complete = sum(e <= cut for e in ends)
        assert got == rows[:complete], cut
        assert f.corrupt is None, (cut, f.corrupt)
        if f.schema is not None and cut < len(data):
            assert f.torn_bytes == cut - (ends[complete - 1] if complete else f.offset), cut


def test_corrupted_bytes_are_reported_and_never_change_a_value():
    """Any flipped byte, garbage run or insertion: the follower returns a prefix of the true
    batches (never a changed value), says where the stream is corrupt, and raises nothing but
    LogError. Fixed seed, bounded count (bench/fuzz_log.py runs many more)."""
    data, ends, rows = gate_stream(batches=4)
    rng = random.Random(7)
    flagged = 0
    for trial in range(400):
        buf = bytearray(data)
        how = trial % 4
        at = rng.randrange(len(buf))
        if how == 0:
            buf[at] ^= 1 << rng.randrange(8)
        elif how == 1:
            buf[at] = rng.randrange(256)
        elif how == 2:
            buf[at:at + 16] = rng.randbytes(16)
        else:
            buf[at:at] = rng.randbytes(rng.randrange(1, 9))
        try:
            f, got = follow_bytes(bytes(buf))
        except LogError as exc:
            assert "\n" not in str(exc)
            continue
        assert got == rows[:len(got)], trial
        if len(got) < len(rows) and f.torn_bytes == 0:
            assert f.corrupt and "corrupt at byte" in f.corrupt
        flagged += f.corrupt is not None
    assert flagged > 200


@pytest.mark.parametrize("content, message", [
    (b"", "empty log"),
    (b"\x00\x01garbage that is not arrow at all" * 10, "corrupt at byte 0"),
    (b"just some text\n", "corrupt at byte 0"),
])
def test_bad_files_give_a_one_line_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "log.rank0.arrows"
    path.write_bytes(content)
    with pytest.raises(LogError) as info:
        read_run(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_run_and_directory_without_a_log(tmp_path):
    with pytest.raises(LogError, match="no such run directory"):
        read_run(tmp_path / "nope")
    with pytest.raises(LogError, match="no event log"):
        read_run(tmp_path)


def _stream(path, schema: pa.Schema, rows: list[dict]) -> None:
    """A stream written by plain Arrow (no checksums), as another writer would."""
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, schema) as w:
        w.write_table(pa.Table.from_pylist(rows, schema=schema))


def test_a_plain_arrow_file_and_other_versions_are_refused_in_one_line(tmp_path):
    path = tmp_path / "log.rank0.arrows"
    _stream(path, pa.schema([("x", pa.int64())]), [{"x": 1}])
    with pytest.raises(LogError, match="no checksum|not an Esper event log"):
        read_run(path)
    schema = kind_schema("log").with_metadata({VERSION_KEY: b"9\n" + b"x" * 5000, KIND_KEY: b"log"})
    sink = MemorySink()
    sink.create("log", BatchEncoder(schema).schema_message)
    path.write_bytes(bytes(sink.streams["log"]))
    with pytest.raises(LogError) as info:
        read_run(path)
    assert "\n" not in str(info.value) and "schema version '9\\nxxx" in str(info.value)
    assert len(str(info.value)) < 250 + len(str(path))


def _with_schema(path, schema: pa.Schema, rows: list[dict]) -> None:
    """A checksummed stream of ``schema``, as a writer of another minor version makes one."""
    enc = BatchEncoder(schema)
    batch = pa.RecordBatch.from_pylist(rows, schema=schema)
    path.write_bytes(enc.schema_message + enc.encode(batch, 0, len(rows) - 1))


def test_a_newer_minor_version_drops_unknown_columns_and_kinds(tmp_path):
    events = tmp_path / "run" / "events"
    events.mkdir(parents=True)
    base = kind_schema("log")
    newer = pa.schema(list(base) + [pa.field("colour", pa.string())],
                      metadata={VERSION_KEY: b"2.9", KIND_KEY: b"log"})
    _with_schema(events / "log.rank0.arrows", newer,
                 [{"seq": 0, "wall_time": 0, "rank": 0, "env": 0, "epoch": 1, "step": 2,
                   "level": "info", "text": "hi", "colour": "red"}])
    future = pa.schema([("seq", pa.int64()), ("wall_time", pa.timestamp("us", tz="UTC")), ("rank", pa.int16()),
                        ("x", pa.float64())], metadata={VERSION_KEY: b"2.9", KIND_KEY: b"future_kind"})
    _with_schema(events / "future_kind.rank0.arrows", future, [{"seq": 1, "wall_time": 0, "rank": 0, "x": 1.0}])
    got = read_run(tmp_path / "run")
    assert got.kinds == ["log"] and got.corrupt == []
    assert got.rows("log")[0]["text"] == "hi" and "colour" not in got.table("log").column_names


def test_an_older_minor_version_missing_a_field_reads_it_as_null(tmp_path):
    base = kind_schema("gate_evaluated")
    older = pa.schema([f for f in base if f.name != "checks_passed"],
                      metadata={VERSION_KEY: b"2.0", KIND_KEY: b"gate_evaluated"})
    path = tmp_path / "gate_evaluated.rank0.arrows"
    _with_schema(path, older, [{"seq": 0, "wall_time": 0, "rank": 0, "env": 0, "epoch": 0, "step": 0,
                                "slot": "s", "seed": None, "gate": "G1", "target_stage": "TRAINING",
                                "passed": True, "checks_failed": []}])
    (row,) = read_run(path).rows("gate_evaluated")
    assert row["gate"] == "G1" and row["checks_passed"] is None


WRITER_SCRIPT = textwrap.dedent("""
    import sys, time
    from telemetry_schema import events as ev
    from telemetry_schema.writer import EventWriter, WriterConfig
    w = EventWriter(sys.argv[1], config=WriterConfig(heartbeat_s=0, flush_interval=0.01))
    w.emit(ev.RunStarted(run_id="k", task="t", topology="cnn", host_params=1, heartbeat_s=0.2))
    i = 0
    while True:
        w.scalar("loss", float(i)); i += 1
        if i % 50 == 0:
            w.emit(ev.LogMessage(level="info", text=str(i)))
            w.flush()
            sys.stdout.write(f"{i}\\n"); sys.stdout.flush()
            time.sleep(0.002)
""")


def test_a_sigkilled_writer_keeps_every_flushed_event_and_reads_as_crashed(tmp_path):
    rng = random.Random(1234)
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    for trial in range(10):
        run = tmp_path / f"k{trial}"
        proc = subprocess.Popen([sys.executable, str(script), str(run / "events")], stdout=subprocess.PIPE, text=True)
        flushed = int(proc.stdout.readline())  # the writer is up and has flushed once
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        flushed = max([flushed] + [int(x) for x in out.split()])
        got = read_run(run)
        values = [r["value"] for r in got.rows("scalar")]
        assert len(values) >= flushed, trial  # everything reported flushed is there
        assert values == [float(i) for i in range(len(values))]  # in order, no gaps
        assert got.corrupt == []
        state = fold_tables(got)
        assert state.end_status is None
        assert state.status(now=state.last_wall + 60) == "crashed"
        assert state.status(now=state.last_wall + 0.1) == "running"


def test_the_follower_with_a_concurrent_writer_process(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    run = tmp_path / "live"
    proc = subprocess.Popen([sys.executable, str(script), str(run / "events")], stdout=subprocess.DEVNULL)
    try:
        follower = RunFollower(run)
        seen, logs, polls_with_data = [], [], 0
        deadline = time.monotonic() + 30
        while len(seen) < 2000 and time.monotonic() < deadline:
            if not run.exists():
                time.sleep(0.01)
                continue
            new = follower.poll()
            values = [r["value"] for r in new.rows("scalar")]
            polls_with_data += bool(values)
            seen.extend(values)
            logs.extend(int(r["text"]) for r in new.rows("log"))
            # a flush is shown whole: its log line comes with its 50th scalar, never before
            assert logs == list(range(50, len(seen) + 1, 50))
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    assert len(seen) >= 2000
    assert seen == [float(i) for i in range(len(seen))]  # only new events, no repeats, no gaps
    assert polls_with_data >= 3
    rest = [r["value"] for r in follower.poll(final=True).rows("scalar")]
    assert seen + rest == [float(i) for i in range(len(seen) + len(rest))]


def test_a_flush_is_held_back_until_all_its_kinds_are_on_disk(tmp_path):
    sink = MemorySink()
    w = writer(sink)
    w.emit(ev.GateEvaluated(gate="G2", target_stage="BLENDING", passed=True), slot="s0")
    w.emit(ev.StageChanged(from_stage="TRAINING", to_stage="BLENDING"), slot="s0")
    w.flush()
    events = tmp_path / "run" / "events"
    events.mkdir(parents=True)
    (events / "gate_evaluated.rank0.arrows").write_bytes(sink.streams["gate_evaluated"])
    clock = StepClock()
    follower = RunFollower(tmp_path / "run", clock=clock, hold_s=5.0)
    assert follower.poll().num_rows == 0 and follower.pending == 1  # the stage change is not on disk yet
    (events / "stage_changed.rank0.arrows").write_bytes(sink.streams["stage_changed"])
    got = follower.poll()
    assert got.kinds == ["gate_evaluated", "stage_changed"] and follower.pending == 0
    # a flush whose writer died half-way is shown after hold_s, or at once when reading whole
    w.emit(ev.GateEvaluated(gate="G3", target_stage="HOLDING", passed=False), slot="s0")
    w.emit(ev.StageChanged(from_stage="BLENDING", to_stage="PRUNED"), slot="s0")
    w.flush()
    (events / "gate_evaluated.rank0.arrows").write_bytes(sink.streams["gate_evaluated"])
    assert follower.poll().num_rows == 0
    clock.now += 5.0
    assert follower.poll().rows("gate_evaluated")[0]["gate"] == "G3"
    assert read_run(tmp_path / "run").num_rows == 3  # the second stage change never reached the disk


def test_the_follower_notices_the_end_of_stream_and_retries_a_torn_tail(tmp_path):
    data, ends, rows = gate_stream(batches=2)
    path = tmp_path / "gate_evaluated.rank0.arrows"
    path.write_bytes(data[: ends[0] + 10])
    f = StreamFollower(path)
    first = f.poll()
    assert len(first) == 1 and f.torn_bytes == 10 and not f.ended and f.corrupt is None
    path.write_bytes(data)
    second = f.poll()
    assert [b.batch.to_pylist() for b in second] == rows[1:] and f.torn_bytes == 0 and f.ended
    assert f.poll() == []


def test_a_full_disk_stops_the_writer_with_one_error_and_keeps_what_was_written():
    sink = MemorySink(fail_after=6000)
    w = writer(sink)
    w.emit(ev.RunStarted(run_id="r", task="t", topology="cnn", host_params=1))
    w.flush()
    with pytest.raises(TelemetryError, match="No space left") as info:
        for i in range(10_000):
            w.emit(ev.LogMessage(level="info", text=f"line {i}"))
            if i % 10 == 9:
                w.flush()
    assert "\n" not in str(info.value)
    with pytest.raises(TelemetryError):
        w.emit(ev.LogMessage(level="info", text="after"))  # every later emit says so too
    w.close()  # the error was raised already: closing does not raise it again
    got = read_memory(sink)
    texts = [r["text"] for r in got.rows("log")]
    assert texts == [f"line {i}" for i in range(len(texts))] and len(texts) >= 10
    assert got.rows("run_started")


def test_on_error_drop_keeps_training_and_counts_what_it_dropped():
    sink = MemorySink(fail_after=5000)
    w = EventWriter(sink, config=WriterConfig(heartbeat_s=0, on_error="drop"), background=False)
    for i in range(2000):
        w.emit(ev.LogMessage(level="info", text=f"line {i}"))
        if i % 10 == 9:
            try:
                w.flush()
            except TelemetryError:
                pass
    w.close()
    assert w.error is not None and w.dropped > 0
    assert len(read_memory(sink).rows("log")) + w.dropped >= 2000 - 10


def test_a_failed_write_to_a_file_is_undone_so_the_stream_ends_at_a_whole_batch(tmp_path, monkeypatch):
    w = writer(tmp_path / "events")
    w.emit(ev.LogMessage(level="info", text="kept"))
    w.flush()
    def short_write(fd, data):  # half the message reaches the disk, then the disk is full
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(DirectorySink, "write", staticmethod(short_write))
    w.emit(ev.LogMessage(level="info", text="lost"))
    with pytest.raises(TelemetryError, match="log.rank0.arrows: write failed"):
        w.flush()
    monkeypatch.undo()
    w.close()
    f = StreamFollower(tmp_path / "events" / "log.rank0.arrows")
    assert [r["text"] for b in f.poll() for r in b.batch.to_pylist()] == ["kept"]
    assert f.torn_bytes == 0 and f.corrupt is None


def test_a_stream_linked_from_outside_the_run_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    w = writer(outside)
    w.emit(ev.LogMessage(level="info", text="secret"))
    w.close()
    run = tmp_path / "run" / "events"
    run.mkdir(parents=True)
    (run / "log.rank0.arrows").symlink_to(outside / "log.rank0.arrows")
    got = read_run(tmp_path / "run")
    assert got.num_rows == 0
    assert any("leads outside the run directory" in c for c in got.corrupt)
