"""Time charts of a run: pure functions from a folded ``RunState`` to a ``go.Figure``.

Every time chart shares the x-axis choice (epoch, step, wall seconds since the start or the
run's cumulative FLOPs), a log or linear y axis, the governor markers (panics and rollbacks, on a hidden overlay axis so they sit at the top of the
plot whatever the zoom) and ``uirevision`` (zoom and legend toggles survive updates). Series
longer than ``max_points`` are min/max thinned here, on the server, and smoothed with the EMA
both viewers use (``telemetry_schema.series``). Trace data are
lists, so the browser can extend them in place with ``Patch()``. A chart with nothing to draw
says "no data yet" instead of showing bare axes. The colours follow the browser's light or dark
preference (``ChartOptions.theme``), like the page's stylesheet.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import plotly.graph_objects as go

from telemetry_schema.fold import RunState, Series
from telemetry_schema.series import SeriesError, SeriesOptions, curves, ema, thin, x_values

from dashboard.safe import label, text

X_AXES = MappingProxyType({"epoch": "epoch", "step": "step", "wall": "wall time (s since start)",
                          "flops": "compute (cumulative FLOPs)"})
# Small templates: plotly's named templates cost tens of ms to validate on every figure.
TEMPLATES = MappingProxyType({
    "light": {"layout": {"plot_bgcolor": "white", "paper_bgcolor": "white", "font": {"size": 12, "color": "#222"},
                         "xaxis": {"gridcolor": "#ebebeb", "zeroline": False},
                         "yaxis": {"gridcolor": "#ebebeb", "zeroline": False}}},
    "dark": {"layout": {"plot_bgcolor": "#1e2026", "paper_bgcolor": "#1e2026",
                        "font": {"size": 12, "color": "#d8dae0"},
                        "xaxis": {"gridcolor": "#363a44", "zeroline": False, "linecolor": "#555"},
                        "yaxis": {"gridcolor": "#363a44", "zeroline": False, "linecolor": "#555"}}},
})
"""The charts' colours per theme: 'dark' when the browser prefers a dark colour scheme."""
NO_DATA = "no data yet"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


@dataclass(frozen=True)
class ChartOptions:
    xaxis: str = "epoch"
    """'epoch', 'step' or 'wall'."""
    smoothing: float = 0.0
    """EMA weight of the previous smoothed value (0: raw curves)."""
    max_points: int = 2000
    """Most points a trace may ship (longer series are downsampled)."""
    g2_threshold: float = 0.05
    """The gradient-ratio line drawn on the ratio chart."""
    uirevision: str = ""
    """Kept equal across updates of one view so zoom and legend state survive."""
    log_y: bool = False
    """A log y axis on the time charts (points at or below zero are not drawn)."""
    theme: str = "light"
    """'light' or 'dark' (``TEMPLATES``)."""


class XMap:
    """Maps (epoch, step, wall) columns of a run onto the chosen x-axis."""

    def __init__(self, state: RunState, axis: str) -> None:
        self.axis = axis if axis in X_AXES else "epoch"
        self.state = state
        ep = self.epochs_series = state.epochs
        self.ep_epoch, self.ep_step, self.ep_wall = ep["epoch"], ep["step"], ep["wall"]
        starts = [s["wall"][0] for s in (state.batches, ep) if len(s)]
        self.t0 = float(min(starts)) if starts else 0.0

    def series(self, s: Series) -> np.ndarray:
        """x of every row of a Series that has epoch, step and wall columns."""
        if self.axis == "step":
            return s["step"].astype(np.float64)
        if self.axis == "wall":
            return s["wall"] - self.t0
        if self.axis == "flops":
            return x_values(self.state, s, "flops")
        if s is not self.epochs_series and len(self.ep_step) and "step" in s.names:
            # events inside an epoch: a fractional epoch, interpolated between epoch ends
            return np.interp(s["step"], np.r_[0, self.ep_step], np.r_[self.ep_epoch[0] - 1, self.ep_epoch])
        return s["epoch"].astype(np.float64)

    def epochs(self, epochs) -> np.ndarray:
        """x of events known only by their epoch (gates, governor, marks)."""
        epochs = np.asarray(epochs, dtype=np.float64)
        if self.axis == "epoch" or not len(self.ep_epoch):
            return epochs
        if self.axis == "flops":
            ys = np.asarray(self.epochs_series["flops_cumulative"], np.float64)
        else:
            ys = self.ep_step if self.axis == "step" else self.ep_wall - self.t0
        return np.interp(epochs, self.ep_epoch, ys)


