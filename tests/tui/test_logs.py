"""The app on logs of format 2 as they come: torn, partly corrupt, of unknown kinds, at their very
start, and format 1 logs read whole."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from textual.widgets import Static

from telemetry_schema import events as ev
from telemetry_schema.codec import BatchEncoder
from telemetry_schema.eventlog import EventLog
from telemetry_schema.fold import fold_tables
from telemetry_schema.rundir import create_run, read_run
from telemetry_schema.schema import KIND_KEY, VERSION_KEY, kind_schema
from telemetry_schema.writer import WriterConfig
from tui.widgets.eventlog import EventList
from tui.widgets.eventpanel import EventLogPanel

from .conftest import run_events, wait_for, wait_loaded
from .test_app import header, make_app, text_of

V1_DATA = Path(__file__).parent.parent / "telemetry" / "data" / "v1"


def write_flushed_run(runs_dir, run_id: str = "flushed-run", epochs: int = 6):
    """A run flushed once per epoch (each epoch its own batch in every stream), then closed:
    its last flush holds run_finished alone. Every event at one wall time, 1.7e9."""
    started = ev.RunStarted(run_id=run_id, task="synthetic-images", topology="cnn", host_params=10,
                            slot_ids=["r0c0"], heartbeat_s=5.0)
    with create_run(runs_dir, started, config=WriterConfig(heartbeat_s=0), clock=lambda: 0.0,
                    wall_clock=lambda: 1_700_000_000.0) as run:
        for epoch in range(1, epochs + 1):
            run.writer.emit(ev.EpochCompleted(train_loss=1.0, train_acc=50.0, val_loss=1.0, val_acc=float(epoch)),
                            epoch=epoch)
            run.writer.flush()
    return runs_dir / run_id


async def test_torn_tail_of_a_log_file_is_reported(tmp_path):
    stream = write_flushed_run(tmp_path) / "events" / "epoch_completed.rank0.arrows"
    log = tmp_path / stream.name
    log.write_bytes(stream.read_bytes()[:-20])  # the end-of-stream mark and the last batch's tail
    app = make_app(log)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_loaded(pilot)
        assert app.session.torn_bytes > 0 and not app.session.ended
        assert f"torn tail {app.session.torn_bytes} B" in header(app)
        assert app.session.length == 5  # the five whole batches, not the torn sixth
        assert app.session.state.epochs["val_acc"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


async def test_a_run_whose_last_flush_is_torn_shows_the_flushes_before_it(tmp_path):
    """The writer died while writing its last flush (run_finished): the events before it are
    shown, the torn tail is reported, and the silent run is crashed."""
    run = write_flushed_run(tmp_path)
    whole = EventLog(read_run(run))
    last = run / "events" / "run_finished.rank0.arrows"
    last.write_bytes(last.read_bytes()[:-20])
    app = make_app(run)
    async with app.run_test(size=(120, 24)) as pilot:
        await wait_loaded(pilot)
        s = app.session
        assert s.torn_bytes > 0 and not s.ended and s.length == len(whole) - 1  # all but run_finished
        text = header(app)
        assert f"torn tail {s.torn_bytes} B" in text and " crashed " in text and "epoch 6 " in text
        assert s.state.end_status is None and s.state.epochs["val_acc"].tolist() == [1.0, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("path", ["v1-synth", "v1-synth/events.arrows", "v1-ranks"])
async def test_a_format_1_log_opens_read_whole(path):
    """Format 1 logs (one wide stream per rank) are read whole, once, and shown like any run."""
    target = V1_DATA / path
    want = read_run(target)
    app = make_app(target)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_loaded(pilot)
        s = app.session
        assert s.ended and s.length == want.num_rows > 0
        text = header(app)
        assert " completed " in text and "log intact" in text
        state = fold_tables(want)
        assert s.state.run_id == target.parent.name if target.is_file() else target.name
        assert s.state.epoch == state.epoch and len(s.state.gates) == len(state.gates)
        assert s.multi_rank == (path == "v1-ranks")
        await pilot.press("6")  # the events of the rank shown (rank 0)
        assert app.query_one(EventList).count == sum(e["rank"] == 0 for e in run_events(want)) > 0


async def test_slot_filter_before_any_event_about_a_slot_shows_no_rows_and_no_error(tmp_path):
    app = make_app(write_flushed_run(tmp_path))  # slot r0c0 announced, no event about it yet
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("6", "o")
        panel, events = app.query_one(EventLogPanel), app.query_one(EventList)
        assert panel.flt.slot == "r0c0" and events.count == 0 and panel.problem == ""
        line = text_of(app.query_one("#event-filter-line", Static))
        assert f"0 of {app.session.length:,} events" in line and "no event has a field" not in line


async def test_a_lone_stream_of_an_unknown_kind_is_a_one_line_error(tmp_path):
    """A newer writer's kind: in a run directory it is skipped; opened alone, the app says so."""
    schema = kind_schema("heartbeat").with_metadata({VERSION_KEY: b"2.9", KIND_KEY: b"quantum_flux"})
    enc = BatchEncoder(schema)
    log = tmp_path / "quantum_flux.rank0.arrows"
    batch = pa.RecordBatch.from_pylist([{"seq": 0, "wall_time": 0, "rank": 0}], schema=schema)
    log.write_bytes(enc.schema_message + enc.encode(batch, 0, 0))
    app = make_app(log)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_for(pilot, lambda: app.error != "")
        assert app.error == f"{log}: events of kind 'quantum_flux', which this viewer does not know"
        assert app.error in text_of(app.query_one("#banner", Static))
    run = write_flushed_run(tmp_path)
    (run / "events" / log.name).write_bytes(log.read_bytes())
    app = make_app(run)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_loaded(pilot)
        assert app.error == "" and app.session.length == len(read_run(run)) == 8  # 6 epochs, start, end


async def test_a_run_with_one_corrupt_stream_opens_and_says_so(runs_dir, tmp_path):
    run = tmp_path / "alpha-run"
    shutil.copytree(runs_dir / "alpha-run", run)
    (run / "events" / "seed_pruned.rank0.arrows").write_bytes(b"garbage, not a stream")
    want = read_run(run)
    assert want.corrupt and want.num_rows > 1_000
    app = make_app(run)
    async with app.run_test(size=(160, 30)) as pilot:
        await wait_loaded(pilot)
        s = app.session
        assert app.error == "" and s.length == want.num_rows and s.state.run_id == "alpha-run"
        assert s.state.epoch == fold_tables(want).epoch > 0
        assert "CORRUPT: " in header(app) and "seed_pruned.rank0.arrows: corrupt at byte 0" in header(app)
