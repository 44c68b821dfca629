"""Pure formatting helpers: stage colours, bars, numbers and durations as rich Text."""

from __future__ import annotations

import math

import numpy as np
from rich.text import Text

STAGE_STYLES = {
    "DORMANT": "grey50",
    "GERMINATED": "bright_cyan",
    "TRAINING": "yellow",
    "BLENDING": "bright_magenta",
    "HOLDING": "bright_blue",
    "FOSSILIZED": "bold green",
    "PRUNED": "red",
    "EMBARGOED": "dark_orange",
    "RESETTING": "grey62",
}
MARK_GLYPHS = {"fossilized": ("◆", "bold green"), "pruned": ("✗", "bold red"),
               "rollback": ("↺", "bold yellow")}
STATUS_STYLES = {"running": "bold green", "stalled": "bold yellow", "crashed": "bold red",
                 "completed": "bold blue", "failed": "bold red", "interrupted": "bold yellow",
                 "waiting": "grey62", "loading": "grey62", "error": "bold red"}
G2_THRESHOLD = 0.05
"""Gradient ratio below which the G2 gate (TRAINING -> BLENDING) fails."""


def stage_text(stage: str) -> Text:
    return Text(stage, style=STAGE_STYLES.get(stage, ""))


def bar(value: float | None, width: int = 8) -> str:
    """A horizontal bar for a value in [0, 1] (eighth-block resolution)."""
    if value is None or not math.isfinite(value):
        return " " * width
    cells = max(0.0, min(1.0, value)) * width
    full = int(cells)
    part = " ▏▎▍▌▋▊▉"[int((cells - full) * 8)]
    return ("█" * full + (part if full < width else ""))[:width].ljust(width)


def num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if math.isfinite(value) else str(value)


def si(value: float | int | None) -> str:
    """Compact count: 1234 -> 1.2k, 2_500_000 -> 2.5M."""
    if value is None:
        return "—"
    v = float(value)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.1f}{unit}"
    return f"{int(v)}" if v.is_integer() else f"{v:.1f}"


def duration(seconds: float | None) -> str:
    """12s, 3m04s, 2h05m, 3d04h."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def ratio_text(ratio: float | None, threshold: float = G2_THRESHOLD, short: bool = False) -> Text:
    """The gradient ratio, red below the G2 threshold, green above."""
    if ratio is None or not math.isfinite(ratio):
        return Text("—" if short else "unmeasured", style="grey50")
    ok = ratio >= threshold
    style = "green" if ok else "bold red"
    if short:
        return Text(f"{ratio:.3f}{'✓' if ok else '✗'}", style=style)
    return Text(f"{ratio:.3f} {'≥' if ok else '<'}{threshold:g}", style=style)


def gate_text(passed: bool | None, gate: str = "", short: bool = False) -> Text:
    if passed is None:
        return Text("—", style="grey50")
    if short:
        return Text(f"{gate}{'✓' if passed else '✗'}", style="green" if passed else "bold red")
    return Text(f"{gate} pass" if passed else f"{gate} FAIL", style="green" if passed else "bold red")


def downsample(x, y, limit: int = 400) -> tuple[list[float], list[float]]:
    """At most ``limit`` evenly strided finite points of (x, y), the last one kept."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) > limit:
        idx = np.unique(np.append(np.arange(0, len(x), len(x) // limit + 1), len(x) - 1))
        x, y = x[idx], y[idx]
    return x.tolist(), y.tolist()
