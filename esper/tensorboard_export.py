"""``esper export --tensorboard RUN DIR``: a run as TensorBoard event files.

Written with torch's ``SummaryWriter``, so ``tensorboard --logdir DIR`` shows the run:

- Layout: ``DIR/`` for a single-process run, ``DIR/rank<R>/`` for each rank of a distributed
  run. A metric the viewers draw once per environment (a PPO run's epoch metrics and reward
  totals) goes to ``<rank dir>/env<E>/`` under the same tag, so TensorBoard overlays the
  environments as it overlays runs.
- Tags: the metric names both viewers offer (``telemetry_schema.series.metrics``): epoch
  metrics (``val_acc``, ``train_loss``, ...), ``batch/loss``, every scalar under its own name
  (``system/cpu_percent``, ``ppo/approx_kl``, ``my/metric``), ``alpha/<slot>``,
  ``ppo_update/<field>``, ``reward_total``, ``reward_component/<name>``.
- Step: each event's global optimiser step, for every metric. Epoch metrics sit at the step
  their epoch ended, so they line up with ``batch/loss`` on one x axis (the epoch number is in
  the exported tables); the PPO learner's updates and scalars at their round, as logged. A PPO
  environment's steps start again with each episode.
- Wall time: each event's own, from the log.
- Text ``run``: the run's id, task, topology, devices, versions, how it ended, and its
  configuration as JSON.

TensorBoard keeps scalars as 32-bit floats; NaN and infinities are kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_schema.export import ExportError, make_dir, read_for_export
from telemetry_schema.fold import fold_tables
from telemetry_schema.series import metrics, sources
from telemetry_schema.state import RunState, Series, wall_seconds
from telemetry_schema.tables import KindTables

EVENT_FILE = "events.out.tfevents."
"""How TensorBoard event files are named."""
INSTALL = "pip install tensorboard"


@dataclass
class Points:
    """One tag's points in one TensorBoard run directory."""

    tag: str
    steps: np.ndarray
    values: np.ndarray
    walls: np.ndarray


@dataclass
class TensorBoardExport:
    """What ``export_tensorboard`` wrote."""

    out: Path
    scalars: dict[Path, list[Points]] = field(default_factory=dict)
    """Each run directory's tags and their points."""
    texts: dict[Path, tuple[str, float | None]] = field(default_factory=dict)
    """Each rank directory's ``run`` text, and its wall time (the run's start)."""
    warnings: list[str] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(len(p.steps) for points in self.scalars.values() for p in points)


def require_tensorboard() -> None:
    """Raise a one-line ExportError when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401  (torch's SummaryWriter needs it)
    except ImportError:
        raise ExportError(f"--tensorboard needs the tensorboard package ({INSTALL})") from None


def existing_event_files(out: Path) -> list[Path]:
    """Event files already in ``out`` or in the two levels below it (rank and env directories)."""
    found: list[Path] = []
    for pattern in (f"{EVENT_FILE}*", f"*/{EVENT_FILE}*", f"*/*/{EVENT_FILE}*"):
        found += sorted(out.glob(pattern))
    return found


def export_tensorboard(run: str | Path, out: str | Path, force: bool = False) -> TensorBoardExport:
    """Write ``run`` as TensorBoard event files under ``out``. Raises ExportError. Refuses an
    ``out`` that already holds event files (TensorBoard would show both) unless ``force``,
    which removes those in the directories written."""
    require_tensorboard()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"cannot write to {out}: not a directory")
    old = existing_event_files(out) if out.is_dir() else []
    if old and not force:
        raise ExportError(f"{out} already holds TensorBoard event files ({old[0].name}): --force replaces them")
    tables, warnings = read_for_export(run)
    result = plan(tables, out)
    result.warnings = warnings
    make_dir(out)
    for path in old:
        if path.parent in result.scalars or path.parent in result.texts:
            path.unlink(missing_ok=True)
    write(result)
    return result


def plan(tables: KindTables, out: Path) -> TensorBoardExport:
    """Every tag's points, by run directory, and each rank's text."""
    result = TensorBoardExport(out)
    ranks = log_ranks(tables)
    for rank in ranks:
        base = out if len(ranks) == 1 else out / f"rank{rank}"
        state = fold_tables(tables, rank=rank)
        index = EnvelopeIndex(tables, rank)
        result.scalars.setdefault(base, [])
        for name in metrics(state):
            found = sources(state, name)
            for label, series, column in found:
                where, tag = base, name
                if len(found) > 1:
                    env = single_env(series)
                    where, tag = (base / f"env{env}", name) if env is not None else (base, f"{name}/{label}")
                steps, walls = index.envelope(series)
                values = np.asarray(series[column], np.float64)
                result.scalars.setdefault(where, []).append(Points(tag, steps, values, walls))
        result.texts[base] = (run_text(state), state.started_wall)
    return result


def write(result: TensorBoardExport) -> None:
    """Write the planned points and texts with torch's SummaryWriter."""
    from torch.utils.tensorboard import SummaryWriter

    for where in sorted(set(result.scalars) | set(result.texts)):
        try:
            make_dir(where)
            writer = SummaryWriter(log_dir=str(where), max_queue=4096, flush_secs=3600)
        except OSError as exc:
            raise ExportError(f"cannot write to {where}: {exc.strerror or exc}") from None
        try:
            for p in result.scalars.get(where, []):
                for step, value, wall in zip(p.steps.tolist(), p.values.tolist(), p.walls.tolist()):
                    writer.add_scalar(p.tag, value, step, walltime=wall)
            if where in result.texts:
                text, wall = result.texts[where]
                writer.add_text("run", text, 0, walltime=wall)
        finally:
            writer.close()


