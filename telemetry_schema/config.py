"""A run's configuration as both viewers show it: flattened to dotted keys, and compared across runs.

The configuration is the JSON object a run's ``run_started`` event carries (``RunState.config``). Nested
objects become dotted keys (``training.lr``); lists and scalars become one JSON-like text each, so a
viewer shows every value as plain text and two runs compare key by key.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MISSING = "—"
"""The text of a key a run does not have, in a diff."""


def value_text(value: object) -> str:
    """One value as text: strings as they are, numbers as written, lists and the rest as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int | float):
        return repr(value)
    try:
        return json.dumps(value, sort_keys=True, default=str, allow_nan=True)
    except (TypeError, ValueError):
        return str(value)


def flatten(config: Mapping, prefix: str = "") -> list[tuple[str, str]]:
    """Every leaf of a configuration as (dotted key, value text), sorted by key.

    An empty nested object is a leaf of its own (``{}``), so a key never silently disappears.
    """
    rows: list[tuple[str, str]] = []
    for key in config:
        value = config[key]
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(flatten(value, name + "."))
        else:
            rows.append((name, value_text(value)))
    return sorted(rows) if not prefix else rows


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One key whose value differs between runs; ``values`` in the order the runs were given."""

    key: str
    values: tuple[str, ...]


def diff(configs: Sequence[Mapping], *, all_keys: bool = False) -> list[DiffRow]:
    """The keys whose values differ between the runs (every key with ``all_keys``), sorted by key.

    A key missing from a run reads ``MISSING`` for it.
    """
    flat = [dict(flatten(c)) for c in configs]
    keys = sorted(set().union(*flat)) if flat else []
    rows = []
    for key in keys:
        values = tuple(f.get(key, MISSING) for f in flat)
        if all_keys or len(set(values)) > 1:
            rows.append(DiffRow(key, values))
    return rows


def run_config(started: Mapping | None, manifest: Mapping | None) -> Mapping:
    """A run's configuration: the one its ``run_started`` event carried (``RunState.config``),
    else its run.json's (a log read before its first event, or written without it); {} if none."""
    if started:
        return started
    found = (manifest or {}).get("config")
    return found if isinstance(found, Mapping) else {}
