"""The run page's and compare page's views, called directly on real logs written with the writer:
log scale, compute axis, "no data yet", dark charts, the metric picker, system use, seeks,
status and progress as of the cursor, the configuration, the compare page's choices."""

from __future__ import annotations

import json

import numpy as np
import pytest

from telemetry_schema import events as ev
from telemetry_schema.rundir import create_run
from telemetry_schema.series import SeriesOptions, curves
from telemetry_schema.state import RunState
from telemetry_schema.writer import WriterConfig

from dashboard import figures, metric_figures
from dashboard.data import RunStore
from dashboard.pages.compare import config_diff, default_runs, metric_choices
from dashboard.run_view import (RunRequest, config_rows, cursor_info, header, metric_chart, metric_names,
                                opens_final, seek_target)
from dashboard.selection import DEFAULT

T0 = 1_800_000_000.0
CONFIG = {"training": {"lr": 0.01, "epochs": 10}, "seed": 3, "tags": ["a", "b"]}


class Wall:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def write_run(root, run_id: str, *, epochs: int = 4, planned: int = 10, finish: bool = True,
              config: dict = CONFIG, lr: float = 0.01) -> Wall:
    """A run with ``epochs`` epochs (one a minute, FLOPs growing), scalars, system samples, a
    failed gate, two stage changes, a governor panic and rollback at epoch 2."""
    wall = Wall()
    started = ev.RunStarted(run_id=run_id, task="toy", topology="cnn", host_params=10, slot_ids=["s0"],
                            config_json=json.dumps({**config, "training": {**config.get("training", {}), "lr": lr}}),
                            planned_epochs=planned, heartbeat_s=0)
    rw = create_run(root, started, config=WriterConfig(heartbeat_s=0, flush_interval=3600), background=False,
                    clock=wall, wall_clock=wall)
    w = rw.writer
    for epoch in range(1, epochs + 1):
        wall.now = T0 + 60 * epoch
        step = 100 * epoch
        w.scalar("reward/rent", -0.1 * epoch, step=step, epoch=epoch)
        w.scalar("my/thing", float(epoch), step=step, epoch=epoch)
        w.emit(ev.SystemMetrics(cpu_percent=50.0 + epoch, cpu_total_percent=20.0, rss_bytes=2 ** 30 * epoch,
                                mem_used_bytes=2 ** 31, mem_total_bytes=2 ** 33), step=step, epoch=epoch)
        if epoch == 1:
            w.emit(ev.StageChanged(from_stage="DORMANT", to_stage="GERMINATED"), slot="s0", seed="a", epoch=1)
            w.emit(ev.GateEvaluated(gate="G1", target_stage="TRAINING", passed=False), slot="s0", seed="a", epoch=1)
            w.emit(ev.StageChanged(from_stage="GERMINATED", to_stage="TRAINING"), slot="s0", seed="a", epoch=1)
        if epoch == 2:
            w.emit(ev.GovernorPanic(reason="loss spike", loss=94.0, threshold=2.4, mean=0.8, std=0.1,
                                    consecutive=1), epoch=2)
            w.emit(ev.GovernorRollback(reason="3 anomalies", to_epoch=1, seeds_pruned=[]), epoch=2)
        w.emit(ev.EpochCompleted(train_loss=1.0 / epoch, train_acc=10.0 * epoch, val_loss=1.0 / epoch,
                                 val_acc=10.0 * epoch, total_params=10, flops_cumulative=1_000 * epoch),
               epoch=epoch, step=step)
    w.flush()
    if finish:
        rw.close("completed")
    return wall


@pytest.fixture()
def root(tmp_path):
    write_run(tmp_path, "done", epochs=4)
    return tmp_path


def store_of(root, wall: float = T0 + 300) -> RunStore:
    return RunStore(root, clock=lambda: wall)


def entry_of(store: RunStore, run_id: str):
    """The run's entry, its log read."""
    entry = store.entry(run_id)
    entry.refresh(force=True)
    return entry