def new_figure(traces, layout: dict) -> go.Figure:
    """Build the figure in one step: trace and layout dicts validated once (plotly's per-object
    setters and update_layout cost tens of ms per figure). With no point in any trace, the
    axes are hidden and the chart says "no data yet"."""
    traces = list(traces)
    layout = {"template": TEMPLATES["light"], **layout}
    if not any(_has_points(t) for t in traces):
        layout = no_data_layout(layout)
    return go.Figure(data=traces, layout=layout)


def _has_points(trace: dict) -> bool:
    values = trace.get("x") if trace.get("x") is not None else trace.get("y")
    return values is not None and len(values) > 0


def no_data_layout(layout: dict) -> dict:
    """``layout`` with every axis hidden and the "no data yet" note in the middle."""
    hidden = {"visible": False}
    axes = {k: {**v, **hidden} for k, v in layout.items() if k.startswith(("xaxis", "yaxis")) and isinstance(v, dict)}
    note = {"text": NO_DATA, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5, "showarrow": False,
            "font": {"size": 16, "color": "#888"}, "name": "no-data"}
    return {**layout, "xaxis": hidden, "yaxis": hidden, **axes, "annotations": [note], "shapes": []}


def _shaped(x: np.ndarray, y: np.ndarray, opts: ChartOptions, smooth: bool = True):
    if smooth and opts.smoothing > 0:
        y = ema(y, opts.smoothing)
    keep = thin(y, opts.max_points)  # each bucket's min and max: spikes survive
    x, y = x[keep], y[keep]
    return x, np.where(np.isfinite(y), y, np.nan)


