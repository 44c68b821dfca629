"""Both viewers tell one story of a log: for runs of every shape (finished, interrupted, live,
crashed, a PPO run of two environments, a 2-rank run, 100k batch losses with one spike), the
real TUI (driven by its pilot) and the dashboard's views report the same status, the same
number of events for a search, and curves with the same extremes."""

from __future__ import annotations

import re

import numpy as np
import pytest

from telemetry_schema.status import STATUSES
from dashboard import metric_figures
from dashboard.data import RunStore
from dashboard.figures import ChartOptions, loss_figure
from dashboard.run_view import RunRequest, header, table_outputs
from tui.app import EsperApp
from tui.source import resolve
from tui.widgets.eventpanel import EventLogPanel
from tui.widgets.plot import AsyncPlot
from tui.widgets.scalars import MetricPicker, ScalarsPanel

from tests.tui.conftest import wait_for, wait_loaded
from tests.tui.test_app import header as tui_header, text_of
from tests.viewers.logs import NOW, RUNS, SPIKE, write_all

EXPECTED = {"finished": "completed", "interrupted": "interrupted", "live": "running", "crashed": "crashed",
            "ppo": "completed", "ddp": "completed", "spike": "completed"}
QUERIES = ("0.5", "reason", "seed1", "kind=gate_evaluated", "/epoch [23]/")
METRICS = ("val_acc", "batch/loss", "alpha/s0")


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("viewers") / "runs")


@pytest.fixture(scope="module")
def store(logdir):
    return RunStore(logdir, clock=lambda: NOW)


def _texts(component) -> list:
    """Every string and component under a Dash component, depth first."""
    out = [component]
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str | int | float):
            out += _texts(child)
        elif child is not None:
            out.append(child)
    return out


def dashboard_status(store: RunStore, run_id: str) -> str:
    (fact,) = [c for c in _texts(header(store, run_id, None)) if "fact-status" in str(getattr(c, "className", ""))]
    return fact.children[-1]


def dashboard_count(store: RunStore, run_id: str, query: str) -> int:
    *_, error, count = table_outputs(store, RunRequest(run_id), [], query)
    assert error == ""
    return int(re.match(r"\(([\d,]+) found", count)[1].replace(",", ""))


def extremes(ys) -> tuple[float, float] | None:
    y = np.concatenate([np.asarray(v, np.float64) for v in ys]) if ys else np.zeros(0)
    y = y[np.isfinite(y)]
    return (float(y.min()), float(y.max())) if len(y) else None


def dashboard_extremes(store: RunStore, run_id: str, name: str) -> tuple[float, float] | None:
    entry = store.entry(run_id)
    entry.refresh(force=True)
    with entry.view(None, RunRequest(run_id).scope) as state:
        fig = metric_figures.metric_figure(state, [name], ChartOptions())
    return extremes([t.y for t in fig.data if not t.name.startswith("governor")])


def tui_status(app) -> str:
    first = tui_header(app).splitlines()[0]
    (status,) = [s for s in STATUSES if re.search(rf"\b{s}\b", first)]
    return status


async def tui_count(pilot, app, query: str) -> int:
    await pilot.press("6", "escape", "slash", *query, "enter")
    panel = app.query_one(EventLogPanel)
    await wait_for(pilot, lambda: panel.searching is None and panel.flt.text == query)
    await pilot.pause(0.1)
    line = text_of(app.query_one("#event-filter-line"))
    return int(re.search(r"([\d,]+) of [\d,]+ events", line)[1].replace(",", ""))


async def tui_extremes(pilot, app, name: str) -> tuple[float, float] | None:
    await pilot.press("8", "slash", "ctrl+u", *f"^{re.escape(name)}$", "enter")
    picker = app.query_one(MetricPicker)
    plot = app.query_one(ScalarsPanel).query_one(AsyncPlot)
    await wait_for(pilot, lambda: picker.chosen == name and plot.spec is not None and plot.spec.title == name)
    return extremes([ys for _, _, ys in plot.spec.curves])


@pytest.mark.parametrize("run_id", RUNS)
async def test_both_viewers_report_the_same_status_search_counts_and_curve_extremes(logdir, store, run_id):
    dash = {"status": dashboard_status(store, run_id),
            "counts": {q: dashboard_count(store, run_id, q) for q in QUERIES},
            "extremes": {m: dashboard_extremes(store, run_id, m) for m in METRICS}}
    app = EsperApp(resolve(logdir / run_id), clock=lambda: NOW)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_loaded(pilot)
        tui = {"status": tui_status(app),
               "counts": {q: await tui_count(pilot, app, q) for q in QUERIES},
               "extremes": {m: await tui_extremes(pilot, app, m) for m in METRICS
                            if dash["extremes"][m] is not None}}
    assert tui["status"] == dash["status"] == EXPECTED[run_id]
    assert tui["counts"] == dash["counts"]
    assert tui["extremes"] == {m: v for m, v in dash["extremes"].items() if v is not None}
    assert dash["counts"]["kind=gate_evaluated"] == (0 if run_id in ("ppo", "ddp") else 1)


def dashboard_facts(store: RunStore, run_id: str) -> dict[str, str]:
    facts = [c for c in _texts(header(store, run_id, None)) if "fact " in str(getattr(c, "className", ""))]
    return {f.children[0].children.removesuffix(": "): str(f.children[-1]) for f in facts}


async def test_both_headers_give_progress_time_left_and_resource_use(logdir, store):
    facts = dashboard_facts(store, "live")
    assert facts["epoch"] == "3/10" and facts["cpu"] == "93%" and facts["memory"] == "1.3 GB"
    assert "time left" in facts
    app = EsperApp(resolve(logdir / "live"), clock=lambda: NOW)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_loaded(pilot)
        text = tui_header(app)
    assert "epoch 3/10" in text and "cpu 93%" in text and "memory 1.3 GB" in text and "left " in text


def test_the_run_lists_agree(logdir, store):
    from telemetry_schema.runs import list_runs, summarize
    picker = {p.name: summarize(p, NOW).status for p in list_runs(logdir)}
    page = {row.run_id: row.status for row in store.summaries()}
    assert picker == page == EXPECTED


def test_the_spike_survives_in_both_viewers_charts(store):
    assert dashboard_extremes(store, "spike", "batch/loss") == (1.0, SPIKE)
    entry = store.entry("spike")
    with entry.view(None, RunRequest("spike").scope) as state:
        fig = loss_figure(state, ChartOptions())
    (batch,) = [t for t in fig.data if t.name == "batch loss"]
    assert len(batch.y) <= ChartOptions().max_points and np.nanmax(np.asarray(batch.y, float)) == SPIKE
