"""Every event kind survives a write/read round trip (property-based); the writer's order,
flush policy, heartbeats and backpressure, driven by a fake clock without threads."""

from __future__ import annotations

import dataclasses
import math
import threading
import typing

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry_schema import events as ev
from telemetry_schema.reader import read_memory
from telemetry_schema.rundir import read_run
from telemetry_schema.schema import ENVELOPE_NAMES, SCHEMA_VERSION, VERSION_KEY, kind_schema
from telemetry_schema.sinks import MemorySink
from telemetry_schema.writer import EventWriter, WriterConfig, flush_due

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
    return a == b


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TickingClock(FakeClock):
    """Each reading a microsecond after the last, as a fine real clock gives them."""

    def __call__(self) -> float:
        self.now += 1e-6
        return self.now


def quiet_writer(sink, clock=None, **cfg) -> EventWriter:
    return EventWriter(sink, config=WriterConfig(heartbeat_s=cfg.pop("heartbeat_s", 0), **cfg),
                       clock=clock or FakeClock(), wall_clock=lambda: 1.7e9, background=False)


def fields_of(event) -> dict:
    out = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        out[f.name] = value
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(any_event, envelope), min_size=1, max_size=25))
def test_every_kind_round_trips(items):
    sink = MemorySink()
    w = quiet_writer(sink)
    for event, env in items:
        if not event.SLOTTED:
            env = {k: v for k, v in env.items() if k not in ("slot", "seed")}
        w.emit(event, **env)
    w._finished = True  # no run_finished: the round trip compares exactly what was emitted
    w.close()
    back = read_memory(sink)
    assert back.num_rows == len(items)
    rows = sorted((r for k in back.kinds for r in back.rows(k)), key=lambda r: r["seq"])
    assert [r["seq"] for r in rows] == list(range(len(items)))
    for (event, env), row in zip(items, rows):
        for name, value in fields_of(event).items():
            got = row[name]
            if isinstance(value, dict):
                got = dict(got)
            assert same(got, value), (event.KIND, name)
        for key, value in env.items():
            if key in row and (event.SLOTTED or key not in ("slot", "seed")):
                if not (event.RUN_WIDE and key in ("env", "epoch", "step")):
                    assert row[key] == value


def test_each_kind_is_documented_and_its_schema_is_flat():
    for cls in ev.EVENT_TYPES:
        assert cls.__doc__, cls
        for name, doc in ev.field_docs(cls):
            assert doc, f"{cls.__name__}.{name} has no documentation"
        schema = kind_schema(cls.KIND)
        payload = [f.name for f in dataclasses.fields(cls)]
        envelope = [n for n in schema.names if n not in payload]
        assert schema.names == envelope + payload
        assert set(envelope) <= set(ENVELOPE_NAMES), "payload fields must not shadow the envelope"
        assert ("slot" in envelope) == cls.SLOTTED
        assert ("epoch" in envelope) != cls.RUN_WIDE
        assert not any(pa.types.is_struct(f.type) for f in schema)
        assert schema.metadata[VERSION_KEY] == SCHEMA_VERSION.encode()


def test_a_slot_on_a_kind_without_one_is_refused():
    w = quiet_writer(MemorySink())
    with pytest.raises(ValueError, match="do not concern a slot"):
        w.emit(ev.LogMessage(level="info", text="x"), slot="s0")


@pytest.mark.parametrize("flush_rows", [1, 7, 1000])
def test_disk_round_trip_keeps_emission_order_across_kinds(tmp_path, flush_rows):
    w = quiet_writer(tmp_path / "events", TickingClock(), flush_rows=flush_rows)
    w.emit(ev.RunStarted(run_id="r", task="t", topology="cnn", host_params=5, slot_ids=["a", "b"]))
    for i in range(50):
        w.step = i
        w.scalar("train/loss", 1.0 / (i + 1))
        if i % 10 == 0:
            w.emit(ev.StageChanged(from_stage="DORMANT", to_stage="GERMINATED"), slot="a", seed=f"s{i}")
    w.close()
    back = read_run(tmp_path / "events/scalar.rank0.arrows")
    assert [r["value"] for r in back.rows("scalar")] == [1.0 / (i + 1) for i in range(50)]
    assert [r["step"] for r in back.rows("scalar")] == list(range(50))
    from telemetry_schema.reader import StreamFollower
    seqs = {}
    for kind in ("run_started", "scalar", "stage_changed", "run_finished"):
        f = StreamFollower(tmp_path / f"events/{kind}.rank0.arrows")
        seqs[kind] = [s for b in f.poll() for s in b.batch.column("seq").to_pylist()]
        assert f.ended and f.torn_bytes == 0 and f.corrupt is None
    every = sorted(s for v in seqs.values() for s in v)
    assert every == list(range(1 + 50 + 5 + 1))
    assert seqs["run_started"] == [0] and seqs["run_finished"] == [every[-1]]
    # the stage change at step 10 sits between the scalars of steps 10 and 11
    s10 = seqs["stage_changed"][1]
    assert s10 - 1 in seqs["scalar"] and s10 + 1 in seqs["scalar"]
    assert seqs["scalar"].index(s10 - 1) == 10