def state_of(root, run_id: str = "done"):
    return entry_of(store_of(root), run_id).state


def test_time_charts_take_a_log_scale_and_a_compute_axis(root):
    st = state_of(root)
    fig = figures.alpha_figure(st, figures.ChartOptions(log_y=True))
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.range is None  # alpha's fixed range dropped
    assert figures.loss_figure(st, figures.ChartOptions()).layout.yaxis.type is None
    for chart in (figures.loss_figure, figures.params_figure, figures.ppo_figure, figures.reward_figure,
                  metric_figures.system_figure):
        assert chart(st, figures.ChartOptions(log_y=True)).layout.yaxis.type == "log", chart.__name__
    acc = figures.accuracy_figure(st, figures.ChartOptions(xaxis="flops"))
    assert list(acc.data[0].x) == [1000.0, 2000.0, 3000.0, 4000.0]
    assert acc.layout.xaxis.title.text == "compute (cumulative FLOPs)"
    panic = acc.data[-2]  # the governor's marker sits at the panic epoch's compute
    assert panic.name == "governor panic" and list(panic.x) == [2000.0]


def test_an_empty_chart_says_no_data_yet_and_hides_its_axes(root):
    empty = metric_figures.system_figure(RunState(), figures.ChartOptions())
    assert [a.text for a in empty.layout.annotations] == [figures.NO_DATA]
    assert empty.layout.xaxis.visible is False and empty.layout.yaxis.visible is False
    full = figures.accuracy_figure(state_of(root), figures.ChartOptions())
    assert not full.layout.annotations and full.layout.xaxis.visible is not False


def test_charts_follow_a_dark_colour_scheme(root):
    st = state_of(root)
    dark = figures.loss_figure(st, figures.ChartOptions(theme="dark"))
    light = figures.loss_figure(st, figures.ChartOptions())
    assert dark.layout.template.layout.paper_bgcolor == figures.TEMPLATES["dark"]["layout"]["paper_bgcolor"]
    assert light.layout.template.layout.paper_bgcolor == "white"


def test_metric_picker_lists_any_scalar_by_regex_and_draws_the_shared_curves(root):
    store = store_of(root)
    req = RunRequest("done", smoothing=0.5, xaxis="step")
    names, error = metric_names(store, req, r"^(reward|my)/")
    assert (names, error) == (["my/thing", "reward/rent"], "")
    assert metric_names(store, req, "(")[1].startswith("bad filter")
    fig = metric_chart(store, req, ["reward/rent", "val_acc"])
    (expected,) = curves(entry_of(store, "done").state, "reward/rent", SeriesOptions(x="step", smoothing=0.5))
    rent = fig.data[0]
    assert rent.name == "reward/rent"
    np.testing.assert_allclose(rent.x, expected.x)
    np.testing.assert_allclose(rent.y, expected.y)
    # the governor's panic and rollback, with the reason and the rollback target, on hover
    hover = " ".join(t for trace in fig.data if trace.name.startswith("governor") for t in trace.text)
    assert "loss spike" in hover and "-> epoch 1" in hover and "3 anomalies" in hover


def test_system_chart_draws_cpu_and_memory_in_gib(root):
    fig = metric_figures.system_figure(state_of(root), figures.ChartOptions())
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["cpu_percent"].y) == [51.0, 52.0, 53.0, 54.0]
    rss = by_name["rss (GiB)"]
    assert rss.yaxis == "y2" and list(rss.y) == [1.0, 2.0, 3.0, 4.0]


