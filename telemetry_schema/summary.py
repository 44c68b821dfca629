"""A run's summary file: what a run list shows, kept current by the writer.

``runs/<run_id>/summary.json`` holds the counts a run list needs (epochs, best validation
accuracy, seeds fossilized and pruned, panics, events), the run's last event time and how it
ended. Rank 0's writer updates it from the batches it flushes, at most every
``every_s`` seconds and at close (written to a temporary file and renamed over the old one),
so a list of a thousand runs reads a thousand small files instead of a thousand logs. A viewer
judges a live run by the summary's ``last_wall`` and ``heartbeat_s`` with the same rule as a
folded log (``status.status_of``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

SUMMARY = "summary.json"
_COUNTED = {"seed_fossilized": "fossilized", "seed_pruned": "pruned", "governor_panic": "panics"}


@dataclass
class Tally:
    """The running counts of one rank's log (rank 0's is the run's summary)."""

    run_id: str = ""
    task: str = ""
    started: float | None = None
    heartbeat_s: float = 5.0
    planned_epochs: int = 0
    epochs: int = 0
    last_epoch: int = 0
    best_val_acc: float | None = None
    fossilized: int = 0
    pruned: int = 0
    panics: int = 0
    events: int = 0
    last_wall: float | None = None
    last_progress_wall: float | None = None
    end_status: str | None = None
    end_reason: str = ""
    kinds: dict[str, int] = field(default_factory=dict)

    def add(self, batches: dict[str, pa.RecordBatch]) -> None:
        """Take in one flush's batches."""
        for kind, batch in batches.items():
            n = batch.num_rows
            if not n:
                continue
            self.events += n
            self.kinds[kind] = self.kinds.get(kind, 0) + n
            wall = pc.max(batch.column("wall_time")).value / 1e6
            self.last_wall = max(self.last_wall or 0.0, wall)
            if kind not in ("heartbeat", "log", "system"):
                self.last_progress_wall = max(self.last_progress_wall or 0.0, wall)
            if kind in _COUNTED:
                setattr(self, _COUNTED[kind], getattr(self, _COUNTED[kind]) + n)
            elif kind == "epoch_completed":
                self._epochs(batch)
            elif kind == "run_started":
                self._started(batch)
            elif kind == "run_finished":
                row = batch.slice(n - 1).drop_columns(["wall_time"]).to_pylist()[0]
                self.end_status, self.end_reason = row["status"] or "failed", row["reason"] or ""

    def _epochs(self, batch: pa.RecordBatch) -> None:
        self.epochs += batch.num_rows
        self.last_epoch = max(self.last_epoch, pc.max(batch.column("epoch")).as_py() or 0)
        best = pc.max(batch.column("val_acc")).as_py()
        if best is not None and math.isfinite(best):
            self.best_val_acc = best if self.best_val_acc is None else max(self.best_val_acc, best)

    def _started(self, batch: pa.RecordBatch) -> None:
        row = batch.slice(0, 1).drop_columns(["wall_time"]).to_pylist()[0]
        self.run_id, self.task = row["run_id"] or "", row["task"] or ""
        self.started = pc.min(batch.column("wall_time")).value / 1e6
        self.heartbeat_s = row["heartbeat_s"] or self.heartbeat_s
        self.planned_epochs = row["planned_epochs"] or 0

    def write(self, run_dir: Path) -> None:
        """Replace ``run_dir/summary.json`` with these counts (atomically)."""
        tmp = Path(run_dir) / (SUMMARY + ".tmp")
        tmp.write_text(json.dumps(asdict(self), sort_keys=True))
        os.replace(tmp, Path(run_dir) / SUMMARY)


def read_summary(run_dir: Path) -> Tally | None:
    """The summary a run's writer keeps (None when there is none, or it is not a summary)."""
    try:
        data = json.loads((Path(run_dir) / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    tally = Tally()
    for key, value in data.items():
        default = getattr(Tally, key, None) if key != "kinds" else {}
        if hasattr(tally, key) and _same_kind(value, default):
            setattr(tally, key, value)
    return tally


def _same_kind(value, default) -> bool:
    """Whether a value read from a summary file has the type its field expects."""
    if default is None:  # a number or text that may be absent
        if isinstance(value, float):
            return math.isfinite(value)
        return value is None or (isinstance(value, (int, str)) and not isinstance(value, bool))
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, type(default))
