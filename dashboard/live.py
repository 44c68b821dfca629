"""Incremental updates: turn a freshly built figure into a ``Patch()`` that extends what the
browser already holds, and move the replay cursor.

The browser's copy of each figure is described by a small "shipped" record (kept in a
``dcc.Store``): a signature of everything but the data arrays, and per trace the number of
points shipped and a digest of them. When the new figure has the same signature, a Patch goes
out: a trace whose shipped prefix is unchanged gets only its new tail points (``extend``), a
trace that changed otherwise (re-downsampled, a span closed, the cursor moved back) gets its
arrays replaced, an unchanged trace nothing. A different signature (options, layout or the
set of traces changed) sends the whole figure. Either way ``uirevision`` keeps zoom and
legend toggles.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Collection

import numpy as np
import plotly.graph_objects as go
from dash import Patch, no_update

ARRAY_KEYS = ("x", "y", "text", "base")


def _digest(obj) -> str:
    return hashlib.blake2b(json.dumps(obj, separators=(",", ":"), default=str).encode(), digest_size=8).hexdigest()


def _arrays(trace: dict) -> dict[str, list]:
    return {k: trace[k] for k in ARRAY_KEYS if isinstance(trace.get(k), list)}


def plain_figure(fig: go.Figure) -> dict:
    """The figure as a dict whose trace arrays are lists (numpy would ship as typed arrays,
    which a Patch cannot extend); NaN becomes None (null)."""
    data = fig.to_plotly_json()
    for trace in data["data"]:
        for key in ARRAY_KEYS:
            value = trace.get(key)
            if isinstance(value, dict) and "bdata" in value:  # plotly's typed-array encoding
                value = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
            if isinstance(value, np.ndarray):
                trace[key] = _tolist(value)
            elif isinstance(value, tuple):
                trace[key] = list(value)
    return data


def _tolist(a: np.ndarray) -> list:
    if a.dtype.kind != "f":
        return a.tolist()
    a = round_significant(a, 7)  # shorter JSON; far below what a chart can show
    if not np.isfinite(a).all():
        return [None if v != v else v for v in a.tolist()]
    return a.tolist()


def round_significant(a: np.ndarray, digits: int) -> np.ndarray:
    """Each value rounded to ``digits`` significant digits (NaN, inf and 0 unchanged)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.floor(np.log10(np.abs(a)))
    decimals = np.where(np.isfinite(mag), digits - 1 - mag, 0)
    scale = 10.0 ** decimals
    return np.where(np.isfinite(a) & (a != 0), np.round(a * scale) / scale, a)


def figure_meta(data: dict) -> dict:
    """The shipped record of a plain figure: signature plus per-trace (length, digest of all points)."""
    traces = [(t, _arrays(t)) for t in data["data"]]
    shape = [({k: v for k, v in t.items() if k not in arrays}, sorted(arrays)) for t, arrays in traces]
    return {"sig": _digest([shape, data["layout"]]),
            "traces": [[_length(a), _digest(a)] for _, a in traces]}


def _length(arrays: dict[str, list]) -> int:
    return len(arrays.get("x", arrays.get("y", [])))


def prepare(fig: go.Figure) -> tuple[dict, dict]:
    """(plain figure, its shipped record): built once, then diffed against any client's record."""
    data = plain_figure(fig)
    return data, figure_meta(data)


def diff(data: dict, meta: dict, shipped: dict | None):
    """What to send a client holding ``shipped``: the whole figure when its shape differs (options,
    layout or trace set changed), else a Patch that extends traces that only grew and replaces
    the arrays of traces that changed (e.g. re-downsampled), or no_update when nothing changed."""
    if not _well_formed(shipped) or shipped["sig"] != meta["sig"] or len(shipped["traces"]) != len(meta["traces"]):
        return data
    patch, changed = Patch(), False
    for i, (trace, (n_new, digest_new), (n_old, digest_old)) in enumerate(
            zip(data["data"], meta["traces"], shipped["traces"])):
        if digest_new == digest_old and n_new == n_old:
            continue
        changed = True
        arrays = _arrays(trace)
        if n_new > n_old and _digest({k: v[:n_old] for k, v in arrays.items()}) == digest_old:
            for key, values in arrays.items():
                patch["data"][i][key].extend(values[n_old:])
        else:
            for key, values in arrays.items():
                patch["data"][i][key] = values
    return patch if changed else no_update


def _well_formed(shipped) -> bool:
    """Whether a record the browser sent back is one ``figure_meta`` made (it can be forged)."""
    return (isinstance(shipped, dict) and isinstance(shipped.get("sig"), str)
            and isinstance(shipped.get("traces"), list)
            and all(isinstance(t, list) and len(t) == 2 and isinstance(t[0], int) and not isinstance(t[0], bool)
                    and isinstance(t[1], str) for t in shipped["traces"]))


def figure_update(fig: go.Figure, shipped: dict | None):
    """(what to send, new shipped record) for one freshly built figure."""
    data, meta = prepare(fig)
    return diff(data, meta, shipped), meta


def next_cursor(triggers: Collection[str], mode: str, value: int | None, total: int, speed: int,
                ticks: int) -> int:
    """Where the replay cursor goes: the end when live, the start on entering replay, a step
    forward on a player tick. ``triggers`` holds every input that fired: Dash batches inputs
    that change together (a poll tick landing with the mode switch), and entering replay must
    win over the tick."""
    if mode != "replay" or value is None:
        return total
    if "mode" in triggers:  # entering replay: start from the beginning
        return 0
    if "replay-timer" in triggers:
        return min(total, value + max(1, total * max(1, speed) // max(1, ticks)))
    return min(value, total)
