"""The real app, driven by its pilot on synthetic logs: panels show the log's values, keys move state."""

from __future__ import annotations

import io
import shutil

import numpy as np
from rich.console import Console
from textual.widgets import DataTable, Input, Static, TabbedContent

from telemetry_schema.fold import fold_tables
from telemetry_schema.rundir import read_run
from tui.app import EsperApp
from tui.screens.detail import EventDetail, SeedDetail
from tui.screens.help import HelpScreen
from tui.source import Target, resolve
from tui.widgets.eventlog import EventList
from tui.widgets.eventpanel import EventLogPanel
from tui.widgets.header import RunHeader

from .conftest import FIXED_NOW, run_events, wait_for, wait_loaded


def make_app(path, **kw) -> EsperApp:
    return EsperApp(resolve(path), clock=lambda: FIXED_NOW, **kw)


def header(app) -> str:
    return text_of(app.query_one(RunHeader))


def text_of(static: Static) -> str:
    """What a Static shows, as plain text (rich renderables rendered wide)."""
    console = Console(width=300, record=True, file=io.StringIO())
    console.print(static.content)
    return console.export_text()


def mentions(value, text: str) -> bool:
    """Whether any string inside an event row contains ``text`` (case-insensitive)."""
    if isinstance(value, str):
        return text in value.lower()
    if isinstance(value, dict):
        return any(mentions(v, text) for k, v in value.items() if k not in ("wall_time",))
    if isinstance(value, (list, tuple)):
        return any(mentions(v, text) for v in value)
    return False


def cells(table: DataTable, row: int) -> list[str]:
    return [str(getattr(c, "plain", c)).strip() for c in table.get_row_at(row)]


