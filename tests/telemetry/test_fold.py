"""The run-state fold: values match the log, incremental equals whole, replay seeks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from telemetry_schema import events as ev
from telemetry_schema.fold import Fold, fold_table
from telemetry_schema.reader import read_log
from telemetry_schema.replay import Replay
from telemetry_schema.synth import SynthConfig, generate
from telemetry_schema.writer import EventWriter, WriterConfig


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    run = generate(tmp_path_factory.mktemp("runs"), SynthConfig(events=20_000, seed=1, run_id="fold"))
    return read_log(run / "events.arrows").table


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


def test_incremental_fold_equals_whole_fold(table):
    whole = fold_table(table)
    fold = Fold()
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, table.num_rows), size=40, replace=False))
    start = 0
    for cut in list(cuts) + [table.num_rows]:
        fold.update(table.slice(start, cut - start))
        start = cut
    assert snapshot(fold.state) == snapshot(whole)


def test_fold_of_many_batches_equals_fold_of_one(table):
    # the fold takes each kind batch by batch; chunk boundaries must not change the result
    one = pa.Table.from_batches([table.combine_chunks().to_batches()[0]])
    rng = np.random.default_rng(1)
    cuts = [0, *np.sort(rng.choice(np.arange(1, table.num_rows), size=25, replace=False)).tolist(), table.num_rows]
    many = pa.Table.from_batches([one.slice(a, b - a).to_batches()[0] for a, b in zip(cuts, cuts[1:])])
    assert len(many.to_batches()) == 26 and len(one.to_batches()) == 1
    assert snapshot(fold_table(many)) == snapshot(fold_table(one))


def test_fold_values_match_the_log(table):
    state = fold_table(table)
    rows = table.to_pylist()
    epochs = [r for r in rows if r["kind"] == "epoch_completed"]
    assert state.epochs["val_acc"].tolist() == [r["epoch_completed"]["val_acc"] for r in epochs]
    assert state.best_val_acc() == max(r["epoch_completed"]["val_acc"] for r in epochs)
    gates = [r for r in rows if r["kind"] == "gate_evaluated"]
    assert [g.checks_failed for g in state.gates] == [r["gate_evaluated"]["checks_failed"] for r in gates]
    assert state.seeds_fossilized() == sum(r["kind"] == "seed_fossilized" for r in rows)
    assert state.panics() == sum(r["kind"] == "governor_panic" for r in rows)
    # the current stage of each slot is the last stage change it saw
    for slot_id, slot in state.slots.items():
        moves = [r["stage_changed"]["to_stage"] for r in rows if r["kind"] == "stage_changed" and r["slot"] == slot_id]
        assert slot.stage == (moves[-1] if moves else "DORMANT")
    # a slot's spans tile its lifecycle: each span ends where the next one starts
    for slot_id in state.slots:
        spans = [s for s in state.spans if s.slot == slot_id]
        for a, b in zip(spans, spans[1:]):
            assert a.end_epoch == b.start_epoch or b.stage == "GERMINATED"
    assert state.end_status == "completed" and state.status(now=0) == "finished"


def test_alpha_of_a_fresh_seed_is_not_stale(tmp_path):
    """A germination after alpha ticks in the same folded batch resets the slot's values."""
    sink = pa.BufferOutputStream()
    w = EventWriter(sink, config=WriterConfig(heartbeat_s=0, flush_interval=3600))
    w.emit(ev.AlphaChanged(value=0.8, target=1.0, mode="up"), slot="s", seed="old")
    w.emit(ev.Counterfactual(real_acc=50, off_acc=48, contribution=2.0), slot="s", seed="old")
    w.emit(ev.SeedGerminated(blueprint="lora", params=10), slot="s", seed="new")
    w.close()
    state = fold_table(pa.ipc.open_stream(sink.getvalue()).read_all())
    slot = state.slots["s"]
    assert (slot.seed_id, slot.alpha, slot.contribution) == ("new", 0.0, None)


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
    assert state.status(now=10_000) == "finished"


def test_replay_backward_restarts_from_a_checkpoint(table):
    replay = Replay(table, cursor=table.num_rows, checkpoint_every=1_000)
    assert sorted(replay._checkpoints) == list(range(0, table.num_rows, 1_000))
    loss_at_end = replay.state.batches["loss"]
    for target in (12_345, 3_001, 19_999, 12_345, 0, 7):
        replay.seek(target)
        assert replay.cursor == target
        assert snapshot(replay.state) == snapshot(fold_table(table.slice(0, target)))
    # checkpoints share the series arrays, which are frozen so no view can change another
    replay.seek(table.num_rows)
    np.testing.assert_array_equal(replay.state.batches["loss"], loss_at_end)
    with pytest.raises(ValueError):
        replay.state.batches["loss"][0] = 1.0


