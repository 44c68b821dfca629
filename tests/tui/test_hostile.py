"""Hostile input in esper-tui: markup, escapes and nulls in any log string, run.json of any shape,
failures of the loader, and bad --poll values. The real app, driven by its pilot."""

from __future__ import annotations

import json
import math

import pytest
from textual.widgets import DataTable, Static

from telemetry_schema.summary import SUMMARY
from tests.viewers.hostile import HOSTILE, write_hostile_run
from tui import fmt
from tui.app import EsperApp
from tui.cli import main
from tui.source import resolve

from .conftest import FIXED_NOW, wait_for, wait_loaded
from .test_app import cells, text_of

SHOWN = [fmt.plain(s) for s in HOSTILE if s is not None]
"""Each hostile string as it must appear on screen: as written, ESC shown as ␛."""
CLICK, LINK = HOSTILE[2], HOSTILE[1]


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory):
    return write_hostile_run(tmp_path_factory.mktemp("hostile"))


def screen_lines(app) -> tuple[list[str], list]:
    """The lines the screen shows now, and the segments of it that are links or click actions."""
    strips = app.screen._compositor.render_strips()
    lines = ["".join(seg.text for seg in strip) for strip in strips]
    live = [seg for strip in strips for seg in strip
            if seg.style is not None and (seg.style.link or "@click" in (seg.style.meta or {}))]
    return lines, live


def assert_inert(app, view: str) -> str:
    """No link, no log text made clickable, no raw control character: returns the screen text."""
    lines, live = screen_lines(app)
    screen = "\n".join(lines)
    assert not [s for s in live if s.style.link], view
    assert not [s for s in live if "quit" in s.text or "click me" in s.text], view  # a log string obeyed
    assert not any(ch in screen for ch in "\x1b\x07\x08\x9b"), view
    return screen


def screen_text(app) -> str:
    return "\n".join(screen_lines(app)[0])


async def visit(pilot, key: str, shows: str):
    """Press ``key``, then let the app run until the screen shows ``shows``."""
    await pilot.press(key)
    await wait_for(pilot, lambda: shows in screen_text(pilot.app))


async def test_markup_in_every_log_string_is_shown_as_text(hostile_dir):
    app = EsperApp(resolve(hostile_dir), clock=lambda: FIXED_NOW)
    seen: dict[str, str] = {}
    views = (("1", "slots", CLICK), ("2", "metrics", "alpha per slot"), ("3", "gates", CLICK),
             ("4", "governor", CLICK), ("5", "decisions", CLICK), ("6", "events", "follow: on"), ("7", "policy", CLICK))
    async with app.run_test(size=(220, 60)) as pilot:
        await wait_loaded(pilot)
        for key, view, shows in views:
            await visit(pilot, key, shows)
            if view == "events":  # the list follows the newest events: go up to the first
                await visit(pilot, "home", CLICK)
            seen[view] = assert_inert(app, view)
        await visit(pilot, "1", CLICK)
        await visit(pilot, "enter", "seed")  # the first slot's seed history
        await wait_for(pilot, lambda: "gates" in screen_text(app) and "stages" in screen_text(app))
        seen["seed detail"] = assert_inert(app, "seed detail")
        await visit(pilot, "escape", CLICK)
        await visit(pilot, "6", CLICK)
        await pilot.press("end")
        await visit(pilot, "enter", "run_finished")  # the newest event: run_finished, its reason hostile
        seen["event detail"] = assert_inert(app, "event detail")
        assert app.error == ""
    for tab in ("slots", "gates", "governor", "decisions", "events", "policy"):
        assert CLICK in seen[tab] and LINK in seen[tab], tab
    for text in SHOWN:
        assert all(text in seen[tab] for tab in ("slots", "gates", "decisions")), text
    assert "[/] [@click=app.quit]quit[/]" in seen["event detail"]
    assert "[/]" in seen["seed detail"]
    assert "None" not in seen["gates"] + seen["decisions"] + seen["slots"]  # nulls are empty


def test_plain_and_text_never_carry_markup_or_escapes():
    assert fmt.plain(None) == "" and fmt.plain(3) == "3"
    assert fmt.plain("\x1b[31mred\x1b[0m\r\n\x07") == "␛[31mred␛[0m␍␊␇"
    assert fmt.plain("a\nb", multiline=True) == "a\nb" and fmt.plain("a\x9bb\x7f") == "a\ufffdb␡"
    t = fmt.text("[bold]x[/bold] [@click=app.quit]q[/]", style="red")
    assert t.plain == "[bold]x[/bold] [@click=app.quit]q[/]" and not t.spans and str(t.style) == "red"


NO_SUMMARY = ("hostile-run", "nan-time", "[b]x[-i]")
"""Runs whose summary file is removed (as a run of an older writer has none): their rows are
made from run.json and the log, so run.json's strings and shapes reach the picker."""