def test_seek_buttons_go_to_the_previous_and_next_panic_gate_failure_and_stage_change(root):
    store = store_of(root)
    log = entry_of(store, "done").log
    panic = int(log.positions("governor_panic")[0])
    failure = int(log.positions("gate_evaluated")[0])
    stages = log.positions("stage_changed").tolist()
    assert seek_target(store, "done", DEFAULT, None, "prev", "panic") == (panic + 1, "")  # from the end
    assert seek_target(store, "done", DEFAULT, 0, "next", "panic") == (panic + 1, "")
    assert seek_target(store, "done", DEFAULT, panic + 1, "next", "panic") == (panic + 1, "no later panic")
    assert seek_target(store, "done", DEFAULT, 0, "next", "gate_failure") == (failure + 1, "")
    assert seek_target(store, "done", DEFAULT, stages[1] + 1, "prev", "stage_change") == (stages[0] + 1, "")
    assert seek_target(store, "done", DEFAULT, 0, "prev", "stage_change") == (0, "no earlier stage change")


def facts(div) -> dict:
    """The header's facts as {name: text}."""
    found = {}

    def walk(node):
        if getattr(node, "className", "") and str(node.className).startswith("fact "):
            name, value = node.children
            found[name.children.rstrip(": ")] = str(value)
        for child in getattr(node, "children", None) or []:
            if not isinstance(child, str):
                walk(child)
    walk(div)
    return found


def test_a_finished_run_opens_on_its_final_state_and_a_replay_shows_the_status_at_its_cursor(root):
    store = store_of(root)
    entry = entry_of(store, "done")
    assert opens_final(entry) and cursor_info(entry, entry.length).startswith("final: ")
    assert facts(header(store, "done", None))["status"] == "completed"
    assert facts(header(store, "done", 0))["status"] == "waiting"  # at event 0 nothing has happened yet
    assert facts(header(store, "done", entry.length // 2))["status"] == "running"


def test_a_live_run_opens_live_with_its_progress_and_time_left(tmp_path):
    write_run(tmp_path, "going", epochs=4, planned=10, finish=False)
    store = store_of(tmp_path, wall=T0 + 4 * 60 + 10)  # 10 s after the 4th epoch ended
    entry = entry_of(store, "going")
    assert not opens_final(entry) and cursor_info(entry, None).startswith("live: ")
    shown = facts(header(store, "going", None))
    assert shown["epoch"] == "4/10"
    assert shown["time left"] == "5m 50s"  # 6 epochs at 60 s each, 10 s of the next already spent


def test_the_whole_configuration_is_shown_as_dotted_keys(root):
    rows = config_rows(store_of(root), "done")
    assert rows == [{"key": "seed", "value": "3"}, {"key": "tags", "value": '["a", "b"]'},
                    {"key": "training.epochs", "value": "10"}, {"key": "training.lr", "value": "0.01"}]


def test_compare_defaults_to_the_newest_finished_runs_and_diffs_their_configurations(tmp_path):
    write_run(tmp_path, "old-done", epochs=3)
    write_run(tmp_path, "new-done", epochs=3, lr=0.1)
    write_run(tmp_path, "crashed", epochs=1, finish=False)  # silent for hours: crashed
    store = store_of(tmp_path, wall=T0 + 10 * 3600)
    rows = store.summaries()
    assert {r.run_id: r.status for r in rows}["crashed"] == "crashed"
    for r in rows:  # the same start time: the newest is told by run id here
        r.started = {"old-done": 1.0, "new-done": 3.0, "crashed": 4.0}[r.run_id]
    assert default_runs(rows, limit=2) == ["new-done", "old-done"]
    states = {r: entry_of(store, r).state for r in ("old-done", "new-done")}
    columns, data, note = config_diff(states)
    assert [c["name"] for c in columns] == ["key", "old-done", "new-done"]
    assert data == [{"key": "training.lr", "run0": "0.01", "run1": "0.1"}] and note == "1 keys differ"
    names, error = metric_choices(states, "flops|rent")
    assert names == ["flops_cumulative", "reward/rent"] and error == ""
    fig = metric_figures.compare_metric_figure(states, "flops_cumulative",
                                               figures.ChartOptions(xaxis="flops", log_y=True))
    assert [t.name for t in fig.data] == ["old-done", "new-done"] and fig.layout.yaxis.type == "log"
    assert list(fig.data[1].x) == [1000.0, 2000.0, 3000.0]
