"""Metric plots: the run's curves from telemetry_schema.series, drawn with the chosen x axis,
smoothing and y scale (one ``SeriesOptions`` for every time chart of the app)."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import numpy as np
from textual.app import ComposeResult
from textual.containers import Grid

from telemetry_schema import series
from telemetry_schema.fold import RunState
from telemetry_schema.series import SeriesOptions
from tui import fmt
from tui.widgets.plot import AsyncPlot, PlotSpec

MAX_POINTS = 600
"""Points per curve handed to plotext (about two per column of a wide terminal)."""
X_LABELS = MappingProxyType({"epoch": "epoch", "step": "step", "wall": "seconds since start",
                             "flops": "cumulative FLOPs"})
SMOOTHING = (0.0, 0.6, 0.9, 0.99)
"""The smoothing weights the smoothing key steps through (TensorBoard's slider, in four stops)."""


def spec(title: str, curves: list[tuple[str, object, object]], *, xlabel: str,
         hline: float | None = None, log_y: bool = False) -> PlotSpec:
    """A PlotSpec of raw (label, x, y) curves, each cut to its finite points (positive ones on a
    log axis), at most MAX_POINTS of them."""
    cut = []
    for label, x, y in curves:
        if log_y:
            y = np.where(np.asarray(y, dtype=float) > 0, y, np.nan)
        xs, ys = fmt.downsample(x, y, MAX_POINTS)
        cut.append((fmt.plain(label), tuple(xs), tuple(ys)))
    return PlotSpec(title, xlabel, tuple(cut), hline, log_y)


def options_label(options: SeriesOptions) -> str:
    """What the chart options change, for a chart's title ('' for the defaults)."""
    parts = [f"smoothed {options.smoothing:g}"] if options.smoothing else []
    parts += ["log y"] if options.log_y else []
    return " · ".join(parts)


def metric_spec(states: list[tuple[str, RunState]], name: str, options: SeriesOptions, *,
                title: str = "", hline: float | None = None, by_run: bool = False) -> PlotSpec:
    """One metric's curves of each run named in ``states``, as ``series.curves`` shapes them;
    ``by_run`` labels them by run name (as it is with several runs)."""
    opts = dataclasses.replace(options, max_points=MAX_POINTS)
    curves = []
    for run, state in states:
        for c in series.curves(state, name, opts):
            label = c.name if not (by_run or len(states) > 1) else (run if c.name == name else f"{run} {c.name}")
            curves.append((fmt.plain(label), tuple(c.x.tolist()), tuple(c.y.tolist())))
    return _titled(title or name, tuple(curves), options, hline)


def _titled(title: str, curves: tuple, options: SeriesOptions, hline: float | None) -> PlotSpec:
    extra = options_label(options)
    return PlotSpec(f"{title} ({extra})" if extra else title, X_LABELS[options.x], curves, hline, options.log_y)


def _named(state: RunState, names: list[tuple[str, str]], options: SeriesOptions) -> tuple:
    """Curves of several metrics on one chart, each labelled by its short name."""
    opts = dataclasses.replace(options, max_points=MAX_POINTS)
    have = set(series.metrics(state))
    out = []
    for name, short in names:
        if name in have:
            for c in series.curves(state, name, opts):
                out.append((fmt.plain(c.name.replace(name, short, 1)), tuple(c.x.tolist()), tuple(c.y.tolist())))
    return tuple(out)


def _prefixed(state: RunState, prefix: str) -> list[tuple[str, str]]:
    """(metric, legend name) of every metric under ``prefix`` ('alpha/' -> one per slot)."""
    return [(m, m[len(prefix):]) for m in series.metrics(state) if m.startswith(prefix)]


def draw_loss(state: RunState, options: SeriesOptions) -> PlotSpec:
    return _titled("loss", _named(state, [("train_loss", "train"), ("val_loss", "val")], options), options, None)


def draw_acc(state: RunState, options: SeriesOptions) -> PlotSpec:
    return _titled("accuracy %", _named(state, [("train_acc", "train"), ("val_acc", "val")], options), options, None)


def draw_alpha(state: RunState, options: SeriesOptions) -> PlotSpec:
    return _titled("alpha per slot", _named(state, _prefixed(state, "alpha/"), options), options, None)


def draw_ratio(state: RunState, options: SeriesOptions) -> PlotSpec:
    return _titled(f"grad ratio (G2 ≥ {fmt.G2_THRESHOLD})", _named(state, _prefixed(state, "grad_ratio/"), options),
                   options, fmt.G2_THRESHOLD)


DRAW = {"loss": draw_loss, "acc": draw_acc, "alpha": draw_alpha, "ratio": draw_ratio}


class MetricsGrid(Grid):
    """A grid of plots (named in ``DRAW``); redrawn only when the data, options or size changed."""

    def __init__(self, plots: tuple[str, ...] = ("loss", "acc", "alpha", "ratio"), **kwargs) -> None:
        super().__init__(**kwargs)
        self.plots = plots
        self._signature: tuple | None = None

    def compose(self) -> ComposeResult:
        for name in self.plots:
            yield AsyncPlot(classes=f"plot-{name}")

    def reset(self) -> None:
        """Redraw on the next ``show`` even if the sizes match (another rank or env was chosen)."""
        self._signature = None

    def show(self, state: RunState, options: SeriesOptions = SeriesOptions()) -> None:
        sig = (id(state), len(state.epochs), sum(map(len, state.grads.values())),
               sum(map(len, state.alpha.values())), self.size, options)
        if sig == self._signature:
            return
        self._signature = sig
        for name, plot in zip(self.plots, self.query(AsyncPlot)):
            plot.draw(DRAW[name](state, options))