def test_replay_rebased_on_a_rechunked_longer_table(table):
    head = table.slice(0, 9_000)
    replay = Replay(head, checkpoint_every=2_000)
    with pytest.raises(ValueError):
        replay.rebase(table.slice(0, 100))
    replay.rebase(table.combine_chunks())  # the same first 9,000 events, and more
    assert replay.cursor == 9_000 and replay.length == table.num_rows
    for target in (15_000, 4_500, table.num_rows):
        replay.seek(target)
        assert snapshot(replay.state) == snapshot(fold_table(table.slice(0, target)))


def test_replay_seeks(table):
    replay = Replay(table, cursor=0)
    assert replay.state.events == 0
    replay.next("panic")
    panic_row = replay.cursor - 1
    assert table.column("kind")[panic_row].as_py() == "governor_panic"
    assert replay.state.governor[-1].kind == "panic"
    epoch_before = replay.state.epoch
    replay.next("epoch")
    assert table.column("kind")[replay.cursor - 1].as_py() == "epoch_completed"
    assert replay.state.epoch >= epoch_before
    replay.next("gate_failure")
    assert replay.state.gates[-1].passed is False
    here = replay.cursor
    replay.previous("panic")
    assert replay.cursor == panic_row + 1 and replay.cursor < here
    assert snapshot(replay.seek(table.num_rows)) == snapshot(fold_table(table))
    replay.seek(10)
    assert replay.state.events == 10


def test_replay_targets_are_the_rows_a_plain_scan_finds(table):
    from telemetry_schema.replay import TARGETS

    rows = table.select(["kind", "gate_evaluated"]).to_pylist()
    for target, (kind, cond) in TARGETS.items():
        want = [i for i, r in enumerate(rows) if r["kind"] == kind
                and (cond is None or (r[kind] or {}).get(cond[0]) == cond[1])]
        assert Replay(table, cursor=0).positions(target).tolist() == want and want, target
    ranked = pa.concat_tables([table.slice(0, 500), table.slice(0, 500).set_column(
        3, "rank", pa.array([1] * 500, pa.int16()))])
    gates = Replay(ranked, cursor=0, rank=1).positions("gate_failure").tolist()
    assert gates and all(g >= 500 for g in gates)


def _ranked_table(moves_by_rank: dict[int, list[tuple[int, str]]]) -> pa.Table:
    tables = []
    for rank, moves in moves_by_rank.items():
        sink = pa.BufferOutputStream()
        w = EventWriter(sink, rank=rank, config=WriterConfig(heartbeat_s=0, flush_interval=3600))
        for epoch, stage in moves:
            w.emit(ev.StageChanged(from_stage="X", to_stage=stage), slot="s0", seed="a", epoch=epoch)
            w.emit(ev.EpochCompleted(train_loss=1, train_acc=1, val_loss=1, val_acc=float(rank)), epoch=epoch)
        w.close()
        tables.append(pa.ipc.open_stream(sink.getvalue()).read_all())
    from telemetry_schema.reader import merge_streams

    return merge_streams(tables)


def test_ranks_that_agree_and_ranks_that_diverge():
    same = [(1, "GERMINATED"), (2, "TRAINING"), (5, "BLENDING")]
    state = fold_table(_ranked_table({0: same, 1: same}))
    assert state.ranks.count == 2 and state.ranks.divergence is None
    assert state.epochs["val_acc"].tolist() == [0.0, 0.0, 0.0]  # rank 0's view by default
    other = Fold(rank=1)
    other.update(_ranked_table({0: same, 1: same}))
    assert other.state.epochs["val_acc"].tolist() == [1.0, 1.0, 1.0]
    bad = fold_table(_ranked_table({0: same, 1: same[:2] + [(6, "BLENDING")]}))
    assert "rank 1 diverged from rank 0 at lifecycle move 2" in bad.ranks.divergence


