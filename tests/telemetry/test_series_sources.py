"""series.sources: the unshaped data behind each metric's curves (what exporters write)."""

from __future__ import annotations

import numpy as np

from telemetry_schema import events as ev
from telemetry_schema.fold import fold_tables
from telemetry_schema.reader import read_memory
from telemetry_schema.series import SeriesOptions, curves, metrics, sources
from telemetry_schema.sinks import MemorySink
from telemetry_schema.writer import EventWriter, WriterConfig


def fold(emit):
    sink = MemorySink()
    w = EventWriter(sink, config=WriterConfig(heartbeat_s=0, flush_interval=3600), background=False)
    emit(w)
    w.close()
    return fold_tables(read_memory(sink), rank=None)


def test_sources_keep_every_point_that_curves_thin_and_break():
    def emit(w):
        for i in range(5000):
            w.scalar("train/loss", float(i % 7), step=i % 2500)  # x goes back once: curves break there
    state = fold(emit)
    (label, series, column), = sources(state, "train/loss")
    assert label == "train/loss" and column == "value"
    assert np.array_equal(series["value"], [float(i % 7) for i in range(5000)])
    assert np.array_equal(series["step"], [i % 2500 for i in range(5000)])
    (curve,) = curves(state, "train/loss", SeriesOptions(x="step", max_points=600))
    assert len(curve.y) < 1000  # what a plot gets is thinned; sources are not


def test_sources_split_by_env_like_curves_and_name_reward_components():
    def emit(w):
        for env in (0, 1):
            for epoch in (1, 2):
                w.emit(ev.EpochCompleted(train_loss=1.0, train_acc=1.0, val_loss=1.0, val_acc=10.0 * env + epoch),
                       env=env, epoch=epoch)
                w.emit(ev.Reward(total=0.5 + env, components={"rent": -0.1 * epoch}), env=env, epoch=epoch)
    state = fold(emit)
    got = sources(state, "val_acc")
    assert [label for label, _, _ in got] == [c.name for c in curves(state, "val_acc")] == ["val_acc env 0", "val_acc env 1"]
    assert [list(s["val_acc"]) for _, s, _ in got] == [[1.0, 2.0], [11.0, 12.0]]
    assert [list(np.unique(s["env"])) for _, s, _ in got] == [[0], [1]]
    assert "reward_component/rent" in metrics(state)
    (label, series, column), = sources(state, "reward_component/rent")
    assert label == "rent" and np.allclose(series[column], [-0.1, -0.2, -0.1, -0.2])
