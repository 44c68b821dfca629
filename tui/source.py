"""What ``esper-tui PATH`` points at, and the event source that follows it.

A target is a run directory, a single ``.arrows`` log, or a directory of runs. ``resolve``
turns a path into a ``Target`` or raises ``TargetError`` (one line, for stderr). ``Source``
follows a run directory or a log file with the telemetry_schema followers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from telemetry_schema.reader import LogError, LogFollower, read_log
from telemetry_schema.rundir import RunFollower, is_run_dir, read_manifest, stream_paths
from telemetry_schema.schema import SchemaVersionError, check_version

_PROBE_BYTES = 1 << 20
_CONTINUATION = b"\xff\xff\xff\xff"
LIVE_WINDOW_S = 60.0
"""A run whose log changed this recently and has no clean end counts as live."""


class TargetError(Exception):
    """A path esper-tui cannot open; the message is one line."""


@dataclass(frozen=True)
class Target:
    kind: str  # 'run' | 'log' | 'runs'
    path: Path


def resolve(path: str | Path | None) -> Target:
    """The target a command-line path names (None: the newest run under ./runs)."""
    if path is None:
        runs = Path("runs")
        if not runs.is_dir():
            raise TargetError("no PATH given and no ./runs directory here")
        found = list_runs(runs)
        if not found:
            raise TargetError(f"{runs}: no runs found")
        return Target("run", found[0])
    p = Path(path)
    if not p.exists():
        raise TargetError(f"{p}: no such file or directory")
    if p.is_file():
        probe_log(p)
        return Target("log", p)
    if is_run_dir(p):
        for stream in stream_paths(p):
            probe_log(stream)
        return Target("run", p)
    if p.is_dir():
        if not list_runs(p) and not any(c.is_dir() for c in p.iterdir()):
            raise TargetError(f"{p}: empty directory (no run.json, no events*.arrows, no runs)")
        return Target("runs", p)
    raise TargetError(f"{p}: not a run directory, log file or directory of runs")


def probe_log(path: Path) -> None:
    """Refuse a file that is not an Esper Arrow stream, reading only its first bytes.

    An empty file, or one whose schema is not complete yet, passes: a writer may be starting.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(_PROBE_BYTES)
    except OSError as exc:
        raise TargetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(head) >= 4 and head[:4] != _CONTINUATION:
        raise TargetError(f"{path}: not an Arrow IPC stream (bad leading bytes)")
    try:
        msg = pa.ipc.read_message(pa.BufferReader(head))
    except (pa.ArrowInvalid, OSError, EOFError, ValueError):
        return
    if msg.type != "schema":
        raise TargetError(f"{path}: not an Esper event log (stream does not start with a schema)")
    try:
        check_version(pa.ipc.read_schema(msg), str(path))
    except SchemaVersionError as exc:
        raise TargetError(str(exc)) from None


def list_runs(runs_dir: Path) -> list[Path]:
    """Run directories directly under ``runs_dir``, newest first (by start time, then mtime)."""
    runs = [p for p in Path(runs_dir).iterdir() if is_run_dir(p)]
    return sorted(runs, key=_run_time, reverse=True)


def manifest_of(run_dir: Path) -> dict:
    """A run's run.json as a dict: {} when it is missing, unreadable or not a JSON object
    (``null``, a list, a number: a hand-edited or foreign file must not stop the viewer)."""
    manifest = read_manifest(run_dir)
    return manifest if isinstance(manifest, dict) else {}


def _text_field(manifest: dict, key: str, default: str) -> str:
    value = manifest.get(key)
    return value if isinstance(value, str) and value else default


def _run_time(run_dir: Path) -> float:
    started = manifest_of(run_dir).get("started_at")
    if isinstance(started, (int, float)) and not isinstance(started, bool) and math.isfinite(started):
        return float(started)
    return max((s.stat().st_mtime for s in stream_paths(run_dir)), default=run_dir.stat().st_mtime)


@dataclass
class RunSummary:
    """One row of the run picker."""

    path: Path
    run_id: str
    status: str = "?"
    task: str = ""
    epochs: int = 0
    fossilized: int = 0
    pruned: int = 0
    panics: int = 0
    events: int = 0
    live: bool = False
    error: str = ""


def summarize(run_dir: Path, now: float | None = None) -> RunSummary:
    """A run's picker row, from its manifest and a vectorised count of its log's kinds."""
    manifest = manifest_of(run_dir)
    row = RunSummary(run_dir, _text_field(manifest, "run_id", run_dir.name), _text_field(manifest, "status", "?"),
                     _text_field(manifest, "task", ""))
    try:
        streams = stream_paths(run_dir)
        if not streams:
            row.error = "no event stream yet"
            return row
        tables = [read_log(p).table.select(["kind", "epoch"]) for p in streams]
    except LogError as exc:
        row.error = str(exc)
        return row
    table = pa.concat_tables(tables)
    counts = {d["values"]: d["counts"] for d in pc.value_counts(table.column("kind")).to_pylist()}
    row.events = table.num_rows
    row.epochs = counts.get("epoch_completed", 0)
    row.fossilized, row.pruned = counts.get("seed_fossilized", 0), counts.get("seed_pruned", 0)
    row.panics = counts.get("governor_panic", 0)
    ended = counts.get("run_finished", 0) >= len(streams)
    if ended and row.status == "running":
        row.status = "completed"
    mtime = max(p.stat().st_mtime for p in streams)
    row.live = not ended and (now if now is not None else time.time()) - mtime < LIVE_WINDOW_S
    return row


class Source:
    """Follows a run directory (every rank) or one log file; ``poll()`` -> new events."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.follower = RunFollower(target.path) if target.kind == "run" else LogFollower(target.path)

    def poll(self) -> pa.Table:
        res = self.follower.poll()
        return res if isinstance(res, pa.Table) else res.table

    @property
    def torn_bytes(self) -> int:
        return self.follower.torn_bytes

    @property
    def ended(self) -> bool:
        return self.follower.ended

    def manifest(self) -> dict:
        return manifest_of(self.target.path) if self.target.kind == "run" else {}
