"""The reader survives torn tails, killed writers and bad files; the follower follows."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_schema import events as ev
from telemetry_schema.fold import fold_table
from telemetry_schema.reader import LogError, LogFollower, read_log
from telemetry_schema.schema import SCHEMA, VERSION_KEY
from telemetry_schema.writer import EventWriter, WriterConfig


class StepClock:
    """A deterministic clock: every reading is 1 ms after the last (same bytes every run)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def small_log(batches: int = 4, per_batch: int = 3, compression: str | None = "zstd") -> tuple[bytes, list[int]]:
    """A log of several batches; returns its bytes and the byte offset where each batch ends."""
    sink = pa.BufferOutputStream()
    clock = StepClock()
    w = EventWriter(sink, config=WriterConfig(heartbeat_s=0, flush_interval=3600, compression=compression),
                    clock=clock, wall_clock=clock)
    ends = []
    for b in range(batches):
        for i in range(per_batch):
            w.scalar("loss", float(b * per_batch + i))
        w.emit(ev.GateEvaluated(gate="G2", target_stage="BLENDING", passed=False,
                                checks_failed=["seed_gradient_low_0.02"]), slot="s0")
        w.flush()
        ends.append(sink.tell())
    w._finished = True
    w.close()
    return sink.getvalue().to_pybytes(), ends


def test_log_cut_at_every_byte_returns_exactly_the_complete_batches(tmp_path):
    data, ends = small_log(batches=2, compression=None)
    path = tmp_path / "cut.arrows"
    schema_end = None
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        try:
            res = read_log(path)
        except LogError as exc:  # only before the schema is complete
            assert schema_end is None, f"cut {cut}: {exc}"
            continue
        if schema_end is None:
            schema_end = cut
        complete = sum(1 for e in ends if e <= cut)
        assert res.events == complete * 4, cut
        last_end = max([e for e in ends if e <= cut], default=schema_end)
        if cut < len(data):  # the closing end-of-stream marker is not a torn batch
            assert res.torn_bytes == cut - last_end, cut
    assert schema_end is not None


@settings(max_examples=int(os.environ.get("ESPER_FUZZ_EXAMPLES", "60")), deadline=None)
@given(st.data())
def test_corrupted_bytes_never_raise_past_the_api(tmp_path_factory, data):
    raw, _ = small_log(batches=3)
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("corrupt") / "x.arrows"
    path.write_bytes(bytes(buf))
    try:
        res = read_log(path)
    except LogError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:
        assert res.events <= 12


@pytest.mark.parametrize("content, message", [
    (b"", "empty log"),
    (b"\x00\x01garbage that is not arrow at all" * 10, "not an Arrow IPC stream"),
    (b"just some text\n", "not an Arrow IPC stream"),
])
def test_bad_files_give_a_one_line_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.arrows"
    path.write_bytes(content)
    with pytest.raises(LogError) as info:
        read_log(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(LogError, match="no such log file"):
        read_log(tmp_path / "nope.arrows")
    with pytest.raises(LogError, match="is a directory"):
        read_log(tmp_path)


def test_plain_arrow_file_without_esper_schema_is_refused(tmp_path):
    path = tmp_path / "other.arrows"
    table = pa.table({"x": [1, 2]})
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
        w.write_table(table)
    with pytest.raises(LogError, match="not an Esper event log"):
        read_log(path)


def _log_with_version(path, version: str, extra_kind: bool = False):
    fields = list(SCHEMA)
    if extra_kind:
        fields.append(pa.field("future_kind", pa.struct([pa.field("x", pa.float64())])))
    schema = pa.schema(fields, metadata={VERSION_KEY: version.encode()})
    rows = [{"seq": 0, "kind": "log", "log": {"level": "info", "text": "hi"}}]
    if extra_kind:
        rows.append({"seq": 1, "kind": "future_kind", "future_kind": {"x": 1.0}})
    table = pa.Table.from_pylist(rows, schema=schema)
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, schema) as w:
        w.write_table(table)


