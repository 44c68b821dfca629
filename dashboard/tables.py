"""Table rows for the DataTables: runs, controller decisions, events, compare outcomes (pure).

The events table shows what ``telemetry_schema.search.search`` finds (the query language both
viewers share), newest first; the rows are taken from the run's ``EventLog`` one kind at a time.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_schema.eventlog import EventLog
from telemetry_schema.fold import RunState
from telemetry_schema.runs import RunSummary
from telemetry_schema.schema import ENVELOPE_NAMES
from telemetry_schema.search import search

from dashboard.safe import text

RUN_COLUMNS = [("run", "run"), ("status", "status"), ("task", "task"), ("started", "started"),
               ("epochs", "epochs"), ("best_val_acc", "best val acc"), ("fossilized", "fossilized"),
               ("pruned", "pruned"), ("panics", "panics"), ("events", "events"), ("tags", "tags")]
EVENT_COLUMNS = ("seq", "time", "epoch", "step", "kind", "slot", "seed", "payload")
DECISION_COLUMNS = ("seq", "epoch", "env", "controller", "op", "slot", "blueprint", "reason", "value", "top_actions")
CORRUPT = " · corrupt"
"""Appended to the status of a run some of whose streams are corrupt (the rest were read)."""


def fmt_time(wall) -> str:
    """A Unix time as local date and time; '' for anything else (a run.json may hold anything)."""
    if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not math.isfinite(wall) or not wall:
        return ""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall))
    except (OverflowError, OSError, ValueError):  # beyond the platform's time range
        return ""


def run_rows(summaries: list[RunSummary]) -> list[dict]:
    """Runs-page rows (``runs.RunSummary``, as esper-tui's picker lists them); the run column is
    a markdown link to the run page (by directory name). A run that cannot be read shows its
    error in the task column; one read in part is marked corrupt. Log and run.json strings as
    text (``safe.text``)."""
    rows = []
    for s in summaries:
        run_id = s.path.name
        failed = s.status == "error"
        rows.append({
            "run": f"[{run_id}](/run/{run_id})", "run_id": run_id,
            "status": s.status + (CORRUPT if s.error and not failed else ""),
            "task": text(s.error if failed else s.task), "problem": text(s.error), "started": fmt_time(s.started),
            "epochs": s.epochs, "best_val_acc": None if s.best_val_acc is None else round(s.best_val_acc, 2),
            "fossilized": s.fossilized, "pruned": s.pruned, "panics": s.panics, "events": s.events,
            "tags": ", ".join(s.tags)})
    return rows


def outcome_rows(states: dict[str, RunState]) -> list[dict]:
    rows = []
    for run_id, st in states.items():
        best = st.best_val_acc()
        final = st.epochs.last("val_acc")
        params = st.epochs.last("total_params")
        rows.append({"run": run_id, "task": st.task, "epochs": st.epochs.length,
                     "best_val_acc": None if best is None else round(best, 2),
                     "final_val_acc": None if final is None or np.isnan(final) else round(float(final), 2),
                     "params": None if params is None or np.isnan(params) else int(params),
                     "fossilized": st.seeds_fossilized(), "pruned": st.seeds_pruned(), "panics": st.panics()})
    return rows


def decision_rows(state: RunState, limit: int) -> list[dict]:
    """The newest ``limit`` controller decisions, newest first."""
    rows = []
    for d in reversed(state.decisions[-limit:]):
        probs = [(text(k), v) for k, v in (d.action_probs or {}).items() if isinstance(v, (int, float))]
        top = sorted(probs, key=lambda kv: -kv[1])[:3]
        rows.append({"seq": d.seq, "epoch": d.epoch, "env": d.env, "controller": d.controller, "op": d.op,
                     "slot": d.slot, "blueprint": d.blueprint, "reason": d.reason,
                     "value": None if d.value is None else round(d.value, 4),
                     "top_actions": ", ".join(f"{k} {v:.2f}" for k, v in top)})
    return rows


def find_events(log: EventLog, query: str, kinds: list[str] | None = None, stop: int | None = None,
                rank: int | None = None, env: int | None = None) -> np.ndarray:
    """Positions (ascending) of the events before ``stop`` that match ``query`` (the shared
    query language: raises ``QueryError``), are of one of ``kinds`` (all when empty) and come
    from ``rank`` and ``env`` (None: any; kinds about the whole run match every env)."""
    found = search(log, query or "", rank=rank, env=env, stop=stop)
    if kinds and len(found):
        kind_of, _ = log.order()
        codes = [i for i, k in enumerate(log.kinds) if k in set(kinds)]
        found = found[np.isin(kind_of[found], codes)]
    return found


def event_rows(log: EventLog, positions: np.ndarray, limit: int) -> list[dict]:
    """The newest ``limit`` events of ``positions`` (ascending), newest first; payloads as JSON."""
    chosen = np.asarray(positions, np.int64)[-limit:][::-1] if limit > 0 else np.zeros(0, np.int64)
    if not len(chosen):
        return []
    kind_of, row_of = log.order()
    kinds, tables = list(log.kinds), log.tables.tables
    codes = kind_of[chosen]
    rows: list[dict | None] = [None] * len(chosen)
    for code in np.unique(codes):
        at = np.flatnonzero(codes == code)
        kind = kinds[int(code)]
        table = tables[kind].take(pa.array(row_of[chosen[at]]))
        wall = table.schema.get_field_index("wall_time")
        table = table.set_column(wall, "wall_time", pc.cast(table.column(wall), pa.int64()))
        for i, rec in zip(at.tolist(), table.to_pylist()):
            rows[i] = _event_row(kind, rec)
    return rows


def _event_row(kind: str, rec: dict) -> dict:
    payload = {k: v for k, v in rec.items() if k not in ENVELOPE_NAMES}
    wall = rec.get("wall_time")
    when = datetime.fromtimestamp(wall / 1e6, timezone.utc).strftime("%H:%M:%S.%f")[:-3] if wall is not None else ""
    return {"seq": rec["seq"], "time": when, "epoch": rec.get("epoch"), "step": rec.get("step"), "kind": kind,
            "slot": rec.get("slot"), "seed": rec.get("seed"),
            "payload": json.dumps(payload, default=str, separators=(", ", ": "))[:300]}
