"""Pure formatting helpers: log strings as safe text, stage colours, bars, numbers and durations.

Every string that comes from a log (or a run.json, or a path) reaches the screen through
``plain`` / ``text``: a null becomes empty, control characters (ANSI escapes, bells, carriage
returns) become visible symbols instead of commands to the terminal, and the result goes into
rich ``Text``, never into a markup string, so ``[/]``, ``[link=…]`` or ``[@click=…]`` inside a log
string is shown as written and never obeyed.
"""

from __future__ import annotations

import math

import numpy as np
from rich.text import Text

from telemetry_schema.series import thin

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


_VISIBLE = {c: 0x2400 + c for c in range(0x20)} | {0x7F: 0x2421} | {c: 0xFFFD for c in range(0x80, 0xA0)}
"""Control characters -> their visible 'control picture' (ESC -> ␛, LF -> ␊, DEL -> ␡; C1 -> �)."""
_VISIBLE_KEEP_LINES = {c: v for c, v in _VISIBLE.items() if c != 0x0A}


def plain(value, multiline: bool = False) -> str:
    """A value from a log as display text: None -> '', anything else as ``str``, with control
    characters made visible (newlines kept when ``multiline``)."""
    if value is None:
        return ""
    return str(value).translate(_VISIBLE_KEEP_LINES if multiline else _VISIBLE)


def text(value, style: str = "", multiline: bool = False) -> Text:
    """A value from a log as rich Text (``plain``): shown as written, never parsed as markup."""
    return Text(plain(value, multiline), style=style)


def stage_text(stage: str | None) -> Text:
    return text(stage, STAGE_STYLES.get(stage, ""))


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


def gate_text(passed: bool | None, gate: str | None = "", short: bool = False) -> Text:
    gate = plain(gate)
    if passed is None:
        return Text("—", style="grey50")
    if short:
        return Text(f"{gate}{'✓' if passed else '✗'}", style="green" if passed else "bold red")
    return Text(f"{gate} pass" if passed else f"{gate} FAIL", style="green" if passed else "bold red")


def downsample(x, y, limit: int = 400) -> tuple[list[float], list[float]]:
    """At most about ``limit`` finite points of (x, y), thinned as both viewers thin
    (``series.thin``: each bucket's minimum and maximum and both ends, so a spike survives)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    idx = thin(y, limit)
    return x[idx].tolist(), y[idx].tolist()
