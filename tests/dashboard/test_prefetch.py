"""Runs read in the background as the server starts: the first page waits for that read (the log
is read once), a broken run does not stop the others, and the page shows it is loading meanwhile."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from telemetry_schema.reader import RunFollower
from telemetry_schema.synth import SynthConfig, generate

from dashboard import run_view
from dashboard.app import create_app, render_page
from dashboard.data import RunStore
from dashboard.run_view import FIRST_CHARTS, RunRequest, chart_outputs
from dashboard.settings import DashboardConfig


class GatedPolls:
    """Every ``RunFollower.poll`` recorded (thread, run, rows); the first one held until ``release``."""

    def __init__(self, monkeypatch) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls: list[tuple[str, str, int]] = []
        self.first_read: dict[str, float] = {}  # run -> time.monotonic() its first events were read
        original = RunFollower.poll

        def poll(follower, final=False):
            if not self.entered.is_set():
                self.entered.set()
                assert self.release.wait(60)
            table = original(follower, final)
            self.calls.append((threading.current_thread().name, follower.run_dir.name, table.num_rows))
            if table.num_rows:
                self.first_read.setdefault(follower.run_dir.name, time.monotonic())
            return table

        monkeypatch.setattr(RunFollower, "poll", poll)

    def reads(self) -> list[tuple[str, str, int]]:
        """The polls that returned events."""
        return [c for c in self.calls if c[2]]


def components(layout) -> dict:
    """Every component of a layout with an id, by id."""
    return {c.id: c for c in [layout, *layout._traverse()] if getattr(c, "id", None)}


def touch(path, when: float) -> None:
    """Set the modification time of a run directory and of everything in it."""
    for p in [path, *path.rglob("*")]:
        os.utime(p, (when, when))


def test_first_page_waits_for_the_prefetch_and_the_log_is_read_once(tmp_path, monkeypatch):
    generate(tmp_path, SynthConfig(events=4_000, seed=3, run_id="old-run"))
    generate(tmp_path, SynthConfig(events=6_000, seed=4, run_id="new-run"))
    touch(tmp_path / "old-run", 1_000_000)
    gate = GatedPolls(monkeypatch)
    app = create_app(tmp_path, DashboardConfig(prefetch_idle_s=0.2), prefetch=True)  # as esper-dashboard does
    store = app.run_store
    assert gate.entered.wait(30)  # the prefetch is reading the newest run (held here)
    opened = {}
    opener = threading.Thread(target=lambda: opened.update(page=render_page(store, "/run/new-run")))
    opener.start()
    opener.join(0.5)
    assert opener.is_alive()  # the page request waits for the read under way...
    gate.release.set()
    opener.join(60)
    app.prefetch_thread.join(60)
    assert not opener.is_alive() and not app.prefetch_thread.is_alive()
    new, old = store.entry("new-run"), store.entry("old-run")
    # ...instead of reading again: each log was read once, by the prefetch, newest first (the
    # older once the page had stopped asking for 0.2 s)
    assert gate.reads() == [("esper-dashboard-prefetch", "new-run", new.length),
                            ("esper-dashboard-prefetch", "old-run", old.length)]
    assert new.reads == 1 and old.reads == 1 and new.length > 6_000 and old.length > 4_000
    page = components(opened["page"])
    assert page["run-id"].data == "new-run" and page["live-total"].data == new.length
    assert page["cursor"].max == new.length
    # the first screen's charts of the page as opened were built by the prefetch too
    built = []
    prepared = run_view._prepared
    monkeypatch.setattr(run_view, "_prepared", lambda *a: built.append(a[2]) or prepared(*a))
    figs, shipped, _ = chart_outputs(store, RunRequest("new-run"), {}, FIRST_CHARTS)
    assert built == [] and len(figs) == len(FIRST_CHARTS) and set(FIRST_CHARTS) <= set(shipped)
    chart_outputs(store, RunRequest("new-run", xaxis="step"), {}, FIRST_CHARTS)
    assert built == [FIRST_CHARTS]  # other options are built on demand


def test_prefetch_is_bounded_to_the_newest_runs(tmp_path):
    for i, run_id in enumerate(["run-a", "run-b", "run-c"]):
        generate(tmp_path, SynthConfig(events=300, seed=i, run_id=run_id))
        touch(tmp_path / run_id, 1_000_000 + i * 1000)
    store = RunStore(tmp_path, DashboardConfig(prefetch_idle_s=0.05))
    assert store.newest(2) == ["run-c", "run-b"] and store.newest(0) == []
    store.prefetch(limit=2).join(60)
    assert sorted(store._entries) == ["run-b", "run-c"]  # run-a is read when a page asks for it
    assert create_app(tmp_path).prefetch_thread is None  # only esper-dashboard (prefetch=True) starts one


def test_runs_after_the_newest_wait_until_no_page_asks(tmp_path):
    generate(tmp_path, SynthConfig(events=2_000, seed=7, run_id="old-run"))
    generate(tmp_path, SynthConfig(events=2_000, seed=8, run_id="new-run"))
    touch(tmp_path / "old-run", 1_000_000)
    store = RunStore(tmp_path, DashboardConfig(prefetch_idle_s=1.0))  # well above a noisy VM's stalls
    thread = store.prefetch(limit=2)
    polled_until = time.monotonic() + 2.0
    while time.monotonic() < polled_until:  # a page open on the newest run polls it
        store.entry("new-run").refresh()
        time.sleep(0.1)
    assert store.entry("new-run").reads == 1  # read once (by the prefetch, or by the page that came first)
    assert "old-run" not in store._entries  # not read while a page was asking
    thread.join(30)
    assert not thread.is_alive() and time.monotonic() - polled_until >= 0.9
    assert store.entry("old-run").reads == 1  # read once the server was idle


def test_a_page_waiting_for_the_prefetchs_read_counts_as_asking(tmp_path, monkeypatch):
    """A page that asked for the run the prefetch is reading waits for that read; it asks until it
    is served, so the next run is read only once it has been quiet for ``prefetch_idle_s`` after
    that (counting from when it asked, the next run was read at once, beside the page)."""
    generate(tmp_path, SynthConfig(events=1_000, seed=7, run_id="old-run"))
    generate(tmp_path, SynthConfig(events=1_000, seed=8, run_id="new-run"))
    touch(tmp_path / "old-run", 1_000_000)
    gate = GatedPolls(monkeypatch)
    store = RunStore(tmp_path, DashboardConfig(prefetch_idle_s=0.5))
    thread = store.prefetch(limit=2)
    assert gate.entered.wait(30)  # the prefetch is reading the newest run (held here)
    served = {}

    def page() -> None:
        store.entry("new-run").refresh(force=True)
        served["at"] = time.monotonic()

    opener = threading.Thread(target=page)
    opener.start()
    time.sleep(1.0)  # the page waits for the read longer than prefetch_idle_s
    gate.release.set()
    opener.join(30)
    thread.join(60)
    assert not thread.is_alive() and "at" in served
    assert gate.first_read["old-run"] - served["at"] >= 0.45


def test_a_failing_prefetch_spares_the_other_runs_and_the_server(tmp_path, caplog):
    generate(tmp_path, SynthConfig(events=3_000, seed=5, run_id="good-run"))
    touch(tmp_path / "good-run", 1_000_000)
    broken = tmp_path / "broken-run"  # the newest: prefetched first
    broken.mkdir()
    (broken / "events.arrows").write_bytes(b"this is not an arrow stream")
    empty = tmp_path / "empty-run"
    empty.mkdir()
    (empty / "events.arrows").write_bytes(b"")
    touch(empty, 900_000)
    store = RunStore(tmp_path)
    assert store.newest(3) == ["broken-run", "good-run", "empty-run"]

    def then(run_id):  # what follows a read may fail too (here: the run was deleted meanwhile)
        if run_id == "broken-run":
            raise OSError("the run's directory went away")

    with caplog.at_level(logging.WARNING, logger="dashboard.data"):
        thread = store.prefetch(limit=3, then=then)
        thread.join(60)
    assert not thread.is_alive()
    assert "prefetch of run 'broken-run' failed" in caplog.text
    assert store.entry("broken-run").error  # a broken log: its page says why
    good = store.entry("good-run")
    assert good.error is None and good.reads == 1 and good.state.events == good.length > 3_000
    assert "empty-run" in store._entries  # the run after the failures was still read
    error = components(render_page(store, "/run/broken-run"))
    assert "run-error" in error and "cannot read its log" in str(error["run-error"].children)
    assert components(render_page(store, "/run/good-run"))["run-id"].data == "good-run"


def test_run_page_shows_loading_then_fills_in(tmp_path, monkeypatch, serve, page):
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect

    generate(tmp_path, SynthConfig(events=4_000, seed=6, run_id="slow-run"))
    url = serve(create_app(tmp_path)).url
    gate = GatedPolls(monkeypatch)  # the run's first read is held: a large log on a cold server
    page.goto(f"{url}/run/slow-run")
    expect(page.locator("#page-loading-note")).to_be_visible(timeout=15_000)
    expect(page.locator("#page-loading-note")).to_contain_text("Reading the run logs")
    assert gate.entered.wait(15)
    gate.release.set()
    expect(page.locator("#run-title")).to_have_text("slow-run", timeout=15_000)
    expect(page.locator("#page-loading-note")).to_have_count(0)
    page.wait_for_function("""() => { const g = document.querySelector('#g-loss .js-plotly-plot');
                                      return g && g.data && g.data.length && (g.data[0].x || []).length > 0; }""",
                           timeout=15_000)
    page.wait_for_timeout(1_500)  # live polls of the page's charts and tables show no loading state
    expect(page.locator("#page-loading-note")).to_have_count(0)
    assert len(gate.reads()) == 1 and not page.errors
