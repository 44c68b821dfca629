"""The runs page at scale and its filters: rows from the runs' summary files (no log read for a
run not followed), filtered by name or task, status and tag; in headless Chromium, the filters
survive a reload."""

from __future__ import annotations

import pytest

from telemetry_schema.runs import summarize
from telemetry_schema.synth import SynthConfig, generate
from telemetry_schema.tags import read_tags, write_tags

from dashboard.app import create_app
from dashboard.data import RunStore
from dashboard.pages.runs import filtered
from dashboard.settings import DashboardConfig

from .conftest import pick_option

NOW = 4_000_000_000.0


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("many-runs")
    for i, finish in enumerate((True, True, False)):
        generate(root, SynthConfig(events=600, seed=i, run_id=f"run-{i}", finish=finish))
    write_tags(root / "run-1", ["best", "baseline"])
    return root


def test_listing_runs_reads_their_summary_files_not_their_logs(runs_root):
    store = RunStore(runs_root, clock=lambda: NOW)
    rows = {r.run_id: r for r in store.summaries()}
    assert not store._entries  # not one run followed (read and folded) to list them
    for run_id, row in rows.items():
        assert row == summarize(runs_root / run_id, NOW, read_log=True), run_id
    assert rows["run-2"].status == "crashed" and rows["run-0"].status == "completed"
    assert set(rows["run-1"].tags) == {"baseline", "best"}


def test_runs_filter_by_name_task_status_and_tag(runs_root):
    rows = RunStore(runs_root, clock=lambda: NOW).summaries()

    def ids(*args):
        return [r.run_id for r in filtered(rows, *args)]
    assert ids("", None, None) == ["run-0", "run-1", "run-2"]
    assert ids("RUN-1", None, None) == ["run-1"]  # case-insensitive, in the run id
    assert ids("synthetic", None, None) == ["run-0", "run-1", "run-2"]  # the task
    assert ids("", "crashed", None) == ["run-2"]
    assert ids("", "completed", "best") == ["run-1"]
    assert ids(["forged"], 5, {"a": 1}) == ["run-0", "run-1", "run-2"]  # values no page sends filter nothing


def test_a_runs_poll_that_changes_nothing_sends_nothing(runs_root):
    from tests.dashboard.callbacks import CallbackClient
    client = CallbackClient(create_app(runs_root))
    key = client.key_for("runs-table.data")
    values = {("tick", "n_intervals"): 1, ("runs-filter", "value"): "", ("runs-digest", "data"): None}
    first = client.call(key, values).get_json()["response"]
    assert len(first["runs-table"]["data"]) == 3 and first["runs-count"]["children"] == "3 runs"
    digest = first["runs-digest"]["data"]
    again = client.call(key, values | {("tick", "n_intervals"): 2, ("runs-digest", "data"): digest})
    assert again.status_code == 204  # nothing changed: no update at all
    narrowed = client.call(key, values | {("runs-digest", "data"): digest, ("runs-filter", "value"): "run-1"})
    assert [r["run_id"] for r in narrowed.get_json()["response"]["runs-table"]["data"]] == ["run-1"]


def test_runs_page_filters_survive_a_reload(page, serve, runs_root):
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect
    url = serve(create_app(runs_root, DashboardConfig(poll_ms=500))).url
    page.goto(url)
    table = page.locator("#runs-table")
    expect(table).to_contain_text("run-2", timeout=20_000)
    expect(page.locator("#runs-count")).to_have_text("3 runs")
    pick_option(page, "runs-tag", "best")
    expect(page.locator("#runs-count")).to_have_text("1 of 3 runs", timeout=20_000)
    expect(table).not_to_contain_text("run-2")
    page.reload()
    expect(page.locator("#runs-count")).to_have_text("1 of 3 runs", timeout=20_000)
    expect(table).to_contain_text("run-1")
    expect(table).not_to_contain_text("run-0")
    assert not page.errors


