"""Lifecycle charts: the stage swimlane (a Gantt of stages per slot) and the gate timeline.

Pure functions of a ``RunState``. Both use epochs on x: the lifecycle is decided per epoch.
"""

from __future__ import annotations

import plotly.graph_objects as go

from telemetry_schema.fold import STAGES, RunState, StageSpan

from dashboard.figures import ChartOptions, base_layout, governor_hover, new_figure
from dashboard.safe import label

STAGE_COLORS = {"GERMINATED": "#c7e9c0", "TRAINING": "#74c476", "BLENDING": "#6baed6", "HOLDING": "#9e9ac8",
                "FOSSILIZED": "#636363", "PRUNED": "#fb6a4a", "EMBARGOED": "#fdae6b", "RESETTING": "#fdd0a2",
                "DORMANT": "#f0f0f0"}
MARK_SYMBOLS = {"fossilized": ("star", "#252525"), "pruned": ("x", "#cb181d")}


def span_segments(spans: list[StageSpan], now_epoch: int) -> list[tuple[str, str, float, float, str]]:
    """(slot, stage, start, end, seed) per span; an open span ends at ``now_epoch`` (at least +1).
    Slot and seed are ``label``s (plotly shows them as categories and hover text)."""
    out = []
    for s in spans:
        end = s.end_epoch if s.end_epoch is not None else max(now_epoch, s.start_epoch + 1)
        out.append((label(s.slot), s.stage, float(s.start_epoch), float(end), label(s.seed)))
    return out


def swimlane_figure(state: RunState, opts: ChartOptions) -> go.Figure:
    """One horizontal bar per stage span (a trace per stage), fossilize/prune marks, rollbacks."""
    segs = span_segments(state.spans, state.epoch)
    slots = [label(s) for s in state.slot_ids if s != "?"] or sorted({s[0] for s in segs})
    traces = []
    for stage in STAGES:
        mine = [s for s in segs if s[1] == stage]
        if mine:
            traces.append({
                "type": "bar", "name": stage, "orientation": "h", "y": [s[0] for s in mine],
                "base": [s[2] for s in mine], "x": [s[3] - s[2] for s in mine],
                "marker": {"color": STAGE_COLORS.get(stage, "#999")}, "textposition": "none",
                "text": [f"{s[4]}<br>{stage} epochs {s[2]:g}-{s[3]:g}" for s in mine],
                "hovertemplate": "%{y}: %{text}<extra></extra>"})
    for kind, (symbol, color) in MARK_SYMBOLS.items():
        marks = [m for m in state.marks if m.kind == kind and m.slot]
        traces.append(_markers(kind, [m.epoch for m in marks], [label(m.slot) for m in marks], symbol, color,
                               [f"{label(m.seed)} {kind} @ epoch {m.epoch}<br>{label(m.reason)}" for m in marks]))
    rollbacks = [g for g in state.governor if g.kind == "rollback"]
    traces.append(_markers("rollback", [g.epoch for g in rollbacks], ["governor"] * len(rollbacks),
                           "triangle-down", "#ff7f0e", [governor_hover(g) for g in rollbacks]))
    return new_figure(traces, base_layout(
        "Seed lifecycle", opts, height=120 + 40 * (len(slots) + 1), barmode="overlay",
        margin={"l": 70, "r": 10, "t": 36, "b": 36}, xaxis={"title": {"text": "epoch"}},
        yaxis={"categoryorder": "array", "categoryarray": ["governor"] + slots[::-1]},
        legend={"orientation": "h", "y": -0.3}))


def _markers(name: str, x: list, y: list, symbol: str, color: str, text: list[str]) -> dict:
    return {"type": "scatter", "name": name, "mode": "markers", "x": x, "y": y, "text": text,
            "marker": {"symbol": symbol, "size": 12, "color": color}, "hovertemplate": "%{text}<extra></extra>"}


def gates_figure(state: RunState, opts: ChartOptions) -> go.Figure:
    """Every gate evaluation at its epoch, one row per gate, passed and failed apart; checks on hover."""
    traces = []
    for passed, name, symbol, color in ((True, "passed", "circle", "#31a354"), (False, "failed", "x", "#de2d26")):
        gates = [g for g in state.gates if g.passed is passed]
        traces.append(_markers(name, [g.epoch for g in gates], [label(g.gate) for g in gates], symbol, color,
                               [gate_hover(g) for g in gates]))
    gate_names = sorted({label(g.gate) for g in state.gates})
    return new_figure(traces, base_layout(
        "Gate evaluations", opts, height=260, xaxis={"title": {"text": "epoch"}},
        yaxis={"categoryorder": "array", "categoryarray": gate_names}, legend={"orientation": "h", "y": -0.25}))


def gate_hover(g) -> str:
    """Hover text (plotly's HTML subset: every log string escaped)."""
    ok = ", ".join(label(c) for c in g.checks_passed or ()) or "-"
    bad = ", ".join(label(c) for c in g.checks_failed or ()) or "-"
    verdict = "PASSED" if g.passed else "FAILED"
    return (f"<b>{label(g.gate)} -> {label(g.target_stage)} {verdict}</b> @ epoch {g.epoch}"
            f"<br>slot {label(g.slot)} seed {label(g.seed)}<br>passed: {ok}<br>failed: {bad}")
