"""The run-state fold: values match the log, incremental equals whole, replay seeks."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from telemetry_schema import events as ev
from telemetry_schema.eventlog import EventLog
from telemetry_schema.fold import Fold, fold_tables
from telemetry_schema.reader import read_memory
from telemetry_schema.replay import TARGETS, Replay
from telemetry_schema.rundir import read_run
from telemetry_schema.sinks import MemorySink
from telemetry_schema.state import Series, _Lazy
from telemetry_schema.synth import SynthConfig, generate
from telemetry_schema.tables import KindTables
from telemetry_schema.writer import EventWriter, WriterConfig


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    run = generate(tmp_path_factory.mktemp("runs"), SynthConfig(events=20_000, seed=1, run_id="fold"))
    return EventLog(read_run(run))


def events(log: EventLog) -> list[tuple[str, dict]]:
    """Every event in the run's order, as (kind, fields): the plain scan the fold must match."""
    return [log.event(i) for i in range(len(log))]


def snapshot(state):
    """A comparable summary of a RunState."""
    return {
        "events": state.events, "epoch": state.epoch, "end": state.end_status,
        "slots": {k: (s.seed_id, s.stage, s.alpha, s.ratio, s.contribution,
                      s.last_gate.gate if s.last_gate else None) for k, s in state.slots.items()},
        "spans": [(s.slot, s.stage, s.start_epoch, s.end_epoch) for s in state.spans],
        "marks": [(m.kind, m.epoch, m.slot) for m in state.marks],
        "gates": [(g.seq, g.passed, tuple(g.checks_failed)) for g in state.gates],
        "gov": [(g.kind, g.epoch) for g in state.governor],
        "decisions": [(d.seq, d.op) for d in state.decisions],
        "val_acc": state.epochs["val_acc"].tolist(),
        "loss": state.batches["loss"].tolist(),
        "alpha": {k: v["value"].tolist() for k, v in state.alpha.items()},
        "ratio": {k: np.nan_to_num(v["ratio"], nan=-1).tolist() for k, v in state.grads.items()},
        "counts": dict(state.kind_counts),
    }


def writer(sink, **kw) -> EventWriter:
    return EventWriter(sink, config=WriterConfig(heartbeat_s=0, flush_interval=3600), background=False, **kw)


def test_incremental_fold_equals_whole_fold(log):
    whole = fold_tables(log.tables)
    fold = Fold()
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(log)), size=40, replace=False))
    start = 0
    for cut in list(cuts) + [len(log)]:
        fold.update(log.slice(start, int(cut)))
        start = int(cut)
    assert snapshot(fold.state) == snapshot(whole)


def test_fold_values_match_the_log(log):
    state = fold_tables(log.tables)
    rows = events(log)
    epochs = [r for k, r in rows if k == "epoch_completed"]
    assert state.epochs["val_acc"].tolist() == [r["val_acc"] for r in epochs]
    assert state.best_val_acc() == max(r["val_acc"] for r in epochs)
    gates = [r for k, r in rows if k == "gate_evaluated"]
    assert [g.checks_failed for g in state.gates] == [r["checks_failed"] for r in gates]
    assert state.seeds_fossilized() == sum(k == "seed_fossilized" for k, _ in rows)
    assert state.panics() == sum(k == "governor_panic" for k, _ in rows)
    for slot_id, slot in state.slots.items():  # a slot's stage is the last stage change it saw
        moves = [r["to_stage"] for k, r in rows if k == "stage_changed" and r["slot"] == slot_id]
        assert slot.stage == (moves[-1] if moves else "DORMANT")
    for slot_id in state.slots:  # a slot's spans tile its lifecycle
        spans = [s for s in state.spans if s.slot == slot_id]
        for a, b in zip(spans, spans[1:]):
            assert a.end_epoch == b.start_epoch or b.stage == "GERMINATED"
    assert state.end_status == "completed" and state.status(now=0) == "completed"
    assert state.started_wall == rows[0][1]["wall_time"].timestamp() and rows[0][0] == "run_started"


