"""Any scalar, chart options and the config tab, through the real app on a written run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from telemetry_schema import config, events as ev, series
from telemetry_schema.fold import fold_tables
from telemetry_schema.rundir import create_run, read_run
from telemetry_schema.series import SeriesOptions
from telemetry_schema.writer import WriterConfig
from tui.widgets.config import ConfigTable
from tui.widgets.plot import AsyncPlot, segments
from tui.widgets.scalars import MetricPicker, ScalarsPanel

from .conftest import press_and_settle, wait_for, wait_loaded
from .test_app import cells, make_app

CONFIG = {"train": {"lr": 0.1, "epochs": 4}, "note": "[b]bold[/b] [@click=app.quit]q[/]", "tags": ["a", "b"]}
LOSS = [2.0, 50.0, 0.5, 0.0]
"""A spike, and a zero that a log axis cannot show."""


def write_scalar_run(runs_dir, run_id: str = "scalars", *, lr: float = 0.1, scale: float = 1.0):
    cfg = {**CONFIG, "train": {**CONFIG["train"], "lr": lr}}
    started = ev.RunStarted(run_id=run_id, task="synthetic-images", topology="cnn", host_params=10,
                            config_json=json.dumps(cfg), heartbeat_s=3600.0)
    wall = iter(1_700_000_000.0 + i for i in range(10_000))
    with create_run(runs_dir, started, config=WriterConfig(heartbeat_s=0), clock=lambda: 0.0,
                    wall_clock=lambda: next(wall)) as run:
        w = run.writer
        for epoch, loss in enumerate(LOSS, start=1):
            w.emit(ev.EpochCompleted(train_loss=loss * scale, train_acc=50.0, val_loss=1.0, val_acc=10.0 * epoch,
                                     flops_cumulative=1e9 * epoch), epoch=epoch, step=10 * epoch)
            w.scalar("reward/rent", -0.1 * epoch * scale, step=10 * epoch)
            w.scalar("reward/bonus", 1.0 * epoch, step=10 * epoch)
            w.scalar("my/[b]metric[/b]", 3.0, step=10 * epoch)
    return runs_dir / run_id


@pytest.fixture
def scalar_run(tmp_path):
    return write_scalar_run(tmp_path)


def shown_curves(plot: AsyncPlot) -> list[tuple[str, list, list]]:
    return [(label, list(xs), list(ys)) for label, xs, ys in plot.spec.curves]


def same(a, b) -> bool:
    return np.allclose(np.asarray(a, float), np.asarray(b, float), equal_nan=True)


async def test_scalars_tab_picks_any_metric_by_regex(scalar_run):
    state = fold_tables(read_run(scalar_run))
    app = make_app(scalar_run)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_loaded(pilot)
        await press_and_settle(pilot, "8")
        picker = app.query_one(MetricPicker)
        plot = app.query_one(ScalarsPanel).query_one(AsyncPlot)
        assert picker.names == series.metrics(state) and "my/[b]metric[/b]" in picker.names
        assert picker.chosen == picker.names[0] and plot.spec.title == picker.names[0]
        await press_and_settle(pilot, "slash", *"reward/.*", "enter")
        assert picker.shown == ["reward/bonus", "reward/rent"] and picker.chosen == "reward/bonus"
        (curve,) = series.curves(state, "reward/bonus")
        assert [(lbl, xs, ys) for lbl, xs, ys in shown_curves(plot)] == [("reward/bonus", curve.x.tolist(),
                                                                        curve.y.tolist())]
        await press_and_settle(pilot, "down")
        assert picker.chosen == "reward/rent" and shown_curves(plot)[0][2] == pytest.approx([-0.1, -0.2, -0.3, -0.4])
        await press_and_settle(pilot, "slash", "ctrl+u", *"(bad", "enter")
        assert picker.shown == [] and "bad filter" in picker.problem


async def test_chart_keys_set_x_axis_smoothing_and_log_scale_of_every_chart(scalar_run):
    app = make_app(scalar_run)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_loaded(pilot)
        await press_and_settle(pilot, "8")  # the first metric: train_loss
        plot = app.query_one(ScalarsPanel).query_one(AsyncPlot)
        assert app.query_one(MetricPicker).chosen == "train_loss" and shown_curves(plot)[0][2] == LOSS
        await press_and_settle(pilot, "w")
        assert app.chart.smoothing == 0.6
        assert same(shown_curves(plot)[0][2], series.ema(np.array(LOSS), 0.6)) and "smoothed 0.6" in plot.spec.title
        await press_and_settle(pilot, "w", "w", "w", "y")  # smoothing back to 0, log y on
        assert plot.spec.log_y and same(shown_curves(plot)[0][2], [2.0, 50.0, 0.5, np.nan])
        await press_and_settle(pilot, "a")
        assert plot.spec.xlabel == "step" and shown_curves(plot)[0][1] == [10, 20, 30, 40]
        await press_and_settle(pilot, "a", "a")
        assert app.chart.x == "flops" and shown_curves(plot)[0][1] == [1e9, 2e9, 3e9, 4e9]
        await press_and_settle(pilot, "a")
        assert app.chart == SeriesOptions(x="epoch", log_y=True)
        await press_and_settle(pilot, "2")
        specs = [p.spec for p in app.query_one("#metrics").query(AsyncPlot)]
        assert len(specs) == 4 and all(s.log_y for s in specs)
        loss = {label: ys for label, _, ys in specs[0].curves}
        assert same(loss["train"], [2.0, 50.0, 0.5, np.nan])  # the spike kept, the zero a gap


def test_segments_break_a_curve_at_nan():
    assert segments([1, 2, np.nan, 4, 5], [1, 2, np.nan, 4, np.nan]) == [([1, 2], [1, 2]), ([4], [4])]


async def test_config_tab_lists_the_whole_configuration_as_text(scalar_run):
    app = make_app(scalar_run)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_loaded(pilot)
        await press_and_settle(pilot, "9")
        table = app.query_one(ConfigTable)
        await wait_for(pilot, lambda: table.row_count > 0)
        rows = [tuple(cells(table, i)) for i in range(table.row_count)]
        assert rows == config.flatten(CONFIG)
        assert ("note", "[b]bold[/b] [@click=app.quit]q[/]") in rows and ("train.lr", "0.1") in rows
