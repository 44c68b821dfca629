"""The app served for real and driven in headless Chromium (Playwright, Debian chromium)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from plotly.offline import get_plotlyjs_version

from telemetry_schema.eventlog import EventLog
from telemetry_schema.fold import Fold
from telemetry_schema.reader import stream_files
from telemetry_schema.replay import Replay
from telemetry_schema.rundir import read_run
from telemetry_schema.synth import SynthConfig, generate

from dashboard.app import basic_bundle_matches, create_app
from dashboard.figures import ChartOptions
from dashboard.metric_figures import compare_metric_figure, metric_figure
from dashboard.run_view import FIRST_CHARTS, LATER_CHARTS, build_charts
from dashboard.settings import DashboardConfig

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

expect.set_options(timeout=15_000)  # the suite shares 2 cores with other engineers' runs

TRACE_COUNT = "id => document.querySelector(`#${id} .js-plotly-plot`).data.length"
POINTS = "([id, i]) => (document.querySelector(`#${id} .js-plotly-plot`).data[i].x || []).length"
DRAWN = """window.__drawn = {};  // graph id -> when it first held points (ms since navigation)
(function watch() {
  document.querySelectorAll('.js-plotly-plot').forEach(g => {
    const host = g.closest('[id^="g-"]');
    if (host && !(host.id in window.__drawn) && (g.data || []).some(t => (t.x || []).length > 0)) {
      window.__drawn[host.id] = performance.now();
    }
  });
  requestAnimationFrame(watch);
})();"""


@pytest.fixture(scope="module")
def app_url(logdir, serve):
    return serve(create_app(logdir, DashboardConfig(poll_ms=500, min_refresh_s=0.2))).url


def wait_points(page, gid: str, trace: int, predicate, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    n = -1
    while time.monotonic() < deadline:
        n = page.evaluate("""([id, i]) => { const g = document.querySelector(`#${id} .js-plotly-plot`);
                                  return g && g.data && g.data[i] ? (g.data[i].x || []).length : -1; }""",
                          [gid, trace])
        if predicate(n):
            return n
        time.sleep(0.2)
    raise AssertionError(f"{gid}[{trace}] has {n} points; condition not met in {timeout}s")


def test_runs_page_lists_runs_and_opens_one(page, app_url):
    page.goto(app_url)
    table = page.locator("#runs-table")
    expect(table).to_contain_text("alpha-run", timeout=15_000)
    expect(table).to_contain_text("beta-run")
    expect(table).to_contain_text("completed")
    broken_row = page.locator("#runs-table tr", has_text="broken-run")
    expect(broken_row).to_contain_text("error")  # the broken log is one row, the page still works
    expect(page.locator("#runs-table tr", has_text="corrupt-run")).to_contain_text("completed · corrupt")
    page.locator("#runs-table a", has_text="alpha-run").click()
    page.wait_for_url("**/run/alpha-run")
    expect(page.locator("#run-title")).to_have_text("alpha-run", timeout=15_000)
    assert not page.errors


def test_new_run_appears_without_restart(page, serve, tmp_path):
    url = serve(create_app(tmp_path, DashboardConfig(poll_ms=500))).url
    page.goto(url)
    expect(page.locator("#runs-table")).to_be_visible(timeout=15_000)
    generate(tmp_path, SynthConfig(events=300, seed=9, run_id="late-run"))
    expect(page.locator("#runs-table")).to_contain_text("late-run", timeout=15_000)


def test_runs_table_sorts(page, app_url):
    page.goto(app_url)
    expect(page.locator("#runs-table")).to_contain_text("beta-run", timeout=15_000)
    sort = page.locator("#runs-table th", has_text="events").locator(".column-header--sort")

    def events_column() -> list[int]:
        return [int(c) for c in page.locator("#runs-table td[data-dash-column=events]").all_inner_texts()]

    sort.click()
    expect(page.locator("#runs-table td[data-dash-column=events]").first).to_have_text("0")
    assert events_column() == sorted(events_column()) and len(events_column()) == 4
    sort.click()
    expect(page.locator("#runs-table td[data-dash-column=events]").last).to_have_text("0")
    assert events_column() == sorted(events_column(), reverse=True)


def test_run_page_renders_charts_with_expected_traces(page, app_url, logdir):
    state = Fold().update(read_run(logdir / "alpha-run"))
    page.goto(f"{app_url}/run/alpha-run")
    page.wait_for_selector("#g-swimlane .main-svg", timeout=15_000)
    wait_points(page, "g-acc", 0, lambda n: n == state.epochs.length)
    wait_points(page, "g-params", 0, lambda n: n == state.epochs.length)  # the charts drawn second
    slots = len(state.slot_ids)
    expected = {"g-loss": 5, "g-acc": 4, "g-alpha": slots + 2, "g-ratio": slots + 2, "g-gates": 2, "g-params": 4}
    got = {gid: page.evaluate(TRACE_COUNT, gid) for gid in expected}
    assert got == expected
    assert page.evaluate(POINTS, ["g-loss", 0]) <= 2000
    stages = {s.stage for s in state.spans}
    assert page.evaluate(TRACE_COUNT, "g-swimlane") == len(stages) + 3
    expect(page.locator("#run-facts")).to_contain_text(f"panics: {state.panics()}")
    expect(page.locator("#decisions-table")).to_contain_text(state.decisions[-1].op)
    expect(page.locator("#events-table")).to_contain_text("epoch_completed")
    expect(page.locator("#g-ppo")).to_be_hidden()  # no PPO events in this log
    expect(page.locator("#g-actions")).to_be_hidden()  # nor a learned policy's action mix
    assert not page.errors


def test_replay_scrubber_changes_what_is_shown(page, app_url, logdir):
    log = EventLog(read_run(logdir / "alpha-run"))
    page.goto(f"{app_url}/run/alpha-run")
    total = len(log)
    wait_points(page, "g-acc", 0, lambda n: n > 10)
    # a finished run opens on its final state, in replay, not following it live
    expect(page.locator("#mode input[value=replay]")).to_be_checked()
    expect(page.locator("#cursor-info")).to_contain_text(f"final: {total:,} events")
    expect(page.locator("#run-facts")).to_contain_text("status: completed")
    page.get_by_text("Live", exact=True).click()
    page.get_by_text("Replay", exact=True).click()
    wait_points(page, "g-acc", 0, lambda n: n == 0)  # entering replay rewinds to the start
    # at event 0 the run has not finished (nor started): the header says so, and the charts have no data yet
    expect(page.locator("#run-facts")).to_contain_text("status: waiting")
    expect(page.locator("#g-acc")).to_contain_text("no data yet")
    half = total // 2
    box = page.locator("#cursor input")
    box.fill(str(half))
    box.press("Tab")  # the number box commits on blur
    expected = Replay(log, half).state.epochs.length
    wait_points(page, "g-acc", 0, lambda n: n == expected)
    wait_points(page, "g-params", 0, lambda n: n == expected)  # the charts drawn second follow the cursor
    expect(page.locator("#cursor-info")).to_contain_text(f"replay: event {half:,}")
    page.locator("#play").click()  # play forward
    wait_points(page, "g-acc", 0, lambda n: n > expected)
    wait_points(page, "g-params", 0, lambda n: n > expected)
    page.locator("#play").click()  # pause
    expect(page.locator("#play")).to_have_text("Play")
    assert not page.errors


def test_first_screen_charts_are_drawn_before_the_others(page, app_url, logdir):
    state = Fold().update(read_run(logdir / "alpha-run"))
    calls = []  # ("sent" | "answered", the callback's outputs), in the order the browser saw them

    def outputs(request) -> str | None:
        return json.loads(request.post_data)["output"] if "_dash-update-component" in request.url else None

    page.on("request", lambda r: outputs(r) and calls.append(("sent", outputs(r))))
    page.on("requestfinished", lambda r: outputs(r) and calls.append(("answered", outputs(r))))
    page.add_init_script(DRAWN)
    page.goto(f"{app_url}/run/alpha-run")
    # no PPO and no system samples in this log
    later = [gid for gid in LATER_CHARTS if gid not in ("g-ppo", "g-reward", "g-actions", "g-system")]
    for gid in later:  # every chart is drawn, with its data
        wait_points(page, gid, 0, lambda n: n > 0)
    wait_points(page, "g-params", 0, lambda n: n == state.epochs.length)
    drawn = page.evaluate("window.__drawn")
    assert set(drawn) >= {*FIRST_CHARTS, *later}
    assert max(drawn[gid] for gid in FIRST_CHARTS) <= min(drawn[gid] for gid in later)
    # two callbacks: the first screen's charts alone, and the others asked for only once it answered
    first = next(out for _, out in calls if "g-loss.figure" in out)
    second = next(out for _, out in calls if "g-params.figure" in out)
    assert first != second and all(f"{gid}.figure" not in first for gid in LATER_CHARTS)
    assert calls.index(("answered", first)) < calls.index(("sent", second))
    assert not page.errors


def test_pages_load_plotly_basic_bundle_of_plotly_py_version(page, app_url, logdir):
    if not basic_bundle_matches():
        pytest.skip("the installed plotly.py builds for another plotly.js than the vendored basic bundle")
    state = Fold().update(read_run(logdir / "alpha-run"))
    page.goto(f"{app_url}/run/alpha-run")
    wait_points(page, "g-params", 0, lambda n: n > 0)
    assert page.evaluate("Plotly.version") == get_plotlyjs_version()
    fetched = [n.split("?")[0] for n in page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")]
    assert any(n.endswith("/assets/plotly-basic.min.js") for n in fetched)
    assert not any(n.endswith("/plotly.min.js") for n in fetched)  # Dash's full bundle is never fetched
    # every trace type the pages draw is one the bundle has
    figs = [*build_charts(state, ChartOptions()).values(),
            compare_metric_figure({"alpha-run": state}, "val_acc", ChartOptions()),
            metric_figure(state, ["val_acc", "batch/loss"], ChartOptions())]
    used = {trace.type for fig in figs for trace in fig.data}
    assert used and used <= set(page.evaluate("Object.keys(Plotly.PlotSchema.get().traces)"))
    assert not page.errors


@pytest.mark.parametrize("path", ["/run/..%2F..%2Fetc%2Fpasswd", "/run/a%2Fb", "/run/%2e%2e%2f%2e%2e",
                                  "/run/no-such-run"])
def test_traversal_refused(page, app_url, path):
    page.goto(app_url + path)
    expect(page.locator("#run-refused")).to_be_visible(timeout=15_000)
    assert "root:x:0:0" not in page.inner_text("body")
    assert page.locator("#g-loss").count() == 0


def test_broken_run_shows_error_card(page, app_url):
    page.goto(f"{app_url}/run/broken-run")
    expect(page.locator("#run-error")).to_contain_text("not a readable format 1 log", timeout=15_000)


def test_corrupt_run_shows_what_was_read_and_names_the_corrupt_stream(page, app_url, logdir):
    state = Fold().update(read_run(logdir / "corrupt-run"))
    page.goto(f"{app_url}/run/corrupt-run")
    expect(page.locator("#corrupt-banner")).to_be_visible()
    expect(page.locator("#corrupt-banner")).to_contain_text("batch_metrics.rank0.arrows: corrupt at byte")
    expect(page.locator("#run-facts")).to_contain_text("status: completed")
    expect(page.locator("#run-facts")).to_contain_text("torn bytes: 0")  # corruption is no torn tail
    wait_points(page, "g-acc", 0, lambda n: n == state.epochs.length > 0)  # the readable events are drawn
    page.goto(f"{app_url}/run/alpha-run")
    expect(page.locator("#run-title")).to_have_text("alpha-run")
    expect(page.locator("#corrupt-banner")).to_be_hidden()
    assert not page.errors


def test_event_search_query_language_and_bad_query_message(page, app_url, logdir):
    log = EventLog(read_run(logdir / "alpha-run"))
    failed_g2 = [p for p in log.positions("gate_evaluated")
                 if (e := log.event(int(p))[1])["gate"] == "G2" and not e["passed"]]
    page.goto(f"{app_url}/run/alpha-run")
    expect(page.locator("#events-table")).to_contain_text("epoch_completed")
    box = page.locator("#event-search")
    box.fill("gate=G2 passed:false")
    box.press("Enter")
    rows = page.locator("#events-table td[data-dash-column=kind]")
    expect(rows.first).to_have_text("gate_evaluated")
    expect(page.locator("#events-table")).not_to_contain_text("epoch_completed")
    expect(page.locator("#events-table td[data-dash-column=seq]").first).to_have_text(
        str(log.event(int(failed_g2[-1]))[1]["seq"]))  # the newest match first
    expect(page.locator("#event-search-error")).to_have_text("")
    box.fill("loss>abc")
    box.press("Enter")
    expect(page.locator("#event-search-error")).to_have_text("loss>abc: 'abc' is not a number")
    expect(page.locator("#events-table td[data-dash-column=kind]")).to_have_count(0)
    assert not page.errors


def test_compare_overlays_runs(page, app_url):
    page.goto(f"{app_url}/compare")
    page.wait_for_selector("#g-compare .main-svg", timeout=15_000)
    deadline = time.monotonic() + 15
    while page.evaluate(TRACE_COUNT, "g-compare") != 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    names = page.evaluate("() => document.querySelector('#g-compare .js-plotly-plot').data.map(t => t.name)")
    # the newest finished runs, newest first (the broken one is left out)
    assert sorted(names) == ["alpha-run", "beta-run", "corrupt-run"]
    expect(page.locator("#compare-table")).to_contain_text("best_val_acc")


@pytest.fixture
def live_run(tmp_path):
    """A writer process appending a live synthetic run."""
    proc = subprocess.Popen([sys.executable, "-m", "telemetry_schema.synth", "--out", str(tmp_path),
                             "--events", "6000", "--seed", "7", "--run-id", "live-run", "--live",
                             "--epoch-seconds", "0.25"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run_dir = tmp_path / "live-run"
    deadline = time.monotonic() + 20
    while not stream_files(run_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    yield tmp_path, proc
    proc.kill()
    proc.wait(10)


def test_live_chart_grows_and_keeps_zoom_and_legend(page, serve, live_run):
    root, proc = live_run
    url = serve(create_app(root, DashboardConfig(poll_ms=500, min_refresh_s=0.2))).url
    page.goto(f"{url}/run/live-run")
    n0 = wait_points(page, "g-acc", 0, lambda n: n >= 2)
    p0 = wait_points(page, "g-params", 0, lambda n: n >= 2)  # a chart drawn after the first screen
    page.evaluate("""() => { const g = document.querySelector('#g-acc .js-plotly-plot');
                             Plotly.relayout(g, {'xaxis.range': [0, 3]});
                             Plotly.restyle(g, {visible: 'legendonly'}, [1]); }""")
    n1 = wait_points(page, "g-acc", 0, lambda n: n >= n0 + 4)
    wait_points(page, "g-params", 0, lambda n: n >= p0 + 4)  # it grows live too
    assert proc.poll() is None, "the writer finished before the test could watch it grow"
    layout = page.evaluate("""() => { const g = document.querySelector('#g-acc .js-plotly-plot');
                                      return [g.layout.xaxis.range, g.data[1].visible, g.data[0].x.length]; }""")
    assert layout[0] == [0, 3] and layout[1] == "legendonly" and layout[2] >= n1
    expect(page.locator("#run-facts")).to_contain_text("running")
    assert not page.errors


def test_cli_prints_url_and_serves(tmp_path, logdir):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dashboard.cli", "--logdir", str(logdir), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line
        deadline = time.monotonic() + 20
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert "Esper dashboard" in body
    finally:
        proc.terminate()
        proc.wait(10)