@pytest.fixture
def fresh_root(tmp_path):
    for i in range(2):
        generate(tmp_path, SynthConfig(events=200, seed=i, run_id=f"run-{i}"))
    write_tags(tmp_path / "run-1", ["old"])
    return tmp_path


def edit_call(client, data, previous):
    key = client.key_for("runs-tag-note.children")
    return client.call(key, {("runs-table", "data_timestamp"): 1, ("runs-table", "data"): data,
                             ("runs-table", "data_previous"): previous})


def test_editing_a_tags_cell_writes_the_runs_tags(fresh_root):
    from tests.dashboard.callbacks import CallbackClient
    client = CallbackClient(create_app(fresh_root))
    before = [{"run_id": "run-0", "tags": ""}, {"run_id": "run-1", "tags": "old"}]
    after = [{"run_id": "run-0", "tags": " ablation,  lr 3e-3 ,,"}, {"run_id": "run-1", "tags": "old"}]
    res = edit_call(client, after, before).get_json()["response"]
    assert res["runs-tag-note"]["children"] == "run-0: tags ablation, lr 3e-3"
    assert res["runs-digest"]["data"] is None  # the next poll sends the rows again
    assert read_tags(fresh_root / "run-0") == ["ablation", "lr 3e-3"]
    assert read_tags(fresh_root / "run-1") == ["old"]  # untouched: its cell did not change
    rows = {r.run_id: r for r in RunStore(fresh_root).summaries()}
    assert filtered(list(rows.values()), "", None, "ablation") == [rows["run-0"]]
    cleared = edit_call(client, [{"run_id": "run-1", "tags": ""}], [{"run_id": "run-1", "tags": "old"}])
    assert cleared.get_json()["response"]["runs-tag-note"]["children"] == "run-1: tags cleared"
    assert read_tags(fresh_root / "run-1") == []


def test_a_refused_tag_edit_says_why_and_writes_nothing(fresh_root):
    from tests.dashboard.callbacks import CallbackClient
    client = CallbackClient(create_app(fresh_root))
    bad = edit_call(client, [{"run_id": "run-1", "tags": "ok, [bold]x[/]"}], [{"run_id": "run-1", "tags": "old"}])
    note = bad.get_json()["response"]["runs-tag-note"]["children"]
    assert note.startswith("bad tag '[bold]x[/]'") and "\n" not in note
    assert read_tags(fresh_root / "run-1") == ["old"]
    escape = edit_call(client, [{"run_id": "../run-1", "tags": "x"}], [{"run_id": "../run-1", "tags": ""}])
    assert escape.get_json()["response"]["runs-tag-note"]["children"] == "invalid run id: '../run-1'"
    assert not (fresh_root.parent / "run-1").exists()
    for data, previous in (([{"run_id": "run-1", "tags": 5}], [{"run_id": "run-1", "tags": "old"}]),
                           ("forged", None), ([["run-1", "x"]], [{"run_id": "run-1"}])):
        assert edit_call(client, data, previous).status_code == 204  # nothing the page could send: no update
    assert read_tags(fresh_root / "run-1") == ["old"]


def test_tagging_a_run_in_the_browser(page, serve, fresh_root):
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect
    url = serve(create_app(fresh_root, DashboardConfig(poll_ms=500))).url
    page.goto(url)
    expect(page.locator("#runs-table")).to_contain_text("run-1", timeout=20_000)
    row_of = page.locator("#runs-table tr", has=page.locator("td", has_text="run-0"))
    cell = row_of.locator('td[data-dash-column="tags"]')
    cell.click()
    page.keyboard.type("sweep-a, keep")
    page.keyboard.press("Enter")
    expect(page.locator("#runs-tag-note")).to_have_text("run-0: tags sweep-a, keep", timeout=20_000)
    assert read_tags(fresh_root / "run-0") == ["sweep-a", "keep"]
    pick_option(page, "runs-tag", "sweep-a")
    expect(page.locator("#runs-count")).to_have_text("1 of 2 runs", timeout=20_000)
    expect(page.locator("#runs-table")).not_to_contain_text("run-1")
    assert not page.errors
