"""Plot series both viewers draw: metric names, x axes, breaks, thinning that keeps extremes,
smoothing, governor markers."""

from __future__ import annotations

import numpy as np
import pytest

from telemetry_schema import events as ev
from telemetry_schema.fold import RunState, fold_tables
from telemetry_schema.reader import read_memory
from telemetry_schema.series import (SeriesError, SeriesOptions, curves, ema, ema_reference, markers, metrics,
                                     select, thin)
from telemetry_schema.sinks import MemorySink
from telemetry_schema.writer import EventWriter, WriterConfig


def fold(emit) -> object:
    sink = MemorySink()
    w = EventWriter(sink, config=WriterConfig(heartbeat_s=0, flush_interval=3600), background=False)
    emit(w)
    w.close()
    return fold_tables(read_memory(sink))


def test_one_spike_among_100k_points_survives_thinning():
    y = np.ones(100_000)
    y[61_234] = 50.0
    kept = thin(y, 600)
    assert len(kept) <= 600 and y[kept].max() == 50.0 and kept[0] == 0 and kept[-1] == len(y) - 1

    def emit(w):
        for i, v in enumerate(y):
            w.scalar("train/loss", float(v), step=i)
    (curve,) = curves(fold(emit), "train/loss", SeriesOptions(x="step", max_points=600))
    assert curve.extremes() == (1.0, 50.0) and len(curve.x) <= 600


def test_smoothing_is_the_reference_ema():
    rng = np.random.default_rng(0)
    y = rng.normal(size=1000)
    y[[5, 600]] = np.nan
    np.testing.assert_allclose(ema(y, 0.9), ema_reference(y, 0.9), rtol=1e-9)
    np.testing.assert_allclose(ema(y, 0.0)[np.isfinite(y)], y[np.isfinite(y)])


def test_a_slot_line_breaks_where_its_seed_was_reset():
    def emit(w):
        for epoch, value in ((1, 0.2), (2, 0.5)):
            w.emit(ev.AlphaChanged(value=value, target=1.0, mode="up"), slot="s0", seed="a", epoch=epoch)
        w.emit(ev.StageChanged(from_stage="PRUNED", to_stage="DORMANT"), slot="s0", seed="a", epoch=3)
        w.emit(ev.SeedGerminated(blueprint="lora", params=5), slot="s0", seed="b", epoch=8)
        for epoch, value in ((9, 0.3), (10, 0.6)):
            w.emit(ev.AlphaChanged(value=value, target=1.0, mode="up"), slot="s0", seed="b", epoch=epoch)
    (curve,) = curves(fold(emit), "alpha/s0")
    assert curve.x[:2].tolist() == [1.0, 2.0] and np.isnan(curve.x[2]) and curve.x[3:].tolist() == [9.0, 10.0]
    assert curve.y[3:].tolist() == [0.3, 0.6]


def test_episodes_that_restart_their_epochs_are_one_curve_per_env_broken_at_each_restart():
    def emit(w):
        for env in (0, 1):
            for episode in range(2):
                for epoch in (1, 2, 3):
                    w.emit(ev.EpochCompleted(train_loss=1, train_acc=1, val_loss=1, val_acc=10 * env + epoch),
                           epoch=epoch, env=env, step=epoch * 10)
    got = curves(fold(emit), "val_acc")
    assert [c.name for c in got] == ["val_acc env 0", "val_acc env 1"]
    for c, env in zip(got, (0, 1)):
        assert np.isnan(c.x[3]) and c.x[:3].tolist() == c.x[4:].tolist() == [1.0, 2.0, 3.0]
        assert np.nanmax(c.y) == 10 * env + 3


def test_the_metric_catalogue_and_its_regex_filter():
    def emit(w):
        w.emit(ev.RunStarted(run_id="r", task="t", topology="cnn", host_params=1, slot_ids=["s0"]))
        w.emit(ev.EpochCompleted(train_loss=1, train_acc=50, val_loss=1, val_acc=50), epoch=1)
        w.scalar("reward/rent", -0.1)
        w.scalar("my/thing", 3.0)
        w.emit(ev.Reward(total=1.0, components={"shaping": 0.5}))
    names = metrics(fold(emit))
    assert {"val_acc", "train_loss", "reward/rent", "my/thing", "reward_total", "reward_component/shaping"} <= set(names)
    assert select(names, r"^reward/") == ["reward/rent"]
    with pytest.raises(SeriesError, match="bad filter"):
        select(names, "(")
    with pytest.raises(SeriesError, match="no metric"):
        curves(fold(emit), "nope")