def test_env_filter_folds_one_environment():
    sink = pa.BufferOutputStream()
    w = EventWriter(sink, config=WriterConfig(heartbeat_s=0, flush_interval=3600))
    for env in range(3):
        w.emit(ev.Reward(total=float(env), components={"rent": -0.1 * env}), env=env)
    w.close()
    table = pa.ipc.open_stream(sink.getvalue()).read_all()
    fold = Fold(env=2)
    fold.update(table)
    assert fold.state.rewards["total"].tolist() == [2.0]
    assert fold.state.reward_components["rent"]["value"].tolist() == [pytest.approx(-0.2)]
    assert fold_table(table).rewards["total"].tolist() == [0.0, 1.0, 2.0]


def test_filters_pick_the_same_rows_as_filtering_the_table(table):
    import pyarrow.compute as pc

    env = pc.cast(pc.bit_wise_and(table.column("epoch"), 1), pa.int16())
    rank = pc.cast(pc.equal(pc.bit_wise_and(table.column("step"), 3), 3), pa.int16())
    mixed = table.set_column(table.schema.get_field_index("env"), "env", env)
    mixed = mixed.set_column(mixed.schema.get_field_index("rank"), "rank", rank)
    for r, e in ((0, None), (1, None), (0, 1), (1, 0), (None, 1)):
        fold = Fold(rank=r, env=e)
        fold.update(mixed)
        expected = mixed
        if r is not None:
            expected = expected.filter(pc.equal(expected.column("rank"), r))
        if e is not None:
            expected = expected.filter(pc.equal(expected.column("env"), e))
        plain = Fold(rank=None)
        plain.update(expected)
        assert 0 < fold.state.events < table.num_rows
        assert snapshot(fold.state) == snapshot(plain.state), (r, e)


def test_started_wall_comes_from_run_started(table):
    state = fold_table(table)
    assert state.started_wall == table.column("wall_time")[0].as_py().timestamp()
    assert state.started_wall > 1_600_000_000


def test_a_kind_holding_most_rows_and_a_few_rows_fold_to_the_same_values():
    """Gradient stats as most of a table (filtered by a mask, over chunks, from an offset) and
    as a few of its rows (taken) fold to the same values, a null ratio as NaN."""
    sink = pa.BufferOutputStream()
    w = EventWriter(sink, config=WriterConfig(heartbeat_s=0, flush_interval=3600))
    expected = []
    for i in range(60):
        ratio = None if i % 7 == 3 else i / 100
        w.emit(ev.GradientStats(seed_norm=float(i), host_norm=2.0, ratio=ratio, health=1 - i / 200,
                                exploding=i == 41), slot="s0" if i % 2 else "s1")
        expected.append((i, ratio))
        if i % 4 == 0:
            w.emit(ev.Heartbeat(events_emitted=i))
        if i % 9 == 8:
            w.flush()  # several chunks
    w.close()
    table = pa.ipc.open_stream(sink.getvalue()).read_all().slice(1)  # from an offset: the first event dropped
    expected = expected[1:]
    assert table.num_rows == 59 + 15 + 1 and len(table.to_batches()) > 5
    beats = table.take([i for i, kind in enumerate(table.column("kind").to_pylist()) if kind == "heartbeat"])
    filler = pa.concat_tables([table] + [beats] * 40)  # gradient stats now 59 rows of 675
    for t in (table, filler):
        grads = fold_table(t).grads
        for slot, parity in (("s0", 1), ("s1", 0)):
            want = [(i, r) for i, r in expected if i % 2 == parity]
            assert grads[slot]["seed_norm"].tolist() == [float(i) for i, _ in want]
            got = grads[slot]["ratio"].tolist()
            assert [None if np.isnan(g) else g for g in got] == [r for _, r in want]
            assert grads[slot]["exploding"].tolist() == [float(i == 41) for i, _ in want]


def test_lazy_rows_are_made_when_read_and_last_makes_one_row():
    import copy

    from telemetry_schema.state import Series

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


def test_the_fold_makes_the_batch_columns_only_when_read(table):
    from telemetry_schema.state import _Lazy

    state = fold_table(table)
    assert all(isinstance(c, _Lazy) for c in state.batches._chunks["loss"])
    rows = [r for r in table.to_pylist() if r["kind"] == "batch_metrics"]
    assert state.batches.last("samples_per_s") == rows[-1]["batch_metrics"]["samples_per_s"]
    assert state.batches["loss"].tolist() == [r["batch_metrics"]["loss"] for r in rows]
    assert state.batches["step"].tolist() == [r["step"] for r in rows]
