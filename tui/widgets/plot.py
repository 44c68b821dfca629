"""A plotext plot whose (slow, pure-Python) drawing runs in a thread worker, never in a paint.

``draw(spec)`` takes plain lists; the worker builds the chart at the widget's size and hands
back a rich Text, which ``render`` shows. Until then the previous drawing stays on screen.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.worker import get_current_worker
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

SERIES_COLORS = ("cyan", "magenta", "yellow", "green", "red", "blue", "white", "orange")


@dataclass(frozen=True)
class PlotSpec:
    """What one chart shows: curves of (label, xs, ys) as tuples (a NaN in both breaks the
    line there), an optional threshold and whether the y axis is logarithmic."""

    title: str
    xlabel: str
    curves: tuple = field(default_factory=tuple)
    hline: float | None = None
    log_y: bool = False

    def __post_init__(self) -> None:
        # NaN != NaN, but tuples compare items by identity first: with every NaN the one
        # ``math.nan``, two specs of the same data are equal, and a plot is not drawn again for it
        object.__setattr__(self, "curves", tuple((label, _one_nan(xs), _one_nan(ys)) for label, xs, ys in self.curves))


def _one_nan(values) -> tuple:
    return tuple(math.nan if v != v else v for v in values)


def segments(xs, ys) -> list[tuple[list[float], list[float]]]:
    """The unbroken runs of finite points of one curve (plotext draws no gaps of its own)."""
    out: list[tuple[list[float], list[float]]] = [([], [])]
    for x, y in zip(xs, ys):
        if math.isfinite(x) and math.isfinite(y):
            out[-1][0].append(x)
            out[-1][1].append(y)
        elif out[-1][0]:
            out.append(([], []))
    return [seg for seg in out if seg[0]]


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
        for j, (sx, sy) in enumerate(segments(xs, ys)):
            # one legend entry per curve, on its first piece
            plt.plot(sx, sy, label=label if j == 0 else None, color=SERIES_COLORS[i % len(SERIES_COLORS)])
            drawn = True
    if spec.log_y and drawn:  # plotext's log axis fails on a chart with no points
        plt.yscale("log")
    if spec.hline is not None and drawn and (spec.hline > 0 or not spec.log_y):
        plt.hline(spec.hline, "red")
    return Text.from_ansi(plt.build())


class AsyncPlot(PlotextPlot):
    """A PlotextPlot drawn off the UI thread, once per (spec, size).

    A drawing waits for the next refresh, so that it is made at the size the layout settles on
    (new data often changes the height of the widgets around a plot), and a drawing that a newer
    one superseded before it started is skipped: each costs 30–100 ms of pure-Python work that
    would hold up the first screen."""

    _BUILD_LOCK: ClassVar[threading.Lock] = threading.Lock()  # plotext keeps module-level state

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec: PlotSpec | None = None
        self._drawn: tuple[PlotSpec, tuple[int, int], Text] | None = None
        self._requested = False
        self._building: tuple[PlotSpec, tuple[int, int]] | None = None
        self._generation = 0
        self._shown_generation = 0

    @property
    def pending(self) -> bool:
        """Whether a drawing is asked for or under way (the one shown may be out of date)."""
        return self._requested or self._building is not None

    def draw(self, spec: PlotSpec) -> None:
        self.spec = spec
        if not self._requested:
            self._requested = True
            self.call_after_refresh(self._schedule)

    def _schedule(self) -> None:
        self._requested = False
        if self.spec is None or not self.is_mounted:
            return
        want = (self.spec, (self.size.width, self.size.height))
        if want == self._building:
            return
        if self._drawn and self._drawn[:2] == want:
            if self._building is not None:
                # back to what is shown while another drawing is under way (a size that did not
                # last): that drawing is dropped, unbuilt if it still waits for the lock
                self.workers.cancel_group(self, "plot")
                self._generation += 1
                self._shown_generation = self._generation
                self._building = None
            return
        width, height = want[1]
        if width < 10 or height < 4:
            return
        self._building = want
        self._generation += 1
        self._build(self.spec, want[1], self._get_plotext_theme_name(self.app.theme), self._generation)

    @work(thread=True, exclusive=True, group="plot")
    def _build(self, spec: PlotSpec, size: tuple[int, int], theme: str, generation: int) -> None:
        with self._BUILD_LOCK:
            if get_current_worker().is_cancelled:
                return  # a newer drawing was asked for while this one waited for the lock
            text = build_chart(spec, size[0], size[1], theme)
        self.app.call_from_thread(self._built, spec, size, text, generation)

    def _built(self, spec: PlotSpec, size: tuple[int, int], text: Text, generation: int) -> None:
        if generation < self._shown_generation:
            return  # an older drawing finished after a newer one
        self._shown_generation = generation
        self._drawn = (spec, size, text)
        if generation == self._generation:
            self._building = None
        self.refresh()

    def on_resize(self) -> None:
        self._schedule()

    def render(self) -> Text:
        if self._drawn is None:
            return Text(self.spec.title + " …" if self.spec else "", style="grey50")
        return self._drawn[2]