def test_the_order_is_the_sequence_order_of_every_kind(log):
    seqs = [r["seq"] for _, r in events(log)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_alpha_of_a_fresh_seed_is_not_stale():
    """A germination after alpha ticks in the same folded flush resets the slot's values."""
    sink = MemorySink()
    w = writer(sink)
    w.emit(ev.AlphaChanged(value=0.8, target=1.0, mode="up"), slot="s", seed="old")
    w.emit(ev.Counterfactual(real_acc=50, off_acc=48, contribution=2.0), slot="s", seed="old")
    w.emit(ev.SeedGerminated(blueprint="lora", params=10), slot="s", seed="new")
    w.close()
    slot = fold_tables(read_memory(sink)).slots["s"]
    assert (slot.seed_id, slot.alpha, slot.contribution) == ("new", 0.0, None)


def test_null_strings_fold_as_empty_never_crash():
    sink = MemorySink()
    w = writer(sink)
    w.emit(ev.RunStarted(run_id=None, task=None, topology=None, host_params=1, config_json=None))
    w.emit(ev.StageChanged(from_stage=None, to_stage=None, reason=None), slot=None, seed=None)
    w.emit(ev.GateEvaluated(gate=None, target_stage=None, passed=None), slot="s")
    w.emit(ev.RunFinished(status=None, reason=None))
    w.close()
    state = fold_tables(read_memory(sink))
    assert state.run_id == "" and state.config == {} and state.end_status == "failed"
    assert state.slots["?"].stage == "?" and state.gates[0].gate == ""


def test_status_running_stalled_crashed():
    state = Fold().state
    assert state.status(now=100) == "waiting"
    state.heartbeat_s, state.last_wall, state.last_progress_wall = 1.0, 100.0, 100.0
    assert state.status(now=101) == "running"
    assert state.status(now=105) == "stalled"        # no event at all for > 3 heartbeats
    state.last_wall = 199.0                          # heartbeats go on, progress does not
    assert state.status(now=200) == "stalled"
    assert state.status(now=260) == "crashed"        # silence past the crash threshold
    state.end_status = "failed"
    assert state.status(now=10_000) == "failed"


def test_replay_backward_restarts_from_a_checkpoint(log):
    replay = Replay(log, cursor=len(log), checkpoint_every=1_000)
    assert sorted(replay._checkpoints) == list(range(0, len(log), 1_000))
    loss_at_end = replay.state.batches["loss"]
    for target in (12_345, 3_001, 19_999, 12_345, 0, 7):
        replay.seek(target)
        assert replay.cursor == target
        assert snapshot(replay.state) == snapshot(fold_tables(log.slice(0, target)))
    replay.seek(len(log))  # checkpoints share the series arrays, frozen so no view changes another
    np.testing.assert_array_equal(replay.state.batches["loss"], loss_at_end)
    with pytest.raises(ValueError):
        replay.state.batches["loss"][0] = 1.0


def test_replay_follows_a_growing_log(log):
    head = EventLog(log.slice(0, 9_000))
    replay = Replay(head, checkpoint_every=2_000)
    head.extend(log.slice(9_000, len(log)))
    assert replay.cursor == 9_000 and replay.length == len(log)
    for target in (15_000, 4_500, len(log)):
        replay.seek(target)
        assert snapshot(replay.state) == snapshot(fold_tables(log.slice(0, target)))


def test_replay_seeks(log):
    replay = Replay(log, cursor=0)
    assert replay.state.events == 0
    replay.next("panic")
    panic_row = replay.cursor - 1
    assert log.event(panic_row)[0] == "governor_panic" and replay.state.governor[-1].kind == "panic"
    epoch_before = replay.state.epoch
    replay.next("epoch")
    assert log.event(replay.cursor - 1)[0] == "epoch_completed" and replay.state.epoch >= epoch_before
    replay.next("gate_failure")
    assert replay.state.gates[-1].passed is False
    here = replay.cursor
    replay.previous("panic")
    assert replay.cursor == panic_row + 1 and replay.cursor < here
    assert snapshot(replay.seek(len(log))) == snapshot(fold_tables(log.tables))
    replay.seek(10)
    assert replay.state.events == 10


def test_replay_targets_are_the_rows_a_plain_scan_finds(log):
    rows = events(log)
    for target, (kind, cond) in TARGETS.items():
        want = [i for i, (k, r) in enumerate(rows) if k == kind and (cond is None or r.get(cond[0]) == cond[1])]
        assert Replay(log, cursor=0).positions(target).tolist() == want and want, target


def _ranked(moves_by_rank: dict[int, list[tuple[int, str]]]) -> KindTables:
    out = KindTables()
    for rank, moves in moves_by_rank.items():
        sink = MemorySink(rank=rank)
        w = writer(sink, rank=rank)
        for epoch, stage in moves:
            w.emit(ev.StageChanged(from_stage="X", to_stage=stage), slot="s0", seed="a", epoch=epoch)
            w.emit(ev.EpochCompleted(train_loss=1, train_acc=1, val_loss=1, val_acc=float(rank)), epoch=epoch)
        w.close()
        out = out.extended(read_memory(sink))
    return out


def test_ranks_that_agree_and_ranks_that_diverge():
    same = [(1, "GERMINATED"), (2, "TRAINING"), (5, "BLENDING")]
    state = fold_tables(_ranked({0: same, 1: same}))
    assert state.ranks.count == 2 and state.ranks.divergence is None
    assert state.epochs["val_acc"].tolist() == [0.0, 0.0, 0.0]  # rank 0's view by default
    assert fold_tables(_ranked({0: same, 1: same}), rank=1).epochs["val_acc"].tolist() == [1.0, 1.0, 1.0]
    bad = fold_tables(_ranked({0: same, 1: same[:2] + [(6, "BLENDING")]}))
    assert "rank 1 diverged from rank 0 at lifecycle move 2" in bad.ranks.divergence
    log = EventLog(_ranked({0: same, 1: same}))  # both ranks in one order, by wall time
    rows = [log.event(i)[1] for i in range(len(log))]
    assert sorted(r["rank"] for r in rows) == [0] * 7 + [1] * 7
    walls = [(r["wall_time"], r["rank"], r["seq"]) for r in rows]
    assert walls == sorted(walls)


def test_env_filter_folds_one_environment_and_keeps_run_wide_kinds():
    sink = MemorySink()
    w = writer(sink)
    w.emit(ev.RunStarted(run_id="p", task="t", topology="cnn", host_params=1, num_envs=3))
    for env in range(3):
        w.emit(ev.Reward(total=float(env), components={"rent": -0.1 * env}), env=env)
    w.close()
    tables = read_memory(sink)
    state = fold_tables(tables, env=2)
    assert state.rewards["total"].tolist() == [2.0] and state.run_id == "p" and state.end_status
    assert state.reward_components["rent"]["value"].tolist() == [pytest.approx(-0.2)]
    assert fold_tables(tables).rewards["total"].tolist() == [0.0, 1.0, 2.0]


def test_a_kind_with_null_ratios_folds_them_as_nan_per_slot():
    sink = MemorySink()
    w = writer(sink)
    expected = []
    for i in range(60):
        ratio = None if i % 7 == 3 else i / 100
        w.emit(ev.GradientStats(seed_norm=float(i), host_norm=2.0, ratio=ratio, health=1 - i / 200,
                                exploding=i == 41), slot="s0" if i % 2 else "s1")
        expected.append((i, ratio))
        if i % 9 == 8:
            w.flush()  # several batches
    w.close()
    grads = fold_tables(read_memory(sink)).grads
    for slot, parity in (("s0", 1), ("s1", 0)):
        want = [(i, r) for i, r in expected if i % 2 == parity]
        assert grads[slot]["seed_norm"].tolist() == [float(i) for i, _ in want]
        got = grads[slot]["ratio"].tolist()
        assert [None if np.isnan(g) else g for g in got] == [r for _, r in want]
        assert grads[slot]["exploding"].tolist() == [float(i == 41) for i, _ in want]


def test_lazy_rows_are_made_when_read_and_last_makes_one_row():
    asked = []

    def make(lo, hi):
        asked.append((lo, hi))
        return {"x": np.arange(lo, hi) * 2.0, "y": np.arange(lo, hi) + 100.0}

    s = Series("x", "y")
    s.append(x=np.array([-2.0]), y=np.array([99.0]))
    s.append_lazy(5, make)
    assert len(s) == 6 and asked == []
    assert s.last("x") == 8.0 and asked == [(4, 5)]  # only the last row was made
    checkpoint = copy.deepcopy(s)
    assert s["x"].tolist() == [-2.0, 0.0, 2.0, 4.0, 6.0, 8.0] and asked == [(4, 5), (0, 5)]
    assert s["y"].tolist() == [99.0, 100.0, 101.0, 102.0, 103.0, 104.0] and len(asked) == 2  # made once
    assert checkpoint["y"][-1] == 104.0 and len(asked) == 2  # the copy shares what was made
    s.append(x=np.array([10.0]), y=np.array([105.0]))
    assert s.last("x") == 10.0 and s["x"][-2:].tolist() == [8.0, 10.0] and len(checkpoint) == 6
    with pytest.raises(ValueError):
        s["x"][0] = 1.0  # shared with checkpoints: read-only


def test_the_fold_makes_the_batch_columns_only_when_read(log):
    state = fold_tables(log.tables)
    assert all(isinstance(c, _Lazy) for c in state.batches._chunks["loss"])
    rows = log.tables.rows("batch_metrics")
    assert state.batches.last("samples_per_s") == rows[-1]["samples_per_s"]
    assert state.batches["loss"].tolist() == [r["loss"] for r in rows]
    assert state.batches["step"].tolist() == [r["step"] for r in rows]


def test_format_1_logs_read_and_fold_like_format_2(tmp_path):
    from pathlib import Path

    from telemetry_schema.v1 import convert

    data = Path(__file__).parent / "data" / "v1"
    old = read_run(data / "v1-synth")
    assert old.num_rows == 641 and old.corrupt == [] and old.torn_bytes == 0
    assert {k: old.table(k).num_rows for k in ("batch_metrics", "gate_evaluated", "stage_changed")} == \
        {"batch_metrics": 550, "gate_evaluated": 10, "stage_changed": 4}
    import shutil

    shutil.copytree(data / "v1-synth", tmp_path / "run")
    written = convert(tmp_path / "run")
    assert len(written) == len(old.kinds)
    new = read_run(tmp_path / "run")  # the converted streams are read first
    assert snapshot(fold_tables(new)) == snapshot(fold_tables(old))
    ranks = fold_tables(read_run(data / "v1-ranks"), rank=None)
    assert ranks.ranks.count == 2 and ranks.ranks.divergence is None


def test_a_long_followed_run_keeps_its_tables_in_few_chunks(log):
    from telemetry_schema.eventlog import SETTLE_CHUNKS

    grown = EventLog()
    for start in range(0, 6_000, 20):  # 300 polls of 20 events
        grown.extend(log.slice(start, start + 20))
    chunks = grown.tables.table("batch_metrics").column(0).num_chunks
    assert chunks <= 2 * SETTLE_CHUNKS + 1
    assert snapshot(fold_tables(grown.tables)) == snapshot(fold_tables(log.slice(0, 6_000)))
    assert [grown.event(i)[1]["seq"] for i in (0, 2_999, 5_999)] == [log.event(i)[1]["seq"] for i in (0, 2_999, 5_999)]
