"""Metric plots: loss and accuracy over epochs, alpha and gradient ratio per slot."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid

from telemetry_schema.fold import RunState, Series
from tui import fmt
from tui.widgets.plot import AsyncPlot, PlotSpec



MAX_POINTS = 600
"""Points per curve handed to plotext (about two per column of a wide terminal)."""


def spec(title: str, curves: list[tuple[str, object, object]], *, xlabel: str,
         hline: float | None = None) -> PlotSpec:
    """A PlotSpec with each curve cut to its finite points, at most MAX_POINTS of them."""
    cut = []
    for label, x, y in curves:
        xs, ys = fmt.downsample(x, y, MAX_POINTS)
        cut.append((fmt.plain(label), tuple(xs), tuple(ys)))
    return PlotSpec(title, xlabel, tuple(cut), hline)


def _slot_curves(series: dict[str, Series], x: str, y: str) -> list:
    return [(slot, s[x], s[y]) for slot, s in sorted(series.items(), key=lambda kv: fmt.plain(kv[0]))
            if slot and len(s)]


def draw_loss(state: RunState) -> PlotSpec:
    ep = state.epochs
    return spec("loss", [("train", ep["epoch"], ep["train_loss"]), ("val", ep["epoch"], ep["val_loss"])],
                xlabel="epoch")


def draw_acc(state: RunState) -> PlotSpec:
    ep = state.epochs
    return spec("accuracy %", [("train", ep["epoch"], ep["train_acc"]), ("val", ep["epoch"], ep["val_acc"])],
                xlabel="epoch")


def draw_alpha(state: RunState) -> PlotSpec:
    return spec("alpha per slot", _slot_curves(state.alpha, "epoch", "value"), xlabel="epoch")


def draw_ratio(state: RunState) -> PlotSpec:
    return spec(f"grad ratio (G2 ≥ {fmt.G2_THRESHOLD})", _slot_curves(state.grads, "step", "ratio"),
                xlabel="step", hline=fmt.G2_THRESHOLD)


DRAW = {"loss": draw_loss, "acc": draw_acc, "alpha": draw_alpha, "ratio": draw_ratio}


class MetricsGrid(Grid):
    """A grid of plots (named in ``DRAW``); redrawn only when the data or the size changed."""

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

    def show(self, state: RunState) -> None:
        sig = (id(state), len(state.epochs), sum(map(len, state.grads.values())),
               sum(map(len, state.alpha.values())), self.size)
        if sig == self._signature:
            return
        self._signature = sig
        for name, plot in zip(self.plots, self.query(AsyncPlot)):
            plot.draw(DRAW[name](state))
