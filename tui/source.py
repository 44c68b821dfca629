"""What ``esper-tui PATH`` points at, and the event source that follows it.

A target is a run directory, a single log file, or a directory of runs. ``resolve`` turns a
path into a ``Target`` or raises ``TargetError`` (one line, for stderr). ``Source`` follows a
run directory (or one stream file) with telemetry_schema's followers; a format 1 log is read
whole once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from telemetry_schema.events import KINDS
from telemetry_schema.reader import LogError, RunFollower, StreamFollower, probe, stream_files
from telemetry_schema.rundir import is_run_dir, read_manifest, read_run
from telemetry_schema.runs import list_runs, run_files
from telemetry_schema.schema import conform
from telemetry_schema.tables import KindTables
from telemetry_schema.v1 import is_v1, v1_streams


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
    try:
        if p.is_file():
            probe(p)
            return Target("log", p)
        if is_run_dir(p):
            _probe_run(p)
            return Target("run", p)
    except LogError as exc:
        raise TargetError(str(exc)) from None
    if p.is_dir():
        if not list_runs(p) and not any(c.is_dir() for c in p.iterdir()):
            raise TargetError(f"{p}: empty directory (no run.json, no events/, no runs)")
        return Target("runs", p)
    raise TargetError(f"{p}: not a run directory, log file or directory of runs")


def _probe_run(run_dir: Path) -> None:
    """Refuse a run directory none of whose streams is an Esper log (LogError, the first
    stream's reason); one with some readable streams opens, its corrupt ones reported."""
    problems = []
    streams = run_files(run_dir)
    for stream in streams:
        try:
            probe(stream)
        except LogError as exc:
            problems.append(exc)
    if streams and len(problems) == len(streams):
        raise problems[0]


class Source:
    """Follows a run directory (every kind and rank) or one log file; ``poll()`` -> new events."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.torn_bytes = 0
        self.ended = False
        self.corrupt: list[str] = []
        path = target.path
        self._legacy = (target.kind == "run" and not stream_files(path) and bool(v1_streams(path))) or \
            (target.kind == "log" and is_v1(path))
        self._run = RunFollower(path) if target.kind == "run" and not self._legacy else None
        self._stream = StreamFollower(path) if target.kind == "log" and not self._legacy else None

    def poll(self) -> KindTables:
        """The events that arrived since the last poll. Raises LogError for a log that cannot
        be read, or a lone stream of a kind this viewer does not know."""
        if self._legacy:  # format 1: read whole, once
            if self.ended:
                return KindTables()
            got = read_run(self.target.path)
            self.ended, self.torn_bytes, self.corrupt = True, got.torn_bytes, got.corrupt
            return got
        if self._run is not None:
            got = self._run.poll()
            self.torn_bytes, self.ended, self.corrupt = self._run.torn_bytes, self._run.ended, self._run.corrupt
            return got
        batches = self._stream.poll()
        self.torn_bytes, self.ended = self._stream.torn_bytes, self._stream.ended
        self.corrupt = [self._stream.corrupt] if self._stream.corrupt else []
        kind = self._stream.kind
        if kind and kind not in KINDS:  # (in a run directory, such streams are skipped)
            raise LogError(f"{self.target.path}: events of kind {kind[:40]!r}, which this viewer does not know")
        if not batches:
            return KindTables()
        return KindTables({kind: conform(pa.Table.from_batches([b.batch for b in batches]), kind)})

    def manifest(self) -> dict:
        return read_manifest(self.target.path) if self.target.kind == "run" else {}
