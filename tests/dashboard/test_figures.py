"""Figure and shaping functions called directly, asserted on values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_schema.fold import Decision, Fold, GovernorRecord, RunState, Series, StageSpan
from telemetry_schema.rundir import read_run
from telemetry_schema.series import ema, ema_reference, thin

from dashboard import figures, lifecycle_figures, metric_figures
from dashboard.app import PLOTLY_BUNDLE


@pytest.fixture(scope="module")
def state(logdir) -> RunState:
    return Fold().update(read_run(logdir / "alpha-run"))


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300), st.floats(0, 0.99))
@settings(max_examples=60, deadline=None)
def test_ema_matches_reference_loop(values, w):
    y = np.array(values)
    np.testing.assert_allclose(ema(y, w, block=16), ema_reference(y, w), rtol=1e-9, atol=1e-6)


def test_ema_carries_nan_and_zero_smoothing_is_identity():
    y = np.array([1.0, np.nan, 3.0])
    np.testing.assert_allclose(ema(y, 0.5), [1.0, 1.0, 2.0])
    np.testing.assert_array_equal(ema(y, 0.0), y)


@given(st.integers(1, 20_000), st.integers(10, 3000))
@settings(max_examples=40, deadline=None)
def test_minmax_keeps_ends_and_extremes_within_limit(n, limit):
    y = np.sin(np.arange(n) * 0.37) * np.arange(n)
    idx = thin(y, limit)
    assert len(idx) <= max(limit, 2) if n > limit else len(idx) == n
    assert idx[0] == 0 and idx[-1] == n - 1
    assert np.all(np.diff(idx) > 0)
    assert y[idx].max() == y.max() and y[idx].min() == y.min()


def test_a_million_point_chart_keeps_its_spike_within_the_limit():
    state = RunState()
    n = 1_000_000
    loss = np.random.default_rng(0).normal(1.0, 0.01, size=n)
    loss[123_457] = 50.0
    state.batches.append(step=np.arange(n), epoch=np.arange(n) // 1000, loss=loss, lr=np.zeros(n),
                         samples_per_s=np.zeros(n), wall=np.arange(n, dtype=float), seq=np.arange(n))
    batch = figures.loss_figure(state, figures.ChartOptions(xaxis="step", max_points=2000)).data[0]
    assert len(batch.x) <= 2000 and 50.0 in batch.y and batch.x[0] == 0 and batch.x[-1] == n - 1


def test_time_charts_trace_counts_and_governor_markers(state):
    opts = figures.ChartOptions()
    n_slots = len(state.slot_ids)
    assert len(figures.loss_figure(state, opts).data) == 3 + 2
    assert len(figures.accuracy_figure(state, opts).data) == 2 + 2
    assert len(figures.alpha_figure(state, opts).data) == n_slots + 2
    assert len(figures.ratio_figure(state, opts).data) == n_slots + 2
    fig = figures.accuracy_figure(state, opts)
    panic = fig.data[2]
    assert panic.name == "governor panic" and len(panic.x) == state.panics() > 0
    assert "threshold" in panic.text[0]
    rollback = fig.data[3]
    assert len(rollback.x) == sum(g.kind == "rollback" for g in state.governor)
    np.testing.assert_allclose(fig.data[1].y, state.epochs["val_acc"])


def test_every_trace_ships_at_most_max_points(state):
    opts = figures.ChartOptions(max_points=300)
    for fn in (figures.loss_figure, figures.ratio_figure, figures.alpha_figure):
        for trace in fn(state, opts).data:
            assert len(trace.x) <= 300
    assert len(state.batches) > 300  # so the loss chart really was downsampled


def test_ratio_chart_draws_g2_threshold(state):
    fig = figures.ratio_figure(state, figures.ChartOptions(g2_threshold=0.05))
    assert [s.y0 for s in fig.layout.shapes] == [0.05]
    assert "G2" in fig.layout.annotations[0].text


@pytest.mark.parametrize("axis", ["epoch", "step", "wall"])
def test_x_axis_choice(state, axis):
    fig = figures.accuracy_figure(state, figures.ChartOptions(xaxis=axis))
    x = np.asarray(fig.data[0].x)
    expected = {"epoch": state.epochs["epoch"], "step": state.epochs["step"]}.get(axis)
    if expected is not None:
        np.testing.assert_allclose(x, expected)
    else:
        assert x[0] >= 0 and np.all(np.diff(x) > 0)
    assert fig.layout.uirevision.endswith(axis)


def test_smoothing_changes_curves_but_not_length(state):
    raw = figures.accuracy_figure(state, figures.ChartOptions())
    smooth = figures.accuracy_figure(state, figures.ChartOptions(smoothing=0.9))
    assert len(raw.data[1].y) == len(smooth.data[1].y)
    assert np.std(np.diff(smooth.data[1].y)) < np.std(np.diff(raw.data[1].y))


def test_swimlane_segments_match_spans(state):
    fig = lifecycle_figures.swimlane_figure(state, figures.ChartOptions())
    bars = [t for t in fig.data if t.type == "bar"]
    got = sorted((slot, t.name, b, b + w) for t in bars for slot, b, w in zip(t.y, t.base, t.x))
    want = sorted((s.slot, s.stage, float(s.start_epoch),
                   float(s.end_epoch if s.end_epoch is not None else max(state.epoch, s.start_epoch + 1)))
                  for s in state.spans)
    assert got == want and len(got) == len(state.spans)
    marks = {t.name: t for t in fig.data if t.type == "scatter"}
    assert len(marks["fossilized"].x) == state.seeds_fossilized()
    assert len(marks["pruned"].x) == len([m for m in state.marks if m.kind == "pruned"])


def test_open_span_runs_to_current_epoch():
    spans = [StageSpan("s0", "seed1", "TRAINING", 3, 10, 5), StageSpan("s0", "seed1", "BLENDING", 5, 20)]
    assert lifecycle_figures.span_segments(spans, 9) == [("s0", "TRAINING", 3.0, 5.0, "seed1"),
                                                         ("s0", "BLENDING", 5.0, 9.0, "seed1")]


def test_gate_timeline_pass_fail_with_checks(state):
    fig = lifecycle_figures.gates_figure(state, figures.ChartOptions())
    passed, failed = fig.data
    assert len(passed.x) == sum(g.passed for g in state.gates)
    assert len(failed.x) == sum(not g.passed for g in state.gates) > 0
    bad = next(g for g in state.gates if not g.passed)
    assert any(bad.checks_failed[0] in t for t in failed.text)


def test_ppo_and_reward_panels_from_series():
    st_ = RunState()
    n = 50
    st_.ppo.append(step=np.arange(n), **{c: np.linspace(0, 1, n) for c in figures.PPO_COLUMNS},
                   lr=np.full(n, 1e-3), early_stopped=np.zeros(n), wall=np.arange(n), seq=np.arange(n))
    st_.rewards.append(env=np.zeros(n), epoch=np.arange(n), step=np.arange(n) * 10, total=np.ones(n),
                       wall=np.arange(n), seq=np.arange(n))
    fig = figures.ppo_figure(st_, figures.ChartOptions())
    assert [t.name for t in fig.data] == list(figures.PPO_COLUMNS) and list(fig.data[0].x) == list(range(1, n + 1))
    assert len(figures.reward_figure(st_, figures.ChartOptions()).data[0].x) == n
    for head, value in (("op", 1.5), ("slot", 0.4)):  # per-head entropy of updates 10 and 20
        st_.head_entropy[head] = Series("seq", "value")
        st_.head_entropy[head].append(seq=np.array([9, 19]), value=np.array([value, value / 2]))
    fig = figures.ppo_figure(st_, figures.ChartOptions())
    heads = {t.name: t for t in fig.data[len(figures.PPO_COLUMNS):]}
    assert list(heads) == ["H(op)", "H(slot)"]
    assert list(heads["H(op)"].x) == [10, 20] and list(heads["H(op)"].y) == [1.5, 0.75]


def test_action_mix_shares_per_window_of_decisions():
    st_ = RunState()
    ops = ["WAIT"] * 5 + ["GERMINATE"] * 3 + ["WAIT", "ADVANCE"] * 6
    for i, op in enumerate(ops):
        st_.decisions.append(Decision(i, 0, 0, "policy", op, None, None, "", {}, None))
    fig = figures.action_figure(st_, figures.ChartOptions(), windows=4)
    share = {t.name: list(t.y) for t in fig.data}
    assert list(fig.data[0].x) == [5, 10, 15, 20]
    assert share == {"ADVANCE": [0, 20, 40, 60], "GERMINATE": [0, 60, 0, 0], "WAIT": [100, 20, 60, 40]}
    assert figures.action_figure(RunState(), figures.ChartOptions()).data == ()


def test_lines_break_where_x_goes_back():
    x = np.array([1.0, 2.0, 3.0, 1.0, 2.0])
    trace = figures.line("v", x, x * 10, figures.ChartOptions())
    assert np.isnan(trace["x"][3]) and list(trace["x"][4:]) == [1.0, 2.0] and len(trace["y"]) == 6


def test_empty_state_figures_do_not_fail():
    empty = RunState()
    for fn in list(figures.__dict__.values()):
        if callable(fn) and getattr(fn, "__name__", "").endswith("_figure") \
                and fn is not figures.new_figure and fn is not figures.time_figure:
            assert fn(empty, figures.ChartOptions()) is not None
    assert lifecycle_figures.swimlane_figure(empty, figures.ChartOptions()).data


def test_compare_overlays_runs_by_epoch(state):
    other = RunState()
    fig = metric_figures.compare_metric_figure({"a": state, "b": other}, "val_loss", figures.ChartOptions())
    assert [t.name for t in fig.data] == ["a"]  # b has no val_loss yet: no line
    np.testing.assert_allclose(fig.data[0].x, state.epochs["epoch"])
    np.testing.assert_allclose(fig.data[0].y, state.epochs["val_loss"])


def test_governor_hover_texts():
    panic = GovernorRecord(1, 4, "panic", "statistical", 3.0, 1.5, 0.5, 0.1, 2)
    assert "loss 3 > threshold 1.5" in figures.governor_hover(panic)
    rb = GovernorRecord(2, 5, "rollback", "3 anomalies", to_epoch=3, seeds_pruned=["s1"])
    assert "-> epoch 3" in figures.governor_hover(rb) and "s1" in figures.governor_hover(rb)


def test_plotly_bundle_is_served_only_for_its_own_plotly_version(tmp_path, monkeypatch):
    """The basic bundle in assets/ is served while it matches the plotly.js plotly.py builds
    figures for; with another plotly installed, Dash's own bundle is used instead."""
    import plotly.offline

    from dashboard import app as app_module

    assert app_module.bundle_version() == PLOTLY_BUNDLE.read_text(encoding="utf-8")[:200].split(" v")[1].split()[0]
    assert app_module.bundle_version(tmp_path / "missing.js") is None

    def served(version: str) -> bool:
        monkeypatch.setattr(plotly.offline, "get_plotlyjs_version", lambda: version)
        dash_app = app_module.create_app(tmp_path)
        with dash_app.server.test_client() as client:
            html_page = client.get("/").get_data(as_text=True)
        return "plotly-basic.min.js" in html_page

    assert served(app_module.bundle_version())
    assert not served("0.0.1")