def test_incompatible_major_version_is_refused(tmp_path):
    path = tmp_path / "v2.arrows"
    _log_with_version(path, "2.0")
    with pytest.raises(LogError) as info:
        read_log(path)
    assert "schema version 2.0 is not supported" in str(info.value)
    _log_with_version(path, "9\n" + "x" * 5000)  # a corrupt schema can make it any bytes
    with pytest.raises(LogError) as info:
        read_log(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200 + len(str(path))
    assert "schema version '9\\nxxx" in str(info.value)


def test_newer_minor_version_skips_unknown_kinds_and_columns(tmp_path):
    path = tmp_path / "v1_9.arrows"
    _log_with_version(path, "1.9", extra_kind=True)
    res = read_log(path)
    assert res.version == "1.9"
    assert res.table.column("kind").to_pylist() == ["log"]
    assert "future_kind" not in res.table.column_names
    assert res.table.schema.equals(SCHEMA, check_metadata=False)


def test_older_log_missing_columns_is_filled_with_nulls(tmp_path):
    """A log from an older minor version that lacks a kind and a field still reads."""
    fields = [f for f in SCHEMA if f.name != "reward"]
    gate = SCHEMA.field("gate_evaluated")
    fields[[f.name for f in fields].index("gate_evaluated")] = pa.field(
        "gate_evaluated", pa.struct([f for f in gate.type if f.name != "checks_passed"]))
    schema = pa.schema(fields, metadata={VERSION_KEY: b"1.0"})
    table = pa.Table.from_pylist([{"seq": 0, "kind": "gate_evaluated", "gate_evaluated": {
        "gate": "G1", "target_stage": "TRAINING", "passed": True, "checks_failed": []}}], schema=schema)
    path = tmp_path / "old.arrows"
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, schema) as w:
        w.write_table(table)
    res = read_log(path)
    row = res.table.to_pylist()[0]
    assert row["gate_evaluated"]["gate"] == "G1" and row["gate_evaluated"]["checks_passed"] is None
    assert "reward" in res.table.column_names


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
            w.flush()
            sys.stdout.write(f"{i}\\n"); sys.stdout.flush()
            time.sleep(0.002)
