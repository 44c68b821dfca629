"""The runs of a log directory, and one summary row per run: what both run lists show.

``list_runs`` finds run directories (newest first); ``summarize`` reads and folds one run into a
``RunSummary`` whose status comes from ``status.run_status`` (its events and heartbeats,
never run.json alone), so the TUI's picker and the dashboard's runs page agree. A viewer that
already follows a run (the dashboard keeps each run's fold) makes the same row from that fold
with ``summary_of``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from telemetry_schema.fold import RunState, fold_tables
from telemetry_schema.reader import LogError, stream_files
from telemetry_schema.rundir import is_run_dir, read_manifest, read_run
from telemetry_schema.state import status_of
from telemetry_schema.status import run_status
from telemetry_schema.summary import Tally, read_summary
from telemetry_schema.tags import read_tags
from telemetry_schema.v1 import v1_streams


@dataclass
class RunSummary:
    """One row of a run list."""

    path: Path
    run_id: str
    status: str = "waiting"
    task: str = ""
    started: float | None = None
    epochs: int = 0
    best_val_acc: float | None = None
    fossilized: int = 0
    pruned: int = 0
    panics: int = 0
    events: int = 0
    error: str = ""
    """Why the run's log could not be read (one line), or why part of it is corrupt."""
    tags: tuple[str, ...] = ()
    """The user's tags on the run (``tags.py``)."""


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value) -> str:
    """A run.json field shown as text only when it is one (a hand-edited or foreign run.json may
    hold a list or an object there: shown as nothing, not as its Python repr)."""
    return value if isinstance(value, str) else ""


def run_files(run_dir: Path) -> list[Path]:
    """The log files of a run directory, either format."""
    return stream_files(run_dir) or v1_streams(run_dir)


def started_at(run_dir: Path) -> float:
    """When a run started: run.json's start time when it is a number, else its files' times."""
    started = _number(read_manifest(run_dir).get("started_at"))
    if started is not None:
        return started
    try:
        return max((p.stat().st_mtime for p in run_files(run_dir)), default=Path(run_dir).stat().st_mtime)
    except OSError:
        return 0.0


def list_runs(runs_dir: Path) -> list[Path]:
    """Run directories directly under ``runs_dir``, newest first (by start time)."""
    try:
        runs = [p for p in Path(runs_dir).iterdir() if is_run_dir(p)]
    except OSError:
        return []
    return sorted(runs, key=started_at, reverse=True)


def summarize(run_dir: Path, now: float | None = None, *, read_log: bool = False) -> RunSummary:
    """A run's row: from the summary file its writer keeps (a few hundred bytes) when it has one,
    else (or with ``read_log``) from its whole log, read and folded. A log that cannot be read
    gives a row with its error; so does one whose every stream is corrupt."""
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    tally = None if read_log else read_summary(run_dir)
    if tally is not None and tally.run_id:
        return summary_from_tally(run_dir, tally, now)
    return _from_log(run_dir, now)


def _tagged(row: RunSummary, run_dir: Path) -> RunSummary:
    row.tags = tuple(read_tags(run_dir))
    return row


def _from_log(run_dir: Path, now: float) -> RunSummary:
    try:
        tables = read_run(run_dir)
    except LogError as exc:
        row = summary_of(run_dir, RunState())
        row.status, row.error = "error", str(exc)
        return row
    row = summary_of(run_dir, fold_tables(tables), now, tables.corrupt)
    if tables.corrupt and not tables.num_rows:
        row.status = "error"
    return row


def summary_from_tally(run_dir: Path, tally: Tally, now: float) -> RunSummary:
    """A run's row from its summary file, its status judged by the rule a fold uses."""
    manifest = read_manifest(run_dir)
    return _tagged(RunSummary(
        Path(run_dir), tally.run_id, status=status_of(tally.end_status, tally.last_wall, tally.last_progress_wall,
                                                       tally.heartbeat_s, now),
        task=tally.task or _text(manifest.get("task")),
        started=tally.started if tally.started is not None else _number(manifest.get("started_at")),
        epochs=tally.epochs, best_val_acc=tally.best_val_acc, fossilized=tally.fossilized, pruned=tally.pruned,
        panics=tally.panics, events=tally.events), run_dir)


def summary_of(run_dir: Path, state: RunState, now: float | None = None,
               corrupt: list[str] | tuple[str, ...] = ()) -> RunSummary:
    """A run's row from its fold (rank 0, every environment) and its corrupt streams: what
    ``summarize`` makes of a run it has just read, for a viewer that already follows the run."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    run_id = manifest.get("run_id") if isinstance(manifest.get("run_id"), str) else run_dir.name
    row = RunSummary(run_dir, run_id, task=_text(manifest.get("task")),
                     started=_number(manifest.get("started_at")))
    row.status = run_status(state, time.time() if now is None else now)
    row.task = state.task or row.task
    row.started = state.started_wall or row.started or state.first_wall
    row.epochs = len(state.epochs)
    row.best_val_acc = state.best_val_acc()
    row.fossilized, row.pruned, row.panics = state.seeds_fossilized(), state.seeds_pruned(), state.panics()
    row.events = state.events
    row.error = "; ".join(corrupt)
    return _tagged(row, run_dir)


def matches(row: RunSummary, text: str = "", status: str = "", tag: str = "") -> bool:
    """Whether a run list row passes the list's filters: ``text`` in its id or task
    (case-insensitive), its ``status``, one of its ``tags`` (empty: any)."""
    hay = f"{row.run_id} {row.task}".lower()
    return ((not text or text.lower() in hay) and (not status or row.status == status)
            and (not tag or tag in row.tags))


def parse_filter(query: str) -> tuple[str, str, str]:
    """A run list's one-line filter as ``matches`` takes it: ``status:NAME`` and ``tag:NAME``
    words pick those, the other words are the text (``crashed tag:baseline lr`` ->
    ('crashed lr', '', 'baseline'); ``status:crashed`` -> ('', 'crashed', ''))."""
    text, status, tag = [], "", ""
    for word in query.split():
        key, _, value = word.partition(":")
        if key == "status" and value:
            status = value
        elif key == "tag" and value:
            tag = value
        else:
            text.append(word)
    return " ".join(text), status, tag