def _fold_events(emit) -> RunState:
    from telemetry_schema.reader import read_memory
    from telemetry_schema.sinks import MemorySink
    from telemetry_schema.writer import EventWriter, WriterConfig
    sink = MemorySink()
    w = EventWriter(sink, config=WriterConfig(heartbeat_s=0, flush_interval=3600), background=False)
    emit(w)
    w.close()
    return Fold().update(read_memory(sink))


def test_the_alpha_chart_draws_no_line_across_epochs_without_a_seed():
    from telemetry_schema import events as ev

    def emit(w):
        w.emit(ev.RunStarted(run_id="r", task="t", topology="cnn", host_params=1, slot_ids=["s0"]))
        w.emit(ev.SeedGerminated(blueprint="lora", params=5), slot="s0", seed="a", epoch=1)
        for epoch, value in ((1, 0.2), (2, 0.5)):
            w.emit(ev.AlphaChanged(value=value, target=1.0, mode="up"), slot="s0", seed="a", epoch=epoch)
        w.emit(ev.StageChanged(from_stage="BLENDING", to_stage="PRUNED"), slot="s0", seed="a", epoch=3)
        w.emit(ev.SeedGerminated(blueprint="lora", params=5), slot="s0", seed="b", epoch=8)
        for epoch, value in ((9, 0.3), (10, 0.6)):
            w.emit(ev.AlphaChanged(value=value, target=1.0, mode="up"), slot="s0", seed="b", epoch=epoch)
    fig = figures.alpha_figure(_fold_events(emit), figures.ChartOptions())
    (trace,) = [t for t in fig.data if t.name == "s0"]
    x = np.asarray(trace.x, np.float64)
    assert x[:2].tolist() == [1.0, 2.0] and np.isnan(x[2]) and x[3:].tolist() == [9.0, 10.0]


def test_the_loss_chart_places_batches_between_epoch_ends():
    from telemetry_schema import events as ev

    def emit(w):
        step = 0
        for epoch in (1, 2):
            for _ in range(4):
                step += 1
                w.emit(ev.BatchMetrics(loss=1.0, lr=0.1, samples_per_s=1.0), epoch=epoch, step=step)
            w.emit(ev.EpochCompleted(train_loss=1, train_acc=1, val_loss=1, val_acc=1), epoch=epoch, step=step)
    fig = figures.loss_figure(_fold_events(emit), figures.ChartOptions())
    (batch,) = [t for t in fig.data if t.name == "batch loss"]
    np.testing.assert_allclose(batch.x, [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0])