def _break_backsteps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A gap wherever x goes back (episodic runs restart their epochs), so no line is drawn
    back across the chart."""
    back = np.flatnonzero(np.diff(x) < 0) + 1
    if len(back) == 0:
        return x, y
    return np.insert(x, back, np.nan), np.insert(y, back, np.nan)


def line(name: str, x, y, opts: ChartOptions, color: str | None = None, smooth: bool = True,
         dash: str | None = None, **kw) -> dict:
    xs, ys = _break_backsteps(*_shaped(np.asarray(x, np.float64), np.asarray(y, np.float64), opts, smooth))
    return {"type": "scatter", "name": name, "x": xs, "y": ys, "mode": "lines",
            "line": {"color": color, "dash": dash, **kw.pop("line", {})}, **kw}


def governor_traces(state: RunState, xmap: XMap) -> list[dict]:
    """Two marker traces (panics, rollbacks) on the overlay axis 'y9', details on hover."""
    traces = []
    for kind, symbol, color, y in (("panic", "x", "#d62728", 0.96), ("rollback", "triangle-down", "#ff7f0e", 0.9)):
        recs = [g for g in state.governor if g.kind == kind]
        traces.append({
            "type": "scatter", "name": f"governor {kind}", "x": xmap.epochs([g.epoch for g in recs]),
            "y": np.full(len(recs), y), "text": [governor_hover(g) for g in recs],
            "hovertemplate": "%{text}<extra></extra>", "mode": "markers", "yaxis": "y9",
            "marker": {"symbol": symbol, "size": 11, "color": color}})
    return traces


def governor_hover(g) -> str:
    """Hover text (plotly's HTML subset: every log string escaped)."""
    if g.kind == "panic":
        return (f"<b>governor panic</b> @ epoch {g.epoch}<br>{label(g.reason)}<br>loss {_f(g.loss)} "
                f"> threshold {_f(g.threshold)}<br>mean {_f(g.mean)} std {_f(g.std)} "
                f"consecutive {g.consecutive}")
    pruned = ", ".join(label(s) for s in g.seeds_pruned or ()) or "none"
    return (f"<b>governor rollback</b> @ epoch {g.epoch} -> epoch {g.to_epoch}<br>{label(g.reason)}"
            f"<br>pruned: {pruned}")


def _f(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def base_layout(title: str, opts: ChartOptions, height: int = 300, **kw) -> dict:
    return {"template": TEMPLATES.get(opts.theme, TEMPLATES["light"]),
            "title": {"text": title, "x": 0.01, "font": {"size": 14}}, "uirevision": opts.uirevision,
            "height": height, "margin": {"l": 50, "r": 10, "t": 36, "b": 20}, "hovermode": "closest",
            "legend": {"orientation": "h", "y": -0.3, "yanchor": "top"}, **kw}


def time_figure(traces: list[dict], state: RunState, title: str, ytitle: str, xmap: XMap,
                opts: ChartOptions, **layout) -> go.Figure:
    """A time chart: the traces, the governor markers, the chosen x-axis, zoom kept per axis choice."""
    yaxis = {"title": {"text": ytitle}, **layout.pop("yaxis", {})}
    if opts.log_y:
        yaxis = {**{k: v for k, v in yaxis.items() if k != "range"}, "type": "log"}
    lay = base_layout(title, opts, xaxis={"title": {"text": X_AXES[xmap.axis]}}, yaxis=yaxis,
                      yaxis9={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True},
                      **layout)
    lay["uirevision"] = f"{opts.uirevision}:{'log' if opts.log_y else 'linear'}:{xmap.axis}"
    return new_figure(traces + governor_traces(state, xmap), lay)


def series_options(opts: ChartOptions, smooth: bool = True) -> SeriesOptions:
    return SeriesOptions(x=opts.xaxis if opts.xaxis in X_AXES else "epoch",
                         smoothing=opts.smoothing if smooth else 0.0, max_points=opts.max_points, log_y=opts.log_y)


def metric_traces(state: RunState, name: str, opts: ChartOptions, title: str | None = None, color_at: int = 0,
                  scale: float = 1.0, smooth: bool = True, color: str | None = None, **kw) -> list[dict]:
    """One line per curve of metric ``name`` from the shared plot series (none when the run lacks
    it), named ``title`` (default: the metric), followed by the curve's own name when the metric
    has several (one per environment of a PPO run)."""
    try:
        found = curves(state, name, series_options(opts, smooth))
    except SeriesError:
        return []
    title = name if title is None else title
    line_kw = kw.pop("line", {})
    return [{"type": "scatter", "mode": "lines", "name": label(title if len(found) == 1 else f"{title} · {c.name}"),
             "x": c.x, "y": c.y / scale,
             "line": {"color": color or PALETTE[(color_at + i) % len(PALETTE)], **line_kw}, **kw}
            for i, c in enumerate(found)]


def loss_figure(state: RunState, opts: ChartOptions) -> go.Figure:
    """Batch loss (dense, thinned keeping its spikes), train and validation loss per epoch; governor markers."""
    xm = XMap(state, opts.xaxis)
    traces = (metric_traces(state, "batch/loss", opts, "batch loss", color="#aec7e8")
              + metric_traces(state, "train_loss", opts, "train loss", color=PALETTE[0])
              + metric_traces(state, "val_loss", opts, "val loss", color=PALETTE[1]))
    return time_figure(traces, state, "Loss", "loss", xm, opts)


def accuracy_figure(state: RunState, opts: ChartOptions) -> go.Figure:
    xm = XMap(state, opts.xaxis)
    traces = (metric_traces(state, "train_acc", opts, "train acc", color=PALETTE[0])
              + metric_traces(state, "val_acc", opts, "val acc", color=PALETTE[1]))
    return time_figure(traces, state, "Accuracy", "accuracy (%)", xm, opts)


def _slot_traces(state: RunState, prefix: str, opts: ChartOptions) -> list[dict]:
    """One trace per slot of the run (empty for a slot with no data yet), in slot order; lines
    broken where the slot held no seed (the shared series' breaks)."""
    traces = []
    for i, slot in enumerate(_slots(state)):
        color = PALETTE[i % len(PALETTE)]
        found = metric_traces(state, f"{prefix}/{slot}", opts, label(slot), smooth=False, color=color,
                              legendgroup=label(slot))
        traces += found or [{"type": "scatter", "mode": "lines", "name": label(slot), "x": [], "y": [],
                             "line": {"color": color}, "legendgroup": label(slot)}]
    return traces


def _slots(state: RunState) -> list[str]:
    return ([s for s in state.slot_ids if s != "?"] or sorted(state.alpha, key=text)
            or sorted(state.grads, key=text))


def alpha_figure(state: RunState, opts: ChartOptions) -> go.Figure:
    xm = XMap(state, opts.xaxis)
    return time_figure(_slot_traces(state, "alpha", opts), state, "Alpha per slot", "alpha",
                       xm, opts, yaxis={"range": [-0.05, 1.1]})


def ratio_figure(state: RunState, opts: ChartOptions) -> go.Figure:
    """Seed/host gradient ratio per slot, with the G2 threshold as a dashed line."""
    xm, g2 = XMap(state, opts.xaxis), opts.g2_threshold
    shape = {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": g2, "y1": g2,
             "line": {"dash": "dash", "color": "#d62728", "width": 1}}
    note = {"text": f"G2 {g2:g}", "xref": "paper", "x": 0, "yref": "y", "y": g2, "showarrow": False,
            "xanchor": "left", "yanchor": "bottom", "font": {"color": "#d62728", "size": 11}}
    return time_figure(_slot_traces(state, "grad_ratio", opts), state, "Gradient ratio per slot",
                       "seed/host ratio", xm, opts, shapes=[shape], annotations=[note])


def params_figure(state: RunState, opts: ChartOptions) -> go.Figure:
    xm = XMap(state, opts.xaxis)
    traces = (metric_traces(state, "total_params", opts, "total params", smooth=False, color=PALETTE[2],
                            line={"shape": "hv"})
              + metric_traces(state, "host_params", opts, "host params", smooth=False, color=PALETTE[7],
                              line={"shape": "hv", "dash": "dot"}))
    return time_figure(traces, state, "Parameters", "parameters", xm, opts)


def log_axis(opts: ChartOptions) -> dict:
    """A y axis in the scale asked for (points at or below zero are not drawn on a log one)."""
    return {"type": "log"} if opts.log_y else {}


PPO_COLUMNS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "explained_variance")


def ppo_figure(state: RunState, opts: ChartOptions) -> go.Figure:
    """PPO update statistics and each action head's entropy (dotted, ``H(head)``), one point per
    update in log order (empty when the log has none)."""
    p = state.ppo
    n = np.arange(1, len(p) + 1)
    traces = [line(c, n, p[c], opts, PALETTE[i]) for i, c in enumerate(PPO_COLUMNS)]
    for i, (head, s) in enumerate(sorted(state.head_entropy.items(), key=lambda kv: text(kv[0]))):
        x = np.searchsorted(p["seq"], s["seq"]) + 1
        traces.append(line(f"H({label(head)})", x, s["value"], opts, PALETTE[(i + len(PPO_COLUMNS)) % len(PALETTE)],
                           dash="dot"))
    return new_figure(traces, base_layout("PPO updates", opts, xaxis={"title": {"text": "PPO update"}},
                                          yaxis=log_axis(opts)))


def action_figure(state: RunState, opts: ChartOptions, windows: int = 60) -> go.Figure:
    """The controller's action mix over time: the share of each op among consecutive windows of
    decisions (stacked, percent), x = decisions so far at the window's end."""
    ops = [d.op for d in state.decisions]
    names = sorted(set(ops), key=text)
    size = max(1, -(-len(ops) // windows))  # ceil: at most ``windows`` windows
    ends = np.arange(size, len(ops) + size, size).clip(max=len(ops))
    sizes = np.diff(ends, prepend=0)
    codes = np.array([names.index(op) for op in ops], np.int64)
    traces = []
    for i, name in enumerate(names):  # no decisions: no names, no traces
        share = 100.0 * np.add.reduceat((codes == i).astype(np.float64), ends - sizes) / sizes
        traces.append({"type": "scatter", "name": label(name), "x": ends, "y": share, "mode": "lines",
                       "stackgroup": "ops", "line": {"color": PALETTE[i % len(PALETTE)], "width": 0.5}})
    return new_figure(traces, base_layout("Action mix", opts, xaxis={"title": {"text": "decisions"}},
                                          yaxis={"title": {"text": "% of decisions"}, "range": [0, 100]}))


def reward_figure(state: RunState, opts: ChartOptions) -> go.Figure:
    """Total reward and each reward component, one point per reward event in log order (steps
    restart with every episode, so they make a poor axis)."""
    r = state.rewards
    traces = [line("total", np.arange(1, len(r) + 1), r["total"], opts, PALETTE[0])]
    for i, (name, s) in enumerate(sorted(state.reward_components.items(), key=lambda kv: text(kv[0]))):
        x = np.searchsorted(r["seq"], s["seq"]) + 1
        traces.append(line(label(name), x, s["value"], opts, PALETTE[(i + 1) % len(PALETTE)], dash="dot"))
    return new_figure(traces, base_layout("Rewards", opts, xaxis={"title": {"text": "reward event"}},
                                          yaxis=log_axis(opts)))
