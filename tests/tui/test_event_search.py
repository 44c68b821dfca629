"""The Events tab's filters on long logs run in a worker: the screen stays live, "searching…"
shows meanwhile, only the newest search's rows are taken and followed events are still filtered.

The 10k-event fixture stands in for a long log: ``sync_rows`` is lowered to 0 so every filter
takes the worker path, and ``filter_rows`` is wrapped to hold chosen searches until released.
"""

from __future__ import annotations

import threading

import pytest

import tui.widgets.eventpanel as eventpanel
from telemetry_schema.rundir import read_run
from tui.widgets.eventlog import EventList, filter_rows
from tui.widgets.eventpanel import EventLogPanel

from .conftest import run_events, wait_for, wait_loaded
from .test_app import make_app, mentions, text_of


class HeldFilter:
    """``filter_rows`` that waits, for the search texts in ``held``, until they are released."""

    def __init__(self) -> None:
        self.held: dict[str, threading.Event] = {}
        self.calls: list[tuple[str, int, int]] = []
        self.on_ui_thread: list[bool] = []
        self.finished: list[str] = []

    def __call__(self, log, flt, limit, start=0):
        self.calls.append((flt.text, start, limit))
        self.on_ui_thread.append(threading.current_thread() is threading.main_thread())
        gate = self.held.get(flt.text)
        if gate is not None:
            gate.wait(10)
        rows = filter_rows(log, flt, limit, start)
        self.finished.append(flt.text)
        return rows

    def release(self) -> None:
        for gate in self.held.values():
            gate.set()


@pytest.fixture
def held(monkeypatch):
    h = HeldFilter()
    monkeypatch.setattr(eventpanel, "filter_rows", h)
    yield h
    h.release()


def hits(rows: list[dict], text: str) -> int:
    return sum(mentions(row, text) for row in rows)


def filter_line(app) -> str:
    return text_of(app.query_one("#event-filter-line"))


async def events_tab_searching_in_worker(pilot, app) -> tuple[EventLogPanel, EventList]:
    """Once loaded, the Events tab, with every search sent to a worker (``sync_rows=0``)."""
    await wait_loaded(pilot)
    await pilot.press("6")
    panel, events = app.query_one(EventLogPanel), app.query_one(EventList)
    panel.sync_rows = 0
    panel.type_delay = 30.0  # typed text applies on Enter only: one search per ``search()``
    return panel, events


async def search(pilot, text: str) -> None:
    await pilot.press("slash", *text, "enter")


async def test_long_search_runs_in_a_worker_and_a_superseded_one_is_dropped(run_dir, held):
    rows = run_events(read_run(run_dir))
    app = make_app(run_dir)
    async with app.run_test(size=(120, 30)) as pilot:
        panel, events = await events_tab_searching_in_worker(pilot, app)
        held.held["gradient_low"] = threading.Event()

        await search(pilot, "gradient_low")
        assert panel.flt.text == "gradient_low" and panel.searching is not None
        assert held.calls == [("gradient_low", 0, len(rows))] and held.on_ui_thread == [False]
        assert f"searching {len(rows):,} events…" in filter_line(app) and "gradient_low" in filter_line(app)
        assert events.count == len(rows)  # the rows held so far stay on screen meanwhile
        await pilot.press("f", "home")  # the screen answers keys while the search runs
        assert panel.follow is False and events.cursor == 0
        assert len(held.calls) == 1  # redraws do not restart a running search

        await search(pilot, "panic")  # a newer search supersedes the held one
        await wait_for(pilot, lambda: panel.searching is None)
        assert events.count == hits(rows, "panic") > 0
        assert f"{events.count:,} of {len(rows):,} events" in filter_line(app)

        held.release()  # the superseded search ends now: its rows must not be taken
        await wait_for(pilot, lambda: "gradient_low" in held.finished)
        await pilot.pause(0.2)
        assert panel.flt.text == "panic" and panel.searching is None
        assert events.count == hits(rows, "panic") != hits(rows, "gradient_low")
        # had its rows been taken, "panic" would have had to be searched for again
        assert held.calls == [("gradient_low", 0, len(rows)), ("panic", 0, len(rows))]


async def test_events_followed_during_a_search_are_filtered_after_it(run_dir, held):
    tables = read_run(run_dir)
    rows = run_events(tables)
    app = make_app(run_dir)
    async with app.run_test(size=(120, 30)) as pilot:
        panel, events = await events_tab_searching_in_worker(pilot, app)
        held.held["panic"] = threading.Event()
        await search(pilot, "panic")
        assert panel.searching is not None

        app.session.ingest(tables, 0, True, 0.0)  # the same events once more arrive meanwhile
        app.refresh_panels(force=True)
        n = len(rows)
        assert f"searching {2 * n:,} events…" in filter_line(app)
        held.release()
        await wait_for(pilot, lambda: panel.searching is None and events.count > 0)
        everything = rows + rows  # a later poll's events come after an earlier poll's
        assert app.session.length == len(everything) == 2 * n
        assert events.count == hits(everything, "panic") == 2 * hits(rows, "panic") > 0
        assert held.calls == [("panic", 0, n), ("panic", n, 2 * n)]  # the new rows only
        assert all(mentions(everything[i], "panic") for i in events.rows)
        assert f"{events.count:,} of {2 * n:,} events" in filter_line(app)


async def test_short_filters_stay_on_the_ui_thread(run_dir, held):
    rows = run_events(read_run(run_dir))
    app = make_app(run_dir)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("6")
        panel, events = app.query_one(EventLogPanel), app.query_one(EventList)
        panel.type_delay = 30.0
        assert panel.sync_rows >= len(rows)
        await search(pilot, "panic")  # done by the time the key is handled: no worker, no wait
        assert panel.searching is None and events.count == hits(rows, "panic")
        assert held.calls == [("panic", 0, len(rows))] and held.on_ui_thread == [True]


async def test_the_search_applies_as_you_type(run_dir):
    rows = run_events(read_run(run_dir))
    app = make_app(run_dir)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("6", "slash", *"pani")
        panel, events = app.query_one(EventLogPanel), app.query_one(EventList)
        box = app.query_one("#event-search")
        await wait_for(pilot, lambda: panel.flt.text == "pani")  # no Enter: the pause applies it
        assert events.count == hits(rows, "pani") > 0 and box.has_focus and box.has_class("-open")
        await pilot.press("c")
        await wait_for(pilot, lambda: panel.flt.text == "panic")
        assert events.count == hits(rows, "panic") < len(rows)
        await pilot.press(*["backspace"] * 5)
        await wait_for(pilot, lambda: panel.flt.text == "")
        assert events.count == len(rows)
        await pilot.press(*"gate", "enter")  # Enter applies at once and closes the box
        assert panel.flt.text == "gate" and events.count == hits(rows, "gate") > 0
        assert not box.has_class("-open") and events.has_focus
