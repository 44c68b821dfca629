"""Charts of any metric a run logged, drawn from the shared plot series (``telemetry_schema.series``).

The metric picker's chart, the system chart (CPU and memory, from ``system`` events) and the
compare page's overlay all take their curves from ``series.curves``: the names, the x on the
chosen axis (epoch, step, wall, FLOPs), the smoothing, the thinning that keeps spikes and the
breaks where a line must not be drawn are the ones the TUI shows. This module only lays them out.
"""

from __future__ import annotations

import plotly.graph_objects as go

from telemetry_schema.state import RunState

from dashboard.figures import (PALETTE, X_AXES, ChartOptions, XMap, base_layout, governor_traces, metric_traces,  # noqa: F401
                               new_figure, series_options)
from dashboard.safe import label

SYSTEM_PERCENT = ("system/cpu_percent", "system/cpu_total_percent", "system/gpu_util_percent")
SYSTEM_BYTES = ("system/rss_bytes", "system/mem_used_bytes", "system/gpu_mem_used_bytes")
GIB = float(2 ** 30)


def _time_layout(title: str, ytitle: str, opts: ChartOptions, **kw) -> dict:
    yaxis = {"title": {"text": ytitle}, **({"type": "log"} if opts.log_y else {})}
    lay = base_layout(title, opts, xaxis={"title": {"text": X_AXES.get(opts.xaxis, "epoch")}}, yaxis=yaxis,
                      yaxis9={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True}, **kw)
    lay["uirevision"] = f"{opts.uirevision}:{'log' if opts.log_y else 'linear'}:{opts.xaxis}"
    return lay


def metric_figure(state: RunState, names: list[str], opts: ChartOptions) -> go.Figure:
    """The picked metrics overlaid, with the governor's panics and rollbacks (reason, target on hover)."""
    traces = []
    for name in names:
        traces += metric_traces(state, name, opts, color_at=len(traces))
    markers = governor_traces(state, XMap(state, opts.xaxis)) if traces else []
    title = "Metrics" if names else "Metrics: pick one or more above"
    return new_figure(traces + markers, _time_layout(title, "value", opts, height=360, showlegend=True))


def system_figure(state: RunState, opts: ChartOptions) -> go.Figure:
    """The training process's and the machine's CPU use (percent, left axis) and memory (GiB,
    right axis, dotted), and the GPU's when the run has one."""
    traces = []
    for name in SYSTEM_PERCENT:
        traces += metric_traces(state, name, opts, color_at=len(traces))
    for name in SYSTEM_BYTES:
        traces += metric_traces(state, name, opts, color_at=len(traces), scale=GIB, yaxis="y2")
    for t in traces:
        t["name"] = t["name"].removeprefix("system/")
        if t.get("yaxis") == "y2":
            t["name"] = t["name"].replace("_bytes", " (GiB)")
            t["line"]["dash"] = "dot"
    y2 = {"title": {"text": "memory (GiB)"}, "overlaying": "y", "side": "right", "showgrid": False,
          **({"type": "log"} if opts.log_y else {})}
    lay = _time_layout("System", "CPU (%)", opts, yaxis2=y2)
    lay["margin"] = {**lay["margin"], "r": 50}
    return new_figure(traces, lay)


def compare_metric_figure(states: dict[str, RunState], name: str, opts: ChartOptions) -> go.Figure:
    """One curve per run (per environment of a PPO run) of metric ``name``, on the chosen x axis."""
    traces = []
    for i, (run_id, st) in enumerate(states.items()):
        for t in metric_traces(st, name, opts, title=run_id):
            t["line"]["color"] = PALETTE[i % len(PALETTE)]
            traces.append(t)
    return new_figure(traces, _time_layout(f"Compare: {label(name)}", label(name), opts, height=420,
                                           showlegend=True))

