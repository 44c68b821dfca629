"""A plotext plot whose (slow, pure-Python) drawing runs in a thread worker, never in a paint.

``draw(spec)`` takes plain lists; the worker builds the chart at the widget's size and hands
back a rich Text, which ``render`` shows. Until then the previous drawing stays on screen.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import ClassVar

from rich.text import Text
from textual import work
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

SERIES_COLORS = ("cyan", "magenta", "yellow", "green", "red", "blue", "white", "orange")


@dataclass(frozen=True)
class PlotSpec:
    """What one chart shows: curves of (label, xs, ys) as lists, and an optional threshold."""

    title: str
    xlabel: str
    curves: tuple = field(default_factory=tuple)
    hline: float | None = None


def build_chart(spec: PlotSpec, width: int, height: int, theme: str) -> Text:
    """The chart as rich Text (runs in a worker thread)."""
    plt = Plot()
    plt.plotsize(width, height)
    plt._set_size(width, height)  # as PlotextPlot.render does (textual-plotext issue #5)
    plt.theme(theme)
    plt.title(spec.title)
    plt.xlabel(spec.xlabel)
    drawn = False
    for i, (label, xs, ys) in enumerate(spec.curves):
        if xs:
            plt.plot(xs, ys, label=label, color=SERIES_COLORS[i % len(SERIES_COLORS)])
            drawn = True
    if spec.hline is not None and drawn:
        plt.hline(spec.hline, "red")
    return Text.from_ansi(plt.build())


class AsyncPlot(PlotextPlot):
    """A PlotextPlot drawn off the UI thread."""

    _BUILD_LOCK: ClassVar[threading.Lock] = threading.Lock()  # plotext keeps module-level state

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec: PlotSpec | None = None
        self._drawn: tuple[PlotSpec, tuple[int, int], Text] | None = None
        self.pending = False
        self._generation = 0
        self._shown_generation = 0

    def draw(self, spec: PlotSpec) -> None:
        self.spec = spec
        self._schedule()

    def _schedule(self) -> None:
        if self.spec is None or not self.is_mounted:
            return
        size = (self.size.width, self.size.height)
        if self._drawn and self._drawn[:2] == (self.spec, size):
            return
        if size[0] < 10 or size[1] < 4:
            return
        self.pending = True
        self._generation += 1
        self._build(self.spec, size, self._get_plotext_theme_name(self.app.theme), self._generation)

    @work(thread=True, exclusive=True, group="plot")
    def _build(self, spec: PlotSpec, size: tuple[int, int], theme: str, generation: int) -> None:
        with self._BUILD_LOCK:
            text = build_chart(spec, size[0], size[1], theme)
        self.app.call_from_thread(self._built, spec, size, text, generation)

    def _built(self, spec: PlotSpec, size: tuple[int, int], text: Text, generation: int) -> None:
        if generation < self._shown_generation:
            return  # an older drawing finished after a newer one
        self._shown_generation = generation
        self._drawn = (spec, size, text)
        self.pending = generation != self._generation
        self.refresh()

    def on_resize(self) -> None:
        self._schedule()

    def render(self) -> Text:
        if self._drawn is None:
            return Text(self.spec.title + " …" if self.spec else "", style="grey50")
        return self._drawn[2]
