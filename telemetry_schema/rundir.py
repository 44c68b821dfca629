"""Run directories: ``runs/<run_id>/`` with a ``run.json`` manifest and one stream per rank.

    runs/<run_id>/run.json            manifest: id, task, config, schema version, times, status
    runs/<run_id>/events.arrows       the stream of a single-process run (rank 0)
    runs/<run_id>/events.rank<R>.arrows   one stream per rank of a distributed run
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from telemetry_schema.events import RunStarted
from telemetry_schema.reader import LogError, LogFollower, merge_streams
from telemetry_schema.schema import SCHEMA_VERSION
from telemetry_schema.writer import EventWriter, WriterConfig, exit_status

MANIFEST = "run.json"
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def stream_name(rank: int, world_size: int) -> str:
    return "events.arrows" if world_size == 1 else f"events.rank{rank}.arrows"


def stream_paths(run_dir: Path) -> list[Path]:
    """The event streams of a run directory, rank 0 first."""
    run_dir = Path(run_dir)
    single = run_dir / "events.arrows"
    ranked = sorted(run_dir.glob("events.rank*.arrows"),
                    key=lambda p: int(re.sub(r"\D", "", p.name.split(".")[1]) or 0))
    return ([single] if single.exists() else []) + ranked


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and ((path / MANIFEST).exists() or bool(stream_paths(path)))


def new_run_id(name: str | None = None, clock=time.time) -> str:
    """A sortable run id: '<name>-YYYYmmdd-HHMMSS' (name defaults to 'run')."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(clock()))
    base = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", name or "run")).strip("-.")[:100] or "run"
    return f"{base}-{stamp}"


def validate_run_id(run_id: str) -> str:
    """Reject ids that could escape a log directory (path traversal) or are not ours."""
    if not RUN_ID_RE.match(run_id) or ".." in run_id:
        raise ValueError(f"invalid run id: {run_id!r}")
    return run_id


def read_manifest(run_dir: Path) -> dict:
    """The run.json of a run directory ({} when absent or unreadable)."""
    try:
        return json.loads((Path(run_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _write_manifest(run_dir: Path, data: dict) -> None:
    tmp = run_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, run_dir / MANIFEST)


@dataclass
class RunWriter:
    """An EventWriter bound to a run directory; keeps run.json in step with the run."""

    run_dir: Path
    writer: EventWriter
    manifest: dict

    def close(self, status: str = "completed", reason: str = "") -> None:
        self.writer.close(status, reason)
        self.manifest.update(status=status, reason=reason, ended_at=time.time(),
                             events=self.writer.events_written)
        if self.writer.rank == 0:
            _write_manifest(self.run_dir, self.manifest)

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(*exit_status(exc_type, exc))


def create_run(runs_dir: str | Path, started: RunStarted, *, rank: int = 0,
               config: WriterConfig | None = None, **writer_kwargs) -> RunWriter:
    """Create ``runs_dir/<run_id>/``, write run.json, open the rank's stream and emit ``started``.

    Refuses to overwrite an existing stream: data already written is never lost.
    """
    run_id = validate_run_id(started.run_id)
    run_dir = Path(runs_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / stream_name(rank, started.world_size)
    if path.exists():
        raise FileExistsError(f"{path}: already exists; choose another --run-name")
    config = config or WriterConfig(heartbeat_s=started.heartbeat_s)
    writer = EventWriter(path, rank=rank, config=config, **writer_kwargs)
    manifest = {
        "run_id": run_id, "task": started.task, "topology": started.topology,
        "config": json.loads(started.config_json or "{}"), "schema_version": SCHEMA_VERSION,
        "started_at": time.time(), "status": "running", "world_size": started.world_size,
        "host": platform.node(), "pid": os.getpid(),
    }
    if rank == 0:
        _write_manifest(run_dir, manifest)
    writer.emit(started)
    writer.flush()  # a viewer opening the run sees it at once, and a run that dies early leaves it
    return RunWriter(run_dir, writer, manifest)


@dataclass
class RunFollower:
    """Follows every rank stream of one run; ``poll()`` returns the merged new events."""

    run_dir: Path

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.followers: dict[Path, LogFollower] = {}

    def poll(self) -> pa.Table:
        for path in stream_paths(self.run_dir):
            self.followers.setdefault(path, LogFollower(path))
        if not self.followers:
            if not self.run_dir.exists():
                raise LogError(f"{self.run_dir}: no such run directory")
        return merge_streams([f.poll().table for f in self.followers.values()])

    @property
    def torn_bytes(self) -> int:
        return sum(f.torn_bytes for f in self.followers.values())

    @property
    def ended(self) -> bool:
        return bool(self.followers) and all(f.ended for f in self.followers.values())
