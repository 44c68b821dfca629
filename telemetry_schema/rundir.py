"""Run directories: ``runs/<run_id>/`` with a ``run.json`` manifest and one stream per kind and rank.

    runs/<run_id>/run.json                           id, task, config, schema version, times, status
    runs/<run_id>/events/<kind>.rank<R>.arrows       one Arrow IPC stream per event kind and rank

Format 1 run directories (``events.arrows`` / ``events.rank<R>.arrows``) are read too.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

from telemetry_schema.events import RunStarted
from telemetry_schema.reader import EVENTS_DIR, LogError, RunFollower, read_stream, stream_files
from telemetry_schema.schema import SCHEMA_VERSION
from telemetry_schema.tables import KindTables
from telemetry_schema.v1 import V1Error, is_v1, read_v1, v1_streams
from telemetry_schema.writer import EventWriter, WriterConfig, exit_status

MANIFEST = "run.json"
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and ((path / MANIFEST).exists() or bool(stream_files(path)) or bool(v1_streams(path)))


def new_run_id(name: str | None = None, clock=time.time) -> str:
    """A sortable run id: '<name>-YYYYmmdd-HHMMSS' (name defaults to 'run')."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(clock()))
    base = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", name or "run")).strip("-.")[:100] or "run"
    return f"{base}-{stamp}"


class RunExists(ValueError):
    """A run directory that a new run was to have exactly exists already."""


def exact_run_dir(runs_dir: str | Path, name: str, *, create: bool = False) -> Path:
    """``runs_dir/name`` for a new run named exactly ``name`` (``esper train --run-name``), or a
    one-line ValueError when ``name`` is not a valid run id or that directory exists already.
    ``create``: make it too, atomically (one made meanwhile by another process is refused as well),
    before ``create_run`` opens the streams in it."""
    if not isinstance(name, str) or not RUN_ID_RE.match(name) or ".." in name:
        raise ValueError(f"--run-name {name!r}: use 1-128 letters, digits and ._- (starting with a "
                         f"letter or digit)")
    run_dir = Path(runs_dir) / name
    taken = RunExists(f"{run_dir} exists already: choose another --run-name, or add "
                      f"--run-name-suffix for {name}-YYYYmmdd-HHMMSS")
    if run_dir.exists():
        raise taken
    if create:
        try:
            run_dir.mkdir(parents=True)
        except FileExistsError:
            raise taken from None
    return run_dir


def validate_run_id(run_id: str) -> str:
    """Reject ids that could escape a log directory (path traversal) or are not ours."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id) or ".." in run_id:
        raise ValueError(f"invalid run id: {run_id!r}")
    return run_id


def read_manifest(run_dir: Path) -> dict:
    """The run.json of a run directory: a dict ({} when absent, unreadable or not an object)."""
    try:
        data = json.loads((Path(run_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_manifest(run_dir: Path, data: dict) -> None:
    """Replace run.json atomically (a temporary file renamed over it)."""
    tmp = Path(run_dir) / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, Path(run_dir) / MANIFEST)


@dataclass
class RunWriter:
    """An EventWriter bound to a run directory; keeps run.json in step with the run."""

    run_dir: Path
    writer: EventWriter
    manifest: dict

    def close(self, status: str = "completed", reason: str = "") -> None:
        """Close the log, then record the end in run.json (rank 0). A log that could not be
        written is recorded as failed, with the write error as the reason."""
        error = None
        try:
            self.writer.close(status, reason)
        except OSError as exc:
            error = exc
        if self.writer.error is not None:  # the run may have gone on without its log
            reason = reason or f"the log stops early: {self.writer.error}"
        self.manifest.update(status=status, reason=reason, ended_at=time.time(),
                             events=self.writer.events_written)
        if self.writer.rank == 0:
            try:
                write_manifest(self.run_dir, self.manifest)
            except OSError:
                pass  # the disk that failed the log fails this too; the log's own end stands
        if error is not None:
            raise error

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(*exit_status(exc_type, exc))


def create_run(runs_dir: str | Path, started: RunStarted, *, rank: int = 0,
               config: WriterConfig | None = None, **writer_kwargs) -> RunWriter:
    """Create ``runs_dir/<run_id>/``, write run.json, open the rank's streams and emit ``started``.

    Refuses to overwrite existing streams of the rank: data already written is never lost.
    """
    run_id = validate_run_id(started.run_id)
    run_dir = Path(runs_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    config = config or WriterConfig(heartbeat_s=started.heartbeat_s)
    writer = EventWriter(run_dir / EVENTS_DIR, rank=rank, config=config,
                         summary_dir=run_dir if rank == 0 else None, **writer_kwargs)
    manifest = {
        "run_id": run_id, "task": started.task, "topology": started.topology,
        "config": json.loads(started.config_json or "{}"), "schema_version": SCHEMA_VERSION,
        "started_at": time.time(), "status": "running", "world_size": started.world_size,
        "host": platform.node(), "pid": os.getpid(),
    }
    if rank == 0:
        write_manifest(run_dir, manifest)
    writer.emit(started)
    writer.flush()  # a viewer opening the run sees it at once, and a run that dies early leaves it
    return RunWriter(run_dir, writer, manifest)


def read_run(path: str | Path) -> KindTables:
    """Every readable event of a run directory (every kind and rank) or of one stream file,
    format 1 or 2. Raises LogError when there is nothing to read."""
    path = Path(path)
    if path.is_file():
        return _read_v1(path) if is_v1(path) else read_stream(path)
    if not path.is_dir():
        raise LogError(f"{path}: no such run directory or log file")
    if stream_files(path):
        follower = RunFollower(path)
        tables = follower.poll(final=True)
        tables.corrupt, tables.torn_bytes = follower.corrupt, follower.torn_bytes
        return tables
    old = v1_streams(path)
    if not old:
        raise LogError(f"{path}: no event log in this directory")
    result = KindTables()
    for stream in old:
        result = result.extended(_read_v1(stream))
    return result


def _read_v1(path: Path) -> KindTables:
    try:
        return read_v1(path)
    except V1Error as exc:
        raise LogError(str(exc)) from None
