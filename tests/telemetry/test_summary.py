"""The summary file a run's writer keeps: the counts a run list shows, without reading the log."""

from __future__ import annotations

import json

import pytest

from telemetry_schema import events as ev
from telemetry_schema.fold import fold_tables
from telemetry_schema.rundir import create_run, read_run
from telemetry_schema.state import status_of
from telemetry_schema.summary import SUMMARY, read_summary
from telemetry_schema.synth import SynthConfig, generate
from telemetry_schema.writer import WriterConfig


def test_the_summary_of_a_finished_run_matches_its_fold(tmp_path):
    run = generate(tmp_path, SynthConfig(events=5000, seed=4, run_id="s"))
    tally = read_summary(run)
    state = fold_tables(read_run(run))
    assert (tally.run_id, tally.task, tally.end_status) == (state.run_id, state.task, state.end_status)
    assert tally.epochs == len(state.epochs) and tally.last_epoch == state.epoch
    assert tally.best_val_acc == pytest.approx(state.best_val_acc())
    assert (tally.fossilized, tally.pruned, tally.panics) == (state.seeds_fossilized(), state.seeds_pruned(),
                                                             state.panics())
    assert tally.events == state.events and tally.last_wall == pytest.approx(state.last_wall)
    assert status_of(tally.end_status, tally.last_wall, tally.last_progress_wall, tally.heartbeat_s, 0.0) == \
        state.status(0.0) == "completed"


def test_a_live_run_keeps_its_summary_current_and_a_dead_one_reads_as_crashed(tmp_path):
    clock = {"now": 100.0}
    started = ev.RunStarted(run_id="live", task="t", topology="cnn", host_params=1, heartbeat_s=1.0, planned_epochs=5)
    rw = create_run(tmp_path, started, config=WriterConfig(heartbeat_s=0, summary_every=5.0),
                    clock=lambda: clock["now"], wall_clock=lambda: 1_000.0, background=False)
    rw.writer.emit(ev.EpochCompleted(train_loss=1, train_acc=1, val_loss=1, val_acc=40.0), epoch=1)
    clock["now"] += 1.0
    rw.writer.flush()
    assert read_summary(tmp_path / "live").epochs == 0  # written at create, not again within 5 s
    clock["now"] += 5.0
    rw.writer.emit(ev.EpochCompleted(train_loss=1, train_acc=1, val_loss=1, val_acc=45.0), epoch=2)
    rw.writer.flush()
    tally = read_summary(tmp_path / "live")
    assert (tally.epochs, tally.best_val_acc, tally.end_status, tally.planned_epochs) == (2, 45.0, None, 5)
    last = tally.last_wall
    assert status_of(None, last, tally.last_progress_wall, tally.heartbeat_s, last + 1) == "running"
    assert status_of(None, last, tally.last_progress_wall, tally.heartbeat_s, last + 3600) == "crashed"
    rw.close()
    assert read_summary(tmp_path / "live").end_status == "completed"


@pytest.mark.parametrize("content", ["", "null", "[1]", '{"epochs": "many", "best_val_acc": NaN}'])
def test_a_damaged_summary_is_ignored_field_by_field(tmp_path, content):
    (tmp_path / SUMMARY).write_text(content)
    tally = read_summary(tmp_path)
    assert tally is None or (tally.epochs == 0 and tally.best_val_acc is None)


def test_other_ranks_keep_no_summary(tmp_path):
    for rank in (0, 1):
        with create_run(tmp_path, ev.RunStarted(run_id="d", task="t", topology="cnn", host_params=1, world_size=2),
                        rank=rank):
            pass
    assert json.loads((tmp_path / "d" / SUMMARY).read_text())["events"] == 2  # rank 0's own


def test_a_run_list_row_from_the_summary_equals_the_row_from_the_log(tmp_path):
    from telemetry_schema.runs import summarize

    for seed, finish in ((1, True), (2, False)):
        run = generate(tmp_path, SynthConfig(events=3000, seed=seed, run_id=f"r{seed}", finish=finish))
        for now in (1.7e9 + 60, 1.7e9 + 1e6):  # while its heartbeats are fresh, and long after
            fast, slow = summarize(run, now), summarize(run, now, read_log=True)
            assert fast == slow, (seed, now)
    (tmp_path / "r1" / SUMMARY).unlink()  # a run without one is read whole
    assert summarize(tmp_path / "r1").epochs > 0


def test_tags_are_kept_beside_the_run_and_filter_the_run_list(tmp_path):
    from telemetry_schema.runs import list_runs, matches, summarize
    from telemetry_schema.tags import TagError, read_tags, write_tags

    a = generate(tmp_path, SynthConfig(events=500, seed=1, run_id="alpha"))
    b = generate(tmp_path, SynthConfig(events=500, seed=2, run_id="beta", finish=False))
    assert write_tags(a, ["baseline", " wide:2x ", "baseline"]) == ["baseline", "wide:2x"]
    assert read_tags(a) == ["baseline", "wide:2x"] and read_tags(b) == []
    for bad in ("", "x" * 41, "a\nb", "[red]", None):
        with pytest.raises(TagError):
            write_tags(b, [bad])
    (b / "tags.json").write_text('{"not": "a list"}')
    assert read_tags(b) == []
    rows = [summarize(p, now=1.7e9 + 1e6) for p in list_runs(tmp_path)]
    assert [r.run_id for r in rows if matches(r, tag="baseline")] == ["alpha"]
    assert [r.run_id for r in rows if matches(r, status="crashed")] == ["beta"]
    assert [r.run_id for r in rows if matches(r, text="ALP")] == ["alpha"]
    assert {r.run_id: r.tags for r in rows}["alpha"] == ("baseline", "wide:2x")