def test_the_catalogue_of_a_log_with_slot_events_that_name_no_slot():
    """Slot-keyed series of events without a slot (a foreign or hostile log) are keyed None: the
    catalogue lists the named slots and skips those, instead of failing to sort None among them."""
    def emit(w):
        w.emit(ev.AlphaChanged(value=0.5, target=1.0, mode="up"), slot="s0", seed="a", epoch=1)
        w.emit(ev.AlphaChanged(value=0.6, target=1.0, mode="up"), epoch=1)
    names = metrics(fold(emit))
    assert [n for n in names if n.startswith("alpha/")] == ["alpha/s0"]


def test_wall_and_log_axes_and_panic_markers():
    def emit(w):
        w.emit(ev.RunStarted(run_id="r", task="t", topology="cnn", host_params=1))
        for epoch, loss in ((1, 0.8), (2, 94.0), (3, 0.0)):
            w.emit(ev.EpochCompleted(train_loss=loss, train_acc=1, val_loss=loss, val_acc=1), epoch=epoch)
        w.emit(ev.GovernorPanic(reason="statistical", loss=94.0, threshold=2.4, mean=0.8, std=0.1, consecutive=1),
               epoch=2)
        w.emit(ev.GovernorRollback(to_epoch=0, seeds_pruned=["x"], reason="3 anomalies"), epoch=2)
    state = fold(emit)
    (loss,) = curves(state, "val_loss", SeriesOptions(log_y=True))
    assert loss.y[:2].tolist() == [0.8, 94.0] and np.isnan(loss.y[2])  # zero has no place on a log axis
    (wall,) = curves(state, "val_loss", SeriesOptions(x="wall"))
    assert (wall.x >= 0).all() and wall.x[-1] < 60
    found = markers(state)
    assert [(m.kind, m.x) for m in found] == [("panic", 2.0), ("rollback", 2.0)]
    assert "statistical" in found[0].text and "rollback to epoch 0" in found[1].text
    with pytest.raises(SeriesError, match="x axis"):
        curves(state, "val_loss", SeriesOptions(x="nope"))


def test_system_metrics_are_plotted_as_scalars_and_progress_has_an_eta():
    from telemetry_schema.status import progress

    clock = iter([100.0 + i for i in range(1000)])

    def emit(w):
        w.emit(ev.RunStarted(run_id="r", task="t", topology="cnn", host_params=1, planned_epochs=10))
        for epoch in (1, 2):
            w.emit(ev.SystemMetrics(cpu_percent=150.0, rss_bytes=2**30), epoch=epoch)
            w.emit(ev.EpochCompleted(train_loss=1, train_acc=1, val_loss=1, val_acc=1), epoch=epoch)
    sink = MemorySink()
    w = EventWriter(sink, config=WriterConfig(heartbeat_s=0), background=False,
                    clock=lambda: next(clock), wall_clock=lambda: 1000.0)
    emit(w)
    w._finished = True
    w.close()
    state = fold_tables(read_memory(sink))
    assert {"system/cpu_percent", "system/rss_bytes"} <= set(metrics(state))
    (cpu,) = curves(state, "system/cpu_percent")
    assert cpu.y.tolist() == [150.0, 150.0] and cpu.x.tolist() == [1.0, 2.0]
    p = progress(state, now=state.last_wall + 1)
    assert p.label() == "epoch 2/10" and p.elapsed_s > 0
    per_epoch = (state.epochs["wall"][-1] - state.started_wall) / 2
    assert p.left_s == pytest.approx(8 * per_epoch - 1)