""")


def test_sigkilled_writer_keeps_every_flushed_event_and_reads_as_crashed(tmp_path):
    rng = random.Random(1234)
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    for trial in range(20):
        path = tmp_path / f"k{trial}.arrows"
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
        flushed = int(proc.stdout.readline())  # the writer is up and has flushed once
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        flushed = max([flushed] + [int(x) for x in out.split()])
        res = read_log(path)
        values = [r["scalar"]["value"] for r in res.table.to_pylist() if r["kind"] == "scalar"]
        assert len(values) >= flushed, trial  # everything reported flushed is there
        assert values == [float(i) for i in range(len(values))]  # in order, no gaps
        state = fold_table(res.table)
        assert state.end_status is None
        assert state.status(now=state.last_wall + 60) == "crashed"
        assert state.status(now=state.last_wall + 0.1) == "running"


def test_follower_with_a_concurrent_writer_process(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    path = tmp_path / "live.arrows"
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.DEVNULL)
    try:
        follower = LogFollower(path)
        seen: list[float] = []
        polls_with_data = 0
        deadline = time.monotonic() + 20
        while len(seen) < 2000 and time.monotonic() < deadline:
            if path.exists():
                res = follower.poll()
                new = [r["scalar"]["value"] for r in res.table.to_pylist() if r["kind"] == "scalar"]
                polls_with_data += bool(new)
                seen.extend(new)
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    assert len(seen) >= 2000
    assert seen == [float(i) for i in range(len(seen))]  # only new events, no repeats, no gaps
    assert polls_with_data >= 3
    # after the kill, one more poll returns the rest and nothing twice
    rest = [r["scalar"]["value"] for r in follower.poll().table.to_pylist() if r["kind"] == "scalar"]
    assert (seen + rest) == [float(i) for i in range(len(seen) + len(rest))]


def test_follower_notices_run_finished_and_end_of_stream(tmp_path):
    path = tmp_path / "f.arrows"
    w = EventWriter(path, config=WriterConfig(heartbeat_s=0, flush_interval=3600))
    follower = LogFollower(path)
    assert follower.poll().table.num_rows == 0  # schema only: no events yet, no error
    w.scalar("x", 1.0)
    w.flush()
    assert follower.poll().table.num_rows == 1 and not follower.ended
    w.close()
    res = follower.poll()
    assert res.table.column("kind").to_pylist() == ["run_finished"]
    assert res.ended and follower.poll().table.num_rows == 0


def test_follower_retries_a_partial_tail(tmp_path):
    data, ends = small_log(batches=2)
    path = tmp_path / "p.arrows"
    path.write_bytes(data[: ends[0] + 10])
    follower = LogFollower(path)
    first = follower.poll()
    assert first.table.num_rows == 4 and first.torn_bytes == 10
    path.write_bytes(data)
    second = follower.poll()
    assert second.table.num_rows == 4 and second.torn_bytes == 0 and second.ended


def _mixed_log(batches: int = 9) -> tuple[bytes, list[int]]:
    """Batches of three different kind sets, interleaved (so each kind set is several ranges)."""
    sink = pa.BufferOutputStream()
    clock = StepClock()
    w = EventWriter(sink, config=WriterConfig(heartbeat_s=0, flush_interval=3600), clock=clock, wall_clock=clock)
    ends = []
    for b in range(batches):
        for i in range(5):
            w.scalar("loss", float(b * 5 + i))
        if b % 3 == 1:
            w.emit(ev.GateEvaluated(gate="G2", target_stage="BLENDING", passed=b % 2 == 0), slot="s0")
        if b % 3 == 2:
            w.emit(ev.AlphaChanged(value=b / 10, target=1.0, mode="up"), slot="s1")
        w.flush()
        ends.append(sink.tell())
    w._finished = True
    w.close()
    return sink.getvalue().to_pybytes(), ends


def test_a_log_decoded_on_several_threads_equals_the_one_thread_read(tmp_path, monkeypatch):
    """Every batch is decoded in pieces on 3 threads (each kind set split across them); the
    table is the same as one thread's, and a corrupt batch stops both at the same row."""
    from telemetry_schema import reader

    data, ends = _mixed_log()
    path = tmp_path / "mixed.arrows"

    def both(raw: bytes) -> tuple[pa.Table, pa.Table]:
        path.write_bytes(raw)
        monkeypatch.setattr(reader, "PARALLEL_BYTES", 1 << 40)
        one = LogFollower(path).poll().table
        monkeypatch.setattr(reader, "PARALLEL_BYTES", 1)
        many = LogFollower(path, threads=3).poll().table
        return one, many

    one, many = both(data)
    assert one.num_rows == 9 * 5 + 3 + 3
    assert many.equals(one)
    assert many.column("alpha").drop_null().to_pylist() == one.column("alpha").drop_null().to_pylist()
    # the 5th batch's first zstd frame made unreadable: both keep the 4 batches before it
    raw = bytearray(data)
    frame = raw.index(b"\x28\xb5\x2f\xfd", ends[3])  # zstd's magic number
    assert frame < ends[4]
    raw[frame] ^= 0xFF
    one, many = both(bytes(raw))
    assert many.equals(one)
    assert one.num_rows == 4 * 5 + 1 + 1
    # every frame of it, the kind column's too (its first pass then fails as well)
    while (frame := raw.find(b"\x28\xb5\x2f\xfd", frame)) != -1 and frame < ends[4]:
        raw[frame] ^= 0xFF
    one, many = both(bytes(raw))
    assert many.equals(one)
    assert one.num_rows == 4 * 5 + 1 + 1


def test_an_empty_batch_in_a_log_keeps_the_batches_after_it(tmp_path):
    """Another writer may write a batch of no rows; the batches after it are still read, each
    with its own kinds."""
    data, _ = _mixed_log(3)
    batches = list(pa.ipc.open_stream(data))
    path = tmp_path / "empty-batch.arrows"
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, batches[0].schema) as w:
        w.write_batch(batches[0])
        w.write_batch(batches[0].slice(0, 0))
        for b in batches[1:]:
            w.write_batch(b)
    res = read_log(path)
    assert res.events == sum(b.num_rows for b in batches)
    assert res.table.column("kind").to_pylist() == [k for b in batches for k in b.column("kind").to_pylist()]
    assert res.table.column("gate_evaluated").drop_null().to_pylist() == \
        pa.Table.from_batches(batches).column("gate_evaluated").drop_null().to_pylist()