def log_ranks(tables: KindTables) -> list[int]:
    """The ranks that wrote events, ascending."""
    ranks: set[int] = set()
    for table in tables.tables.values():
        if table.num_rows:
            ranks.update(pc.unique(table.column("rank")).to_pylist())
    return sorted(r for r in ranks if r is not None) or [0]


def single_env(series: Series) -> int | None:
    """The one environment a series holds, or None."""
    if "env" not in series.names or not len(series):
        return None
    envs = np.unique(np.asarray(series["env"]))
    return int(envs[0]) if len(envs) == 1 and np.isfinite(envs[0]) else None


class EnvelopeIndex:
    """Step and wall time of a rank's events by sequence number, for series that keep only
    the sequence number (reward components)."""

    def __init__(self, tables: KindTables, rank: int) -> None:
        self._tables, self._rank = tables, rank
        self._seq: np.ndarray | None = None

    def envelope(self, series: Series) -> tuple[np.ndarray, np.ndarray]:
        """(steps as int64, wall times as float seconds) of each point of ``series``."""
        if "step" in series.names and "wall" in series.names:
            steps = np.asarray(series["step"], np.float64)
            if np.isfinite(steps).all():
                return steps.astype(np.int64), np.asarray(series["wall"], np.float64)
        if self._seq is None:
            self._build()
        at = np.searchsorted(self._seq, np.asarray(series["seq"], np.int64))
        at = np.clip(at, 0, max(len(self._seq) - 1, 0))
        return self._step[at], self._wall[at]

    def _build(self) -> None:
        seqs, steps, walls = [], [], []
        for table in self._tables.tables.values():
            if not table.num_rows or "step" not in table.column_names:
                continue
            table = table.filter(pc.equal(table.column("rank"), pa.scalar(self._rank, table.schema.field("rank").type)))
            seqs.append(table.column("seq").to_numpy())
            steps.append(table.column("step").to_numpy())
            walls.append(wall_seconds(table.column("wall_time")))
        seq = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        order = np.argsort(seq, kind="stable")
        self._seq = seq[order]
        self._step = (np.concatenate(steps) if steps else np.zeros(0, np.int64))[order].astype(np.int64)
        self._wall = (np.concatenate(walls) if walls else np.zeros(0))[order]


def run_text(state: RunState) -> str:
    """The run's identity and configuration, as Markdown for TensorBoard's text tab."""
    facts = [("run", state.run_id), ("task", state.task), ("topology", state.topology),
             ("device", state.device), ("world size", state.world_size), ("environments", state.num_envs),
             ("planned epochs", state.planned_epochs or "not set"),
             ("ended", f"{state.end_status} {state.end_reason}".strip() if state.end_status else "no end in the log"),
             ("versions", ", ".join(f"{k} {v}" for k, v in sorted(state.versions.items()) if v))]
    lines = [f"**{name}**: {value}  " for name, value in facts]
    config = json.dumps(state.config, indent=2, sort_keys=True, default=str)
    return "\n".join(lines + ["", "**config**:", ""] + ["    " + line for line in config.splitlines()])
