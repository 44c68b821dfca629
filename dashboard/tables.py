"""Table rows for the DataTables: runs, controller decisions, events, compare outcomes (pure)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_schema.fold import RunState

from dashboard.data import RunSummary
from dashboard.safe import text

RUN_COLUMNS = [("run", "run"), ("status", "status"), ("task", "task"), ("started", "started"),
               ("epochs", "epochs"), ("best_val_acc", "best val acc"), ("fossilized", "fossilized"),
               ("pruned", "pruned"), ("panics", "panics"), ("events", "events")]
EVENT_COLUMNS = ("seq", "time", "epoch", "step", "kind", "slot", "seed", "payload")
DECISION_COLUMNS = ("seq", "epoch", "env", "controller", "op", "slot", "blueprint", "reason", "value", "top_actions")


def fmt_time(wall) -> str:
    """A Unix time as local date and time; '' for anything else (a run.json may hold anything)."""
    if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not math.isfinite(wall) or not wall:
        return ""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall))
    except (OverflowError, OSError, ValueError):  # beyond the platform's time range
        return ""


def run_rows(summaries: list[RunSummary]) -> list[dict]:
    """Runs-page rows; the run column is a markdown link to the run page."""
    return [{"run": f"[{s.run_id}](/run/{s.run_id})", "run_id": s.run_id, "status": s.status,
             "task": text(s.task if not s.error else s.error), "started": fmt_time(s.started),
             "epochs": s.epochs, "best_val_acc": None if s.best_val_acc is None else round(s.best_val_acc, 2),
             "fossilized": s.fossilized, "pruned": s.pruned, "panics": s.panics, "events": s.events}
            for s in summaries]


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


def event_rows(table: pa.Table, cursor: int | None, kinds: list[str] | None, search: str, limit: int,
               window: int = 20_000, payload_scan: int = 5_000, rank: int | None = None,
               env: int | None = None) -> list[dict]:
    """The newest ``limit`` events before ``cursor`` whose kind is in ``kinds`` (all when empty),
    of ``rank`` and ``env`` (None: any), and whose kind, slot or seed (anywhere in the log) or
    payload (among the newest ``payload_scan`` events of those kinds) contains ``search``.
    Payloads are shown as JSON text.

    The log is walked backwards in zero-copy slices of ``window`` rows, so the cost follows
    the rows looked at, not the size of the log.
    """
    end = table.num_rows if cursor is None else max(0, min(int(cursor), table.num_rows))
    search = (search or "").strip().lower()
    rows: list[dict] = []
    scanned = 0  # rows of the chosen kinds already searched payload and all
    for stop in range(end, 0, -window):
        start = max(0, stop - window)
        sub = _chosen(table.slice(start, stop - start), kinds, rank, env)
        if search and scanned >= payload_scan:
            sub = sub.filter(_envelope_match(sub, search))  # older rows: kind, slot, seed only
        scanned += sub.num_rows
        if not sub.num_rows:
            continue
        if not search:  # every row shown: convert only the newest ones still needed
            sub = sub.slice(max(0, sub.num_rows - (limit - len(rows))))
        for rec in reversed(_rows(sub)):
            row = _event_row(rec)
            if not search or search in " ".join(str(row[c]) for c in ("kind", "slot", "seed", "payload")).lower():
                rows.append(row)
                if len(rows) >= limit:
                    return rows
    return rows


def _chosen(table: pa.Table, kinds: list[str] | None, rank: int | None, env: int | None) -> pa.Table:
    """The rows of the chosen kinds, rank and env (one filter, or none when nothing is chosen)."""
    masks = []
    if kinds:
        masks.append(pc.is_in(table.column("kind"), pa.array(kinds, pa.string())))
    for name, value in (("rank", rank), ("env", env)):
        if value is not None:
            masks.append(pc.equal(table.column(name), value))
    if not masks:
        return table
    mask = masks[0]
    for m in masks[1:]:
        mask = pc.and_(mask, m)
    return table.filter(mask)


def _envelope_match(table: pa.Table, search: str) -> pa.Array:
    hits = [pc.fill_null(pc.match_substring(table.column(c), search, ignore_case=True), False)
            for c in ("kind", "slot", "seed")]
    return pc.or_(pc.or_(hits[0], hits[1]), hits[2])


_ENVELOPE = ("seq", "wall_time", "epoch", "step", "kind", "slot", "seed")


def _rows(table: pa.Table) -> list[dict]:
    """Rows as dicts with only the envelope and the payload columns of the kinds they hold."""
    kinds = pc.unique(table.column("kind")).to_pylist()
    return table.select(list(_ENVELOPE) + [k for k in kinds if k in table.column_names]).to_pylist()


def _event_row(rec: dict) -> dict:
    payload = rec.get(rec["kind"]) or {}
    wall = rec.get("wall_time")
    return {"seq": rec["seq"], "time": wall.strftime("%H:%M:%S.%f")[:-3] if wall else "",
            "epoch": rec["epoch"], "step": rec["step"], "kind": rec["kind"], "slot": rec["slot"],
            "seed": rec["seed"], "payload": json.dumps(payload, default=str, separators=(", ", ": "))[:300]}