def test_close_writes_run_finished_with_status():
    sink = MemorySink()
    with pytest.raises(RuntimeError):
        with quiet_writer(sink) as w:
            w.scalar("x", 1.0)
            raise RuntimeError("boom")
    (finished,) = read_memory(sink).rows("run_finished")
    assert (finished["status"], finished["reason"]) == ("failed", "RuntimeError: boom")


def test_flush_due_waits_for_a_batchs_worth_until_the_quiet_interval():
    cfg = WriterConfig(flush_interval=0.25, small_flush=512, quiet_interval=2.0)
    assert not flush_due(cfg, 0.1, 10_000)  # too soon, however many
    assert flush_due(cfg, 0.25, 512)  # busy: every flush_interval
    assert not flush_due(cfg, 1.9, 511)  # quiet: waits
    assert flush_due(cfg, 2.0, 1)  # ...until quiet_interval
    short = WriterConfig(flush_interval=3.0, quiet_interval=2.0)  # quiet never undercuts the interval
    assert not flush_due(short, 2.5, 0) and flush_due(short, 3.0, 0)


def test_tick_follows_the_clock_a_busy_log_every_interval_a_quiet_one_rarely():
    clock, sink = FakeClock(), MemorySink()
    w = quiet_writer(sink, clock, flush_interval=0.25, small_flush=10, quiet_interval=2.0)
    w.emit(ev.RunStarted(run_id="r", task="t", topology="cnn", host_params=1))
    w.flush()
    written = w.events_written
    for _ in range(5):  # 5 quiet events over 1 s: nothing is written yet
        clock.now += 0.2
        w.scalar("x", 1.0)
        w.tick()
    assert w.events_written == written
    clock.now += 1.1  # 2 s after the last flush: the quiet ones go out together
    w.tick()
    assert w.events_written == written + 5
    for i in range(10):  # a batch's worth goes out after flush_interval
        w.scalar("x", float(i))
    clock.now += 0.1
    w.tick()
    assert w.events_written == written + 5
    clock.now += 0.2
    w.tick()
    assert w.events_written == written + 15


def test_heartbeats_follow_the_injected_clock():
    clock, sink = FakeClock(), MemorySink()
    w = quiet_writer(sink, clock, heartbeat_s=1.0)
    for _ in range(4):
        clock.now += 1.5
        w.tick()
    w.close()
    beats = read_memory(sink).rows("heartbeat")
    assert len(beats) == 4
    assert [b["events_emitted"] for b in beats] == [0, 1, 2, 3]


def test_backpressure_waits_are_counted_and_logged_never_dropped():
    sink = MemorySink()
    w = quiet_writer(sink, flush_interval=60, flush_rows=4, max_pending=8)
    for i in range(100):
        w.scalar("x", float(i))
    w.close()
    back = read_memory(sink)
    assert [r["value"] for r in back.rows("scalar")] == [float(i) for i in range(100)]
    assert w.backpressure_waits > 0
    assert any("backpressure" in r["text"] for r in back.rows("log"))