def _batches_and_epochs(w, epochs: int = 3, per_epoch: int = 4, partial: int = 0) -> None:
    step = 0
    for epoch in range(1, epochs + 1):
        for _ in range(per_epoch):
            step += 1
            w.emit(ev.BatchMetrics(loss=float(step), lr=0.1, samples_per_s=1.0), epoch=epoch, step=step)
        w.emit(ev.EpochCompleted(train_loss=1, train_acc=1, val_loss=1, val_acc=1), epoch=epoch, step=step)
    for _ in range(partial):  # the epoch under way
        step += 1
        w.emit(ev.BatchMetrics(loss=float(step), lr=0.1, samples_per_s=1.0), epoch=epochs + 1, step=step)


def test_batches_lie_between_the_epoch_ends_on_the_epoch_axis():
    (curve,) = curves(fold(lambda w: _batches_and_epochs(w, partial=2)), "batch/loss")
    # steps 1-4 lie in epoch 1 (x from 0 to 1), 5-8 in epoch 2, ...; the epoch under way at the same pace
    np.testing.assert_allclose(curve.x, [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5])
    (epochs,) = curves(fold(lambda w: _batches_and_epochs(w)), "val_acc")
    assert epochs.x.tolist() == [1.0, 2.0, 3.0]  # the epoch ends themselves stay on whole epochs


def test_batches_of_episodes_that_restart_their_steps_stay_on_whole_epochs():
    def emit(w):
        for _episode in range(2):
            for epoch in (1, 2):
                w.emit(ev.BatchMetrics(loss=1.0, lr=0.1, samples_per_s=1.0), epoch=epoch, step=epoch * 10 - 5)
                w.emit(ev.EpochCompleted(train_loss=1, train_acc=1, val_loss=1, val_acc=1), epoch=epoch, step=epoch * 10)
    (curve,) = curves(fold(emit), "batch/loss")
    assert np.nanmax(curve.x) == 2.0 and set(curve.x[np.isfinite(curve.x)].tolist()) == {1.0, 2.0}


def test_progress_counts_completed_epochs_not_the_one_under_way():
    from telemetry_schema.status import completed_epoch, progress

    sink = MemorySink()
    w = EventWriter(sink, config=WriterConfig(heartbeat_s=0), background=False, clock=lambda: 0.0,
                    wall_clock=lambda: 1000.0)
    w.emit(ev.RunStarted(run_id="r", task="t", topology="cnn", host_params=1, planned_epochs=10))
    w.emit(ev.EpochCompleted(train_loss=1, train_acc=1, val_loss=1, val_acc=1), epoch=1)
    w.emit(ev.BatchMetrics(loss=1.0, lr=0.1, samples_per_s=1.0), epoch=2)
    w._finished = True
    w.close()
    state = fold_tables(read_memory(sink))
    assert state.epoch == 2 and completed_epoch(state) == 1
    assert progress(state, now=2000.0).label() == "epoch 1/10"
    assert completed_epoch(RunState()) == 0


def test_metrics_skip_a_null_slot():
    """A log may carry per-slot events with no slot (a hostile or broken writer): no name for them."""
    from telemetry_schema.state import Series

    state = RunState()
    for slot in (None, "r0c1", "r0c0"):
        state.alpha[slot] = Series("epoch", "step", "value", "target", "wall", "seq")
    assert metrics(state) == ["alpha/r0c0", "alpha/r0c1"]


def test_usage_is_the_latest_system_reading_and_says_what_is_known():
    from telemetry_schema.status import usage

    def emit(w):
        w.emit(ev.SystemMetrics(cpu_percent=50.0, rss_bytes=10**9))
        w.emit(ev.SystemMetrics(cpu_percent=95.4, rss_bytes=2_500_000_000, gpu_util_percent=None))
    u = usage(fold(emit))
    assert (u.cpu_percent, u.rss_bytes, u.gpu_util_percent) == (95.4, 2.5e9, None)
    assert u.parts() == [("cpu", "95%"), ("memory", "2.5 GB")]

    def emit_gpu(w):
        w.emit(ev.SystemMetrics(cpu_percent=10.0, rss_bytes=5_000_000, gpu_util_percent=80.0,
                                gpu_mem_used_bytes=3_100_000_000))
    assert usage(fold(emit_gpu)).parts() == [("cpu", "10%"), ("memory", "5.0 MB"), ("gpu", "80% 3.1 GB")]
    assert usage(fold(lambda w: None)).parts() == []
