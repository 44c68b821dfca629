"""The compare view, opened from the run picker: runs overlaid on any metric, their config diff."""

from __future__ import annotations

from telemetry_schema import config, series
from telemetry_schema.fold import fold_tables
from telemetry_schema.rundir import read_run
from textual.widgets import DataTable
from tui.app import EsperApp
from tui.screens.compare import CompareScreen
from tui.screens.picker import RunPicker
from tui.source import Target
from tui.widgets.plot import AsyncPlot
from tui.widgets.scalars import MetricPicker

from .conftest import FIXED_NOW, press_and_settle, wait_for
from .test_app import cells
from .test_charts import write_scalar_run


async def test_marked_runs_are_compared_on_any_metric_with_their_config_diff(tmp_path):
    runs = [write_scalar_run(tmp_path, "run-a", lr=0.1), write_scalar_run(tmp_path, "run-b", lr=0.2, scale=2.0)]
    states = {run.name: fold_tables(read_run(run)) for run in runs}
    app = EsperApp(Target("runs", tmp_path), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunPicker))
        picker = app.screen
        await pilot.press("m", "c")  # one run is not a comparison
        await pilot.pause()
        assert not isinstance(app.screen, CompareScreen) and "two or more" in list(app._notifications)[-1].message
        await pilot.press("j", "m", "k", "m", "m", "c")  # unmarked and marked again: still in
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.states)
        screen = app.screen
        assert [name for name, _ in screen.states] == [p.name for p in picker.marked]
        names = screen.query_one(MetricPicker)
        assert names.names == series.metrics(states["run-a"]) and names.chosen == "train_loss"
        plot = screen.query_one(AsyncPlot)
        await press_and_settle(pilot, "slash", *"rent", "enter")
        assert names.chosen == "reward/rent"
        shown = {label: list(ys) for label, _, ys in plot.spec.curves}
        assert shown == {name: series.curves(states[name], "reward/rent")[0].y.tolist() for name in shown}
        assert set(shown) == {"run-a", "run-b"}
        await press_and_settle(pilot, "y")
        assert plot.spec.log_y and app.chart.log_y
        diff = screen.query_one("#compare-diff", DataTable)
        order = [name for name, _ in screen.states]
        want = config.diff([states[name].config for name in order])
        assert [tuple(cells(diff, i)) for i in range(diff.row_count)] == [(r.key, *r.values) for r in want]
        assert [r.key for r in want] == ["train.lr"]
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunPicker))