def test_concurrent_emitters_lose_nothing_and_never_tear_a_row(tmp_path):
    """Threads emit while the writer thread swaps the lists out every millisecond."""
    w = EventWriter(tmp_path / "events", config=WriterConfig(heartbeat_s=0, flush_interval=0.001, flush_rows=64))
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
    back = read_run(tmp_path / "events/scalar.rank0.arrows").extended(read_run(tmp_path / "events/log.rank0.arrows"))
    seqs = sorted(back.table("scalar").column("seq").to_pylist() + back.table("log").column("seq").to_pylist())
    assert seqs == list(range(len(seqs)))
    for env in range(3):
        scalars = [r for r in back.rows("scalar") if r["env"] == env]
        assert [r["value"] for r in scalars] == [float(i) for i in range(per_thread)]
        assert all(r["name"] == f"t{env}" and r["step"] == int(r["value"]) for r in scalars)
        logs = [r["text"] for r in back.rows("log") if r["env"] == env]
        assert logs == [f"{env}:{i}" for i in range(0, per_thread, 97)]


def test_events_at_one_clock_reading_keep_their_emission_order():
    """A coarse clock gives many events the same reading; whatever the flush boundaries, the
    sequence numbers follow the order they were emitted in."""
    kinds = [ev.GovernorSnapshot(reason="a", tensors=1),
             ev.GovernorPanic(reason="nan", loss=1.0, threshold=2.0, mean=0.5, std=0.1, consecutive=1),
             ev.LogMessage(level="info", text="x"), ev.GovernorSnapshot(reason="b", tensors=2)]
    for cut in (1, 2, 3, 5, 7):
        sink = MemorySink()
        w = quiet_writer(sink, flush_interval=3600)
        for i in range(12):
            w.emit(kinds[(i * 7) % 4], step=i)
            if i % cut == cut - 1:
                w.flush()
        w.close()
        back = read_memory(sink)
        rows = sorted((r for k in back.kinds if k != "run_finished" for r in back.rows(k)), key=lambda r: r["seq"])
        assert [r["step"] for r in rows] == list(range(12))


def test_writer_reports_its_background_threads_cpu_time(tmp_path):
    w = EventWriter(tmp_path / "events", config=WriterConfig(heartbeat_s=0, flush_interval=0.001, small_flush=1))
    for i in range(50_000):
        w.scalar("x", float(i))
    w.close()
    assert 0.0 < w.flusher_cpu_s < 60.0  # measured by the thread itself, so set once it has ended


def test_small_batches_are_stored_plain_and_big_ones_compressed():
    from telemetry_schema.codec import BatchEncoder

    enc = BatchEncoder(kind_schema("scalar"), compress_rows=64)
    schema = kind_schema("scalar")

    def batch(n):
        return pa.RecordBatch.from_pylist([{"seq": i, "wall_time": 0, "rank": 0, "env": 0, "epoch": 0,
                                            "step": i, "name": "loss", "value": 0.5} for i in range(n)], schema=schema)
    small, big = enc.encode(batch(3), 0, 2), enc.encode(batch(5000), 0, 4999)
    assert pa.ipc.read_message(pa.BufferReader(small)).metadata.to_pybytes().find(b"ZSTD") < 0
    assert len(big) < 5000 * 20  # a plain batch costs about 60 bytes an event


def test_the_batch_builder_is_pure_and_numbers_a_flush_in_clock_order():
    from telemetry_schema.builder import BatchBuilder

    b = BatchBuilder(rank=3, t0=10.0, wall0=1_000.0, seq=7)
    scalars = [10.5, "loss", 0.25, 4, 1, 0, 10.2, "acc", 0.5, 5, 1, 2]  # two records, flat
    events = [(10.1, ev.LogMessage(level="info", text="first"), None, None, 3, 1, 0),
              (10.5, ev.StageChanged(from_stage="A", to_stage="B"), "s0", "x", 6, 1, 0)]
    flush = b.build(scalars, events)
    assert (flush.lo, flush.hi, flush.rows, b.seq) == (7, 10, 4, 11)
    assert sorted(flush.batches) == ["log", "scalar", "stage_changed"]
    order = {r["seq"]: (k, r.get("name") or r.get("text") or r.get("to_stage"))
             for k, batch in flush.batches.items() for r in batch.to_pylist()}
    # by clock reading: the log (10.1), acc (10.2), then at 10.5 the scalar before the event
    assert [order[s] for s in range(7, 11)] == [("log", "first"), ("scalar", "acc"), ("scalar", "loss"),
                                                 ("stage_changed", "B")]
    (stage,) = flush.batches["stage_changed"].to_pylist()
    assert (stage["rank"], stage["slot"], stage["seed"], stage["step"]) == (3, "s0", "x", 6)
    assert stage["wall_time"].timestamp() == pytest.approx(1_000.5)
    assert b.build([], []) is None and b.seq == 11