async def test_slots_table_and_header_show_the_log(run_dir, run_state):
    app = make_app(run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        text = header(app)
        assert "synth-run" in text and "synthetic-images" in text and " completed " in text
        assert f"epoch {run_state.epoch}" in text and "log intact" in text
        table = app.query_one("#slots", DataTable)
        assert table.row_count == len(run_state.slot_ids) == 3
        for i, slot_id in enumerate(run_state.slot_ids):
            s = run_state.slots[slot_id]
            row = cells(table, i)
            assert row[0] == slot_id and row[3] == s.stage and row[2] == (s.blueprint or "—")
            assert row[5].endswith(f"{s.alpha:.2f}")
            assert row[6].startswith(f"{s.ratio:.3f}") if s.ratio is not None else row[6] == "—"
            assert row[9] == (f"{s.contribution:+.2f}" if s.contribution is not None else "—")


async def test_history_tabs_list_every_record(run_dir, run_state):
    app = make_app(run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("3")
        gates = app.query_one("#gates", DataTable)
        assert gates.row_count == len(run_state.gates)
        failed = [i for i, g in enumerate(run_state.gates) if not g.passed]
        assert failed and cells(gates, failed[0])[5] == "FAIL"
        assert cells(gates, failed[0])[6] == ", ".join(run_state.gates[failed[0]].checks_failed)
        await pilot.press("4")
        gov = app.query_one("#governor", DataTable)
        assert gov.row_count == len(run_state.governor)
        panic = next(i for i, g in enumerate(run_state.governor) if g.kind == "panic")
        rec = run_state.governor[panic]
        assert cells(gov, panic)[1:5] == ["panic", rec.reason, f"{rec.loss:.3f}", f"{rec.threshold:.3f}"]
        await pilot.press("5")
        dec = app.query_one("#decisions", DataTable)
        assert dec.row_count == len(run_state.decisions)
        d = run_state.decisions[0]
        assert cells(dec, 0)[3:7] == [d.op, d.slot or "—", d.blueprint or "—", d.reason]
        await pilot.press("h")
        assert app.query_one(TabbedContent).active == "tab-governor"


async def test_replay_keys_move_the_cursor(run_dir):
    kinds = [e["kind"] for e in run_events(read_run(run_dir))]
    app = make_app(run_dir, replay=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot)
        s = app.session
        assert s.replay is not None and s.cursor == 0 and s.state.events == 0
        await pilot.press("full_stop", "full_stop", "full_stop", "comma")
        assert s.cursor == 2 and s.state.events == 2
        await pilot.press("p")  # seek to the first governor panic
        first_panic = kinds.index("governor_panic")
        assert s.cursor == first_panic + 1 and s.state.panics() == 1
        assert s.state.governor[-1].kind == "panic"
        await pilot.press("4")
        assert app.query_one("#governor", DataTable).row_count == len(s.state.governor)
        await pilot.press("x")  # next gate failure: the state's last gate failed
        assert s.state.gates[-1].passed is False
        await pilot.press("s")
        assert kinds[s.cursor - 1] == "stage_changed"
        await pilot.press("right_square_bracket")
        assert kinds[s.cursor - 1] == "epoch_completed"
        epoch = s.state.epoch
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert len(s.state.epochs) <= epoch
        await pilot.press("G")
        assert s.cursor == len(kinds) and s.state.end_status == "completed"
        await pilot.press("P")
        assert kinds[s.cursor - 1] == "governor_panic"
        assert f"event {s.cursor:,}/{len(kinds):,}" in header(app)
        await pilot.press("g")
        assert s.cursor == 0
        await pilot.press("plus", "plus", "space")
        assert s.playing and s.speed == 256
        await wait_for(pilot, lambda: s.cursor > 500)
        await pilot.press("space")
        assert not s.playing
        await pilot.press("r")
        assert s.replay is None and s.state.events == len(kinds)


async def test_event_log_filters_and_detail(run_dir):
    rows = run_events(read_run(run_dir))
    app = make_app(run_dir)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("6")
        panel = app.query_one(EventLogPanel)
        events = app.query_one(EventList)
        assert events.count == len(rows) and app.focused is events
        kinds = sorted({e["kind"] for e in rows})
        await pilot.press("t", "t")  # second kind in sorted order
        assert panel.flt.kind == kinds[1]
        assert events.rows.tolist() == [p for p, e in enumerate(rows) if e["kind"] == kinds[1]]
        await pilot.press("escape", "o")
        assert panel.flt.slot == "r0c0"
        assert events.rows.tolist() == [p for p, e in enumerate(rows) if e.get("slot") == "r0c0"]
        await pilot.press("escape", "slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"GRADIENT_LOW", "enter")
        assert panel.flt.text == "GRADIENT_LOW"
        assert events.rows.tolist() == [p for p, e in enumerate(rows) if mentions(e, "gradient_low")]
        assert events.count > 0
        await pilot.press("f")
        assert panel.follow is False
        await pilot.press("home", "enter")
        assert isinstance(app.screen, EventDetail)
        body = text_of(app.screen.query_one("#event-detail", Static))
        assert "gate_evaluated" in body and "seed_gradient_low" in body
        assert "The stage the gate guards entry to" in body
        await pilot.press("escape")
        assert not isinstance(app.screen, EventDetail)


async def test_seed_detail_help_and_quit(run_dir, run_state):
    app = make_app(run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("j", "enter")
        assert isinstance(app.screen, SeedDetail) and app.screen.slot == run_state.slot_ids[1]
        head = text_of(app.screen.query_one("#seed-head", Static))
        assert run_state.slots[run_state.slot_ids[1]].seed_id in head
        await pilot.press("escape", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "q")
    assert app.return_code == 0


async def test_waits_for_events_in_an_empty_run(tmp_path):
    run = tmp_path / "fresh-run"
    run.mkdir()
    (run / "run.json").write_text('{"run_id": "fresh-run", "task": "cifar10", "status": "running"}')
    app = EsperApp(Target("run", run), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        banner = text_of(app.query_one("#banner", Static))
        assert "waiting for the first events" in banner
        assert "waiting" in header(app) and "fresh-run" in header(app)


async def test_run_picker_lists_runs_and_opens_one(runs_dir):
    app = EsperApp(resolve(runs_dir), clock=lambda: FIXED_NOW + 2 * 86_400)  # beta-run (seed 2) + a day
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen.query_one("#picker-table", DataTable)
        assert table.row_count == 3
        await wait_for(pilot, lambda: all(cells(table, i)[1:][1] != "…" for i in range(3)))
        rows = {cells(table, i)[1:][0]: cells(table, i)[1:] for i in range(3)}
        assert rows["broken-run"][1] == "error" and "run_started.rank0.arrows: corrupt" in rows["broken-run"][2]
        assert rows["alpha-run"][1] == "completed" and int(rows["alpha-run"][3]) > 0
        assert rows["beta-run"][1] == "crashed"  # unfinished, silent for a day at the app's clock
        names = [cells(table, i)[1:][0] for i in range(3)]
        await pilot.press(*["j"] * names.index("alpha-run"), "enter")
        await wait_loaded(pilot)
        assert app.session.state.run_id == "alpha-run"
        assert np.isfinite(app.session.state.epochs["val_acc"]).all()


async def test_run_picker_judges_status_at_the_apps_clock_and_marks_corrupt_runs(runs_dir, tmp_path):
    beta = fold_tables(read_run(runs_dir / "beta-run"))
    many = tmp_path / "many"
    shutil.copytree(runs_dir / "alpha-run", many / "alpha-run")
    shutil.copytree(runs_dir / "beta-run", many / "beta-run")
    (many / "alpha-run" / "events" / "seed_pruned.rank0.arrows").write_bytes(b"garbage, not a stream")
    # a run list reads a run's summary file when it has one (damage done on disk since is found
    # when the run is opened); without one, the picker reads the log, and marks what is corrupt
    (many / "alpha-run" / "summary.json").unlink()
    # beta-run's summary file is the writer's last periodic one, up to summary_every older than
    # its last events (how stale depends on the generator's flush timing): judged from its log
    (many / "beta-run" / "summary.json").unlink(missing_ok=True)
    app = EsperApp(resolve(many), clock=lambda: beta.last_wall + 1.0)  # just after beta-run's last event
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen.query_one("#picker-table", DataTable)
        await wait_for(pilot, lambda: all(cells(table, i)[1:][1] != "…" for i in range(2)))
        rows = {cells(table, i)[1:][0]: cells(table, i)[1:] for i in range(2)}
        assert rows["beta-run"][1] == "running"
        assert rows["alpha-run"][1] == "completed corrupt" and int(rows["alpha-run"][3]) > 0


async def test_empty_log_file_waits(tmp_path):
    log = tmp_path / "heartbeat.rank0.arrows"
    log.write_bytes(b"")
    app = make_app(log)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        assert "waiting for the first events" in text_of(app.query_one("#banner", Static))


async def test_log_vanishing_while_followed_is_reported(runs_dir, tmp_path):
    log = tmp_path / "run_started.rank0.arrows"
    # an unfinished run's stream: never closed, so followed
    log.write_bytes((runs_dir / "beta-run" / "events" / log.name).read_bytes())
    app = EsperApp(resolve(log), clock=lambda: FIXED_NOW, poll_interval=0.05)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        assert app.session.state.run_id == "beta-run" and not app.session.ended
        log.unlink()
        await wait_for(pilot, lambda: app.error != "")
        assert "no such log file" in text_of(app.query_one("#banner", Static))
        assert app.session.state.run_id == "beta-run"  # what was read stays on screen
