"""Log strings on the dashboard: nulls, control characters and plotly's HTML subset.

Dash renders strings as text (React escapes them), but plotly.js renders a subset of HTML in
trace names, hover text and category labels (``<b>``, ``<br>``, ``<a href=…>``): a log string
must not add tags or links to a chart. ``text`` is a log value as display text (None -> '',
control characters made visible); ``label`` is the same, escaped for plotly (which shows
``&lt;`` as ``<``); ``css_name`` is a value reduced to a CSS class name.
"""

from __future__ import annotations

import html
import re

_VISIBLE = {c: 0x2400 + c for c in range(0x20)} | {0x7F: 0x2421} | {c: 0xFFFD for c in range(0x80, 0xA0)}
"""Control characters -> their visible 'control picture' (ESC -> ␛, LF -> ␊; C1 -> �)."""


def text(value) -> str:
    """A value from a log (or run.json) as one line of display text."""
    if value is None:
        return ""
    return str(value).translate(_VISIBLE)


def label(value) -> str:
    """``text`` escaped for plotly: its tags and entities are shown, never obeyed."""
    return html.escape(text(value), quote=False)


def css_name(value) -> str:
    """Lower-case letters, digits and dashes only (a stage name as a class: 'stage-training')."""
    return re.sub(r"[^a-z0-9-]+", "-", text(value).lower()).strip("-") or "none"