def _runs_with_odd_manifests(tmp_path):
    """A directory of runs: hostile strings in run.json, run.json of every odd shape, a markup
    directory name."""
    runs = tmp_path / "runs"
    write_hostile_run(runs, "hostile-run")
    manifest = runs / "hostile-run" / "run.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(data | {"run_id": CLICK, "task": LINK, "status": "[/]"}))
    shapes = {"null-manifest": "null", "list-manifest": "[1, 2]", "string-manifest": '"running"',
              "bad-time": json.dumps({"run_id": "bad-time", "started_at": "yesterday", "status": None}),
              "nan-time": '{"started_at": NaN, "run_id": ["a"], "task": {"x": 1}}',
              "no-keys": "{}", "[b]x[-i]": json.dumps({"status": "completed"})}
    for name, text in shapes.items():
        write_hostile_run(runs, name if "[" not in name else "markup-name")
        run = runs / (name if "[" not in name else "markup-name")
        if "[" in name:
            run = run.rename(runs / name)
        (run / "run.json").write_text(text)
    for name in NO_SUMMARY:
        (runs / name / SUMMARY).unlink()
    return runs


async def test_the_picker_shows_run_json_of_any_shape(tmp_path):
    runs = _runs_with_odd_manifests(tmp_path)
    app = EsperApp(resolve(runs), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(200, 30)) as pilot:
        table = app.screen.query_one("#picker-table", DataTable)
        assert table.row_count == 8
        await wait_for(pilot, lambda: all(cells(table, i)[1:][1] != "…" for i in range(table.row_count)))
        rows = {cells(table, i)[1:][0]: cells(table, i)[1:] for i in range(table.row_count)}
        screen = assert_inert(app, "picker")
        # run.json's run id as written; the status and task come from the log (never run.json's
        # status '[/]'), the task as written
        assert rows[CLICK][1] == "failed" and rows[CLICK][2] == "[/]"
        assert {"null-manifest", "list-manifest", "string-manifest", "bad-time", "nan-time", "no-keys",
                "[b]x[-i]"} <= set(rows)  # odd run.json: the log's run id, or the directory name
        assert rows["nan-time"][2] == "[/]" and rows["bad-time"][1] == "failed"  # not strings: not shown
        assert CLICK in screen and "[b]x[-i]" in screen
        await pilot.press(*["j"] * list(rows).index("list-manifest"), "enter")
        await wait_loaded(pilot)  # a run whose run.json is a list opens
        assert app.error == "" and app.session.state.run_id == "list-manifest"


@pytest.mark.parametrize("manifest", ["null", "[1, 2]", '{"run_id": 5, "task": null, "started_at": "x"}'])
async def test_a_run_with_an_odd_run_json_opens(tmp_path, manifest):
    run = write_hostile_run(tmp_path, "odd")
    (run / "run.json").write_text(manifest)
    app = EsperApp(resolve(run), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        assert app.error == "" and "odd" in text_of(app.query_one("#header", Static))


def _broken_fold(monkeypatch):
    def boom(self, table):
        raise RuntimeError("fold exploded [/] on purpose")
    monkeypatch.setattr("telemetry_schema.runmodel.ScopedFold.update", boom)


async def test_any_error_of_the_first_read_is_shown_not_loading_forever(hostile_dir, monkeypatch):
    _broken_fold(monkeypatch)
    app = EsperApp(resolve(hostile_dir), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.error != "")
        banner = text_of(app.query_one("#banner", Static))
        assert "RuntimeError: fold exploded [/] on purpose" in banner and "loading" not in banner
        await wait_for(pilot, lambda: all(w.is_finished for w in app.workers))  # no thread left polling


async def test_any_error_while_following_is_shown(tmp_path, monkeypatch):
    run = write_hostile_run(tmp_path, "live", finish=False)
    app = EsperApp(resolve(run), clock=lambda: FIXED_NOW, poll_interval=0.05)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_loaded(pilot)

        def broken_poll(self):
            raise OSError("disk vanished")
        monkeypatch.setattr("tui.source.Source.poll", broken_poll)
        await wait_for(pilot, lambda: app.error != "")
        assert "OSError: disk vanished" in text_of(app.query_one("#banner", Static))
        await wait_for(pilot, lambda: all(w.is_finished for w in app.workers))


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e9", "0.001", "soon"])
def test_poll_out_of_bounds_is_one_line(capsys, tmp_path, value):
    assert main(["--poll", value, str(tmp_path / "missing")]) == 2  # refused before the path is looked at
    err = capsys.readouterr().err
    assert err.startswith("esper-tui: error: argument --poll") and err.count("\n") == 1


def test_poll_within_bounds_is_taken():
    from tui.cli import parse_args

    assert math.isclose(parse_args(["--poll", "0.5", "x"]).poll, 0.5)
