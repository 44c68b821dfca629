"""What the browser sends back to a callback, checked before use.

Every value a callback receives can be forged (a request is only JSON): a cursor of
``Infinity``, a negative or huge speed, a list where a string belongs. Each function here
returns the value when it is one the page could have sent, and a harmless default otherwise,
so a callback answers with what the page would show (never a 500). Run ids, ranks and envs are
checked against the run (``RunStore.resolve``, ``Choices.parse``) and refused there instead.
"""

from __future__ import annotations

import math

MAX_INDEX = 2 ** 53
"""Cursors and counts beyond this are not rows of any log (and lose precision as floats)."""
MAX_TEXT = 200
"""Longest search text taken (longer is cut)."""


def _number(value) -> float | None:
    """A finite JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def cursor(value) -> int | None:
    """A replay cursor: a row index in [0, MAX_INDEX], or None (live) for anything else."""
    number = _number(value)
    return None if number is None else int(min(max(number, 0.0), MAX_INDEX))


def smoothing(value) -> float:
    """The EMA weight: a number in [0, 0.99] (clamped); anything else is 0 (raw curves)."""
    number = _number(value)
    return 0.0 if number is None else min(max(number, 0.0), 0.99)


def choice(value, allowed, default):
    """``value`` when it is one of ``allowed`` (compared as a string or a number), else ``default``."""
    if isinstance(value, (str, int)) and not isinstance(value, bool) and value in allowed:
        return value
    return default


def names(value) -> list[str] | None:
    """A list of short strings (event kinds, run ids), or None (no filter) for anything else."""
    if not isinstance(value, list) or not all(isinstance(v, str) and len(v) <= MAX_TEXT for v in value):
        return None
    return value


def search(value) -> str:
    """A search text (cut to MAX_TEXT characters); anything not a string is no search."""
    return value[:MAX_TEXT] if isinstance(value, str) else ""


def record(value) -> dict:
    """A dict kept in the browser (a dcc.Store), or {} for anything else."""
    return value if isinstance(value, dict) else {}


def path(value, default: str = "/") -> str:
    """A URL path or query from dcc.Location: a string, else ``default``."""
    return value if isinstance(value, str) else default


def flag(value, on: str) -> bool:
    """A checklist of one option: whether ``on`` is ticked (anything else: not)."""
    return isinstance(value, list) and on in value


THEMES = ("light", "dark")


def theme(value) -> str:
    """The browser's colour scheme: 'dark' or 'light' (anything else)."""
    return value if isinstance(value, str) and value in THEMES else "light"
