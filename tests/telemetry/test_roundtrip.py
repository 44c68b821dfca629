"""Every event kind survives a write/read round trip (property-based), in memory and on disk."""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry_schema import events as ev
from telemetry_schema.reader import iter_events, read_log
from telemetry_schema.schema import SCHEMA, SCHEMA_VERSION, VERSION_KEY
from telemetry_schema.writer import EventWriter, WriterConfig

floats = st.floats(allow_nan=True, allow_infinity=True)
text = st.text(max_size=20)  # unicode included


def strategy_for(annotation) -> st.SearchStrategy:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, __import__("types").UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return st.none() | strategy_for(inner)
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=4)
    if origin is dict:
        return st.dictionaries(text, strategy_for(args[1]), max_size=4)
    return {float: floats, int: st.integers(-2**62, 2**62), str: text, bool: st.booleans()}[annotation]


def event_strategy(cls) -> st.SearchStrategy:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)})


any_event = st.one_of([event_strategy(cls) for cls in ev.EVENT_TYPES])
envelope = st.fixed_dictionaries({
    "slot": st.none() | text, "seed": st.none() | text,
    "epoch": st.integers(0, 10_000), "step": st.integers(0, 2**40), "env": st.integers(0, 64)})


def same(a, b) -> bool:
    """Equality that treats NaN as equal to NaN, recursively."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(
            same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return a == b


def write_events(items, sink, **cfg) -> None:
    w = EventWriter(sink, config=WriterConfig(heartbeat_s=0, **cfg))
    for event, env in items:
        w.emit(event, **env)
    w.flush()
    w._finished = True  # no run_finished: the round trip compares exactly what was emitted
    w.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(any_event, envelope), min_size=1, max_size=25))
def test_every_kind_round_trips(items):
    sink = pa.BufferOutputStream()
    write_events(items, sink)
    table = pa.ipc.open_stream(sink.getvalue()).read_all()
    back = list(iter_events(table))
    assert len(back) == len(items)
    for (env_in_event, env_in), (env_out, event_out) in zip(items, back):
        assert same(event_out, env_in_event)
        for key, value in env_in.items():
            assert env_out[key] == value
    assert [e["seq"] for e, _ in back] == list(range(len(items)))


def test_each_kind_is_documented_field_by_field():
    for cls in ev.EVENT_TYPES:
        assert cls.__doc__, cls
        for name, doc in ev.field_docs(cls):
            assert doc, f"{cls.__name__}.{name} has no documentation"
        field = SCHEMA.field(cls.KIND)
        assert [f.name for f in field.type] == [f.name for f in dataclasses.fields(cls)]


def test_schema_carries_version():
    assert SCHEMA.metadata[VERSION_KEY] == SCHEMA_VERSION.encode()


@pytest.mark.parametrize("flush_rows", [1, 7, 1000])
def test_disk_round_trip_with_scalar_hot_path(tmp_path, flush_rows):
    path = tmp_path / "events.arrows"
    w = EventWriter(path, config=WriterConfig(heartbeat_s=0, flush_rows=flush_rows))
    w.emit(ev.RunStarted(run_id="r", task="t", topology="cnn", host_params=5, slot_ids=["a", "b"]))
    for i in range(50):
        w.step = i
        w.scalar("train/loss", 1.0 / (i + 1))
        if i % 10 == 0:
            w.emit(ev.StageChanged(from_stage="DORMANT", to_stage="GERMINATED"), slot="a", seed=f"s{i}")
    w.close()
    res = read_log(path)
    assert res.torn_bytes == 0 and res.ended
    t = res.table
    assert t.num_rows == 1 + 50 + 5 + 1
    assert t.column("seq").to_pylist() == list(range(t.num_rows))
    kinds = t.column("kind").to_pylist()
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    scalars = [r for r in t.to_pylist() if r["kind"] == "scalar"]
    assert [r["scalar"]["value"] for r in scalars] == [1.0 / (i + 1) for i in range(50)]
    assert [r["step"] for r in scalars] == list(range(50))
    # emission order is kept across kinds: the stage change at i=10 sits between steps 10 and 11
    idx = [r["seq"] for r in t.to_pylist() if r["kind"] == "stage_changed" and r["seed"] == "s10"][0]
    assert kinds[idx - 1] == "scalar" and t.column("step")[idx - 1].as_py() == 10
    assert kinds[idx + 1] == "scalar" and t.column("step")[idx + 1].as_py() == 11
    assert t.column("wall_time").is_valid().to_pylist().count(True) == t.num_rows
    times = t.column("t").to_pylist()
    assert times == sorted(times)


def test_close_writes_run_finished_with_status(tmp_path):
    path = tmp_path / "e.arrows"
    with pytest.raises(RuntimeError):
        with EventWriter(path, config=WriterConfig(heartbeat_s=0)) as w:
            w.scalar("x", 1.0)
            raise RuntimeError("boom")
    rows = read_log(path).table.to_pylist()
    assert rows[-1]["kind"] == "run_finished"
    assert rows[-1]["run_finished"] == {"status": "failed", "reason": "RuntimeError: boom"}


def test_time_flush_makes_events_visible_without_close(tmp_path):
    path = tmp_path / "e.arrows"
    w = EventWriter(path, config=WriterConfig(heartbeat_s=0, flush_interval=0.05))
    w.scalar("x", 2.0)
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.stat().st_size and read_log(path).events == 1:
            break
        time.sleep(0.02)
    assert read_log(path).events == 1
    w.close()


def test_heartbeats_are_emitted_by_the_writer(tmp_path):
    path = tmp_path / "e.arrows"
    clock = FakeClock()
    w = EventWriter(path, config=WriterConfig(heartbeat_s=1.0, flush_interval=0.01), clock=clock)
    for _ in range(3):
        clock.now += 1.5
        w.scalar("x", 1.0)
        w.flush()
        import time

        time.sleep(0.1)
    w.close()
    kinds = read_log(path).table.column("kind").to_pylist()
    assert kinds.count("heartbeat") >= 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backpressure_waits_are_counted_and_logged_never_dropped(tmp_path):
    path = tmp_path / "e.arrows"
    w = EventWriter(path, config=WriterConfig(heartbeat_s=0, flush_interval=60, flush_rows=4, max_pending=8))
    for i in range(100):
        w.scalar("x", float(i))
    w.close()
    t = read_log(path).table
    values = [r["scalar"]["value"] for r in t.to_pylist() if r["kind"] == "scalar"]
    assert values == [float(i) for i in range(100)]
    assert w.backpressure_waits > 0
    logs = [r["log"]["text"] for r in t.to_pylist() if r["kind"] == "log"]
    assert any("backpressure" in text for text in logs)


def test_concurrent_emitters_lose_nothing_and_never_tear_a_row(tmp_path):
    """Threads emit while the flusher swaps buffers every millisecond."""
    import threading

    path = tmp_path / "e.arrows"
    w = EventWriter(path, config=WriterConfig(heartbeat_s=0, flush_interval=0.001, flush_rows=64))
    per_thread = 20_000

    def work(env: int) -> None:
        for i in range(per_thread):
            w.scalar(f"t{env}", float(i), step=i, env=env)
            if i % 97 == 0:
                w.emit(ev.LogMessage(level="info", text=f"{env}:{i}"), env=env)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    res = read_log(path)
    t = res.table
    assert t.column("seq").to_pylist() == list(range(t.num_rows))
    for env in range(3):
        rows = [r for r in t.to_pylist() if r["env"] == env]
        scalars = [r for r in rows if r["kind"] == "scalar"]
        assert [r["scalar"]["value"] for r in scalars] == [float(i) for i in range(per_thread)]
        assert all(r["scalar"]["name"] == f"t{env}" and r["step"] == int(r["scalar"]["value"]) for r in scalars)
        logs = [r["log"]["text"] for r in rows if r["kind"] == "log"]
        assert logs == [f"{env}:{i}" for i in range(0, per_thread, 97)]


def test_reader_decodes_only_the_kinds_a_batch_holds(tmp_path):
    """Batches of one kind, of a few kinds and of all of them read back exactly as a plain Arrow
    read of the whole stream does, while the reader decodes far less than that read."""
    path = tmp_path / "e.arrows"
    w = EventWriter(path, config=WriterConfig(heartbeat_s=0, flush_interval=3600))
    for i in range(20_000):
        w.scalar("loss", float(i), step=i)
    w.flush()  # a batch of scalars only
    for i in range(500):
        w.emit(ev.BatchMetrics(loss=1.0 / (i + 1), lr=0.1, samples_per_s=5.0), step=i)
        w.emit(ev.StageChanged(from_stage="A", to_stage="B", reason=f"r{i}"), slot="s0", seed="x")
    w.flush()  # two kinds
    for i in range(3):
        w.scalar("loss", -1.0, step=i)
    w.close()  # scalars and run_finished
    before = pa.total_allocated_bytes()
    got = read_log(path).table
    ours = pa.total_allocated_bytes() - before
    plain_before = pa.total_allocated_bytes()
    with pa.OSFile(str(path)) as f:
        plain = pa.ipc.open_stream(f).read_all()
    theirs = pa.total_allocated_bytes() - plain_before
    assert got.num_rows == plain.num_rows == 20_000 + 1_000 + 3 + 1
    assert got.to_pylist() == plain.to_pylist()
    assert got.column("scalar").null_count == plain.column("scalar").null_count == 1_001
    assert ours * 4 < theirs, (ours, theirs)  # the other kinds' null columns were never decompressed


def test_events_at_one_clock_reading_keep_their_emission_order(tmp_path):
    """A coarse clock gives many events the same reading; whatever the batch boundaries, the log
    keeps the order they were emitted in."""
    clock = lambda: 5.0  # noqa: E731 - every event at the same instant
    kinds = [ev.GovernorSnapshot(reason="a", tensors=1), ev.GovernorPanic(reason="nan", loss=1.0, threshold=2.0, mean=0.5, std=0.1, consecutive=1),
             ev.StageChanged(from_stage="A", to_stage="B"), ev.LogMessage(level="info", text="x")]
    orders = []
    for cut in (1, 2, 3, 5, 7):
        path = tmp_path / f"e{cut}.arrows"
        w = EventWriter(path, config=WriterConfig(heartbeat_s=0, flush_interval=3600), clock=clock)
        for i in range(12):
            w.emit(kinds[(i * 7) % 4], step=i)
            if i % cut == cut - 1:
                w.flush()
        w.close()
        t = read_log(path).table
        orders.append(t.column("step").to_pylist()[:12])
    assert all(order == list(range(12)) for order in orders)


def test_flush_due_waits_for_a_batchs_worth_until_the_quiet_interval():
    from telemetry_schema.writer import flush_due

    cfg = WriterConfig(flush_interval=0.25, small_flush=512, quiet_interval=2.0)
    assert not flush_due(cfg, 0.1, 10_000)  # too soon, however many
    assert flush_due(cfg, 0.25, 512)  # busy: every flush_interval
    assert not flush_due(cfg, 1.9, 511)  # quiet: waits
    assert flush_due(cfg, 2.0, 1)  # ...until quiet_interval
    assert flush_due(cfg, 2.0, 0)
    short = WriterConfig(flush_interval=3.0, quiet_interval=2.0)  # quiet never undercuts the interval
    assert not flush_due(short, 2.5, 0) and flush_due(short, 3.0, 0)


def test_a_quiet_log_is_flushed_in_few_batches_and_loses_nothing(tmp_path):
    import time

    path = tmp_path / "e.arrows"
    cfg = WriterConfig(heartbeat_s=0, flush_interval=0.02, small_flush=1000, quiet_interval=0.3)
    w = EventWriter(path, config=cfg)
    t0 = time.monotonic()
    for i in range(60):
        w.scalar("x", float(i))
        time.sleep(0.01)
    elapsed = time.monotonic() - t0
    w.close()
    with pa.ipc.open_stream(pa.memory_map(str(path))) as reader:
        batches = list(reader)
    # At the busy interval this would be about elapsed / 0.02 batches (30 or more).
    assert len(batches) <= elapsed / cfg.quiet_interval + 2
    values = [r["scalar"]["value"] for r in read_log(path).table.to_pylist() if r["kind"] == "scalar"]
    assert values == [float(i) for i in range(60)]


def test_writer_reports_its_background_threads_cpu_time(tmp_path):
    w = EventWriter(tmp_path / "e.arrows", config=WriterConfig(heartbeat_s=0, flush_interval=0.001, small_flush=1))
    for i in range(50_000):
        w.scalar("x", float(i))
    w.close()
    assert 0.0 < w.flusher_cpu_s < 60.0  # measured by the thread itself, so set once it has ended


def test_kind_segments_cut_rare_kinds_out_of_a_big_batch():
    from telemetry_schema.writer import kind_segments

    codes = np.zeros(10_000, np.int64)  # kind 0: the common kind
    codes[::7] = 1  # kind 1: common too (1/7 of the rows), spread everywhere
    codes[3000:3004] = 2  # an "epoch end" of rare kinds
    codes[3005] = 3
    codes[9990] = 2  # a rare row near the end joins the last segment
    segs = kind_segments(codes, min_rows=256, rare_share=1024)
    assert segs[0][0] == 0 and segs[-1][1] == len(codes)
    assert all(a[1] == b[0] for a, b in zip(segs, segs[1:]))  # contiguous, in order
    assert (3000, 3006) in segs  # the cluster, cut out on its own
    for lo, hi in segs:
        if (lo, hi) != (3000, 3006) and hi != len(codes):
            assert set(np.unique(codes[lo:hi])) <= {0, 1}  # the runs between hold only common kinds
    assert kind_segments(np.zeros(5000, np.int64)) == [(0, 5000)]  # one kind: one batch
    many = np.zeros(100_000, np.int64)
    many[::1000] = 1  # 100 isolated rare rows: more segments than they are worth
    assert kind_segments(many, rare_share=1024, max_segments=64) == [(0, 100_000)]


def test_a_big_mixed_flush_is_written_in_segments_and_reads_back_in_order(tmp_path):
    path = tmp_path / "e.arrows"
    w = EventWriter(path, config=WriterConfig(heartbeat_s=0, flush_interval=3600))
    for i in range(20_000):
        w.scalar("loss", float(i), step=i)
        if i % 5000 == 4999:
            w.emit(ev.EpochCompleted(train_loss=1.0, train_acc=50.0, val_loss=1.0, val_acc=50.0))
            w.log("info", f"epoch {i // 5000} done")
    w.close()
    with pa.ipc.open_stream(pa.memory_map(str(path))) as reader:
        batches = list(reader)
    kinds = [set(b.column("kind").to_pylist()) for b in batches]
    assert len(batches) > 3
    assert all(len(k) <= 3 for k in kinds)  # no batch mixes the scalars with every kind
    assert any(k == {"scalar"} for k in kinds)
    rows = read_log(path).table
    assert rows.column("seq").to_pylist() == list(range(rows.num_rows))
    values = [r["scalar"]["value"] for r in rows.to_pylist() if r["kind"] == "scalar"]
    assert values == [float(i) for i in range(20_000)]
    kinds_in_order = rows.column("kind").to_pylist()
    assert kinds_in_order[5000:5002] == ["epoch_completed", "log"]  # after the 5000th scalar, in emission order
