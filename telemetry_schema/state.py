"""The run state a fold produces: what a viewer shows about one run.

``RunState`` holds the run's metadata, each slot's current state, lifecycle spans and marks,
gate / governor / decision histories, metric series (``Series``) and the cross-rank check.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_schema.arrays import to_numpy


def wall_seconds(col) -> np.ndarray:
    """A timestamp column as float seconds since the epoch."""
    return to_numpy(pc.cast(col, pa.int64())) / 1e6


STAGES = ("DORMANT", "GERMINATED", "TRAINING", "BLENDING", "HOLDING", "FOSSILIZED",
          "PRUNED", "EMBARGOED", "RESETTING")
LIVE_STAGES = ("GERMINATED", "TRAINING", "BLENDING", "HOLDING")
ENDED = ("completed", "failed", "interrupted")
"""How a run can end (the status of its run_finished event)."""


class _Lazy:
    """Rows of a Series made only when read: ``make(lo, hi)`` gives rows lo..hi of every column."""

    def __init__(self, length: int, make: Callable[[int, int], dict[str, np.ndarray]]) -> None:
        self.length = length
        self._make = make
        self._whole: dict[str, np.ndarray] | None = None

    def whole(self, name: str) -> np.ndarray:
        # Two threads may both make it (the same values either way). ``_whole`` is set before
        # ``_make`` is dropped, so a reader that finds no ``_make`` finds ``_whole``.
        make = self._make
        if make is not None:
            self._whole = make(0, self.length)
            self._make = None  # what it held (a table, its rows) can go
        return self._whole[name]

    def last(self, name: str):
        make = self._make
        if make is None:
            return self._whole[name][-1]
        return make(self.length - 1, self.length)[name][-1]


class Series:
    """A growing table of numpy columns (appended in chunks, concatenated on demand).

    A chunk may be lazy (``append_lazy``): made when a column is read, and for ``last`` only
    its last row is made."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self._chunks: dict[str, list[np.ndarray | _Lazy]] = {n: [] for n in names}
        self._cache: dict[str, np.ndarray] = {}
        self.length = 0

    def append(self, **columns: np.ndarray) -> None:
        n = len(next(iter(columns.values())))
        if n == 0:
            return
        for name in self.names:
            col = columns.get(name)
            chunk = np.full(n, np.nan) if col is None else np.asarray(col).view()
            chunk.setflags(write=False)  # chunks are shared by replay checkpoints (see __deepcopy__)
            self._chunks[name].append(chunk)
        self.length += n
        self._cache.clear()

    def append_lazy(self, length: int, make: Callable[[int, int], dict[str, np.ndarray]]) -> None:
        """Append ``length`` rows that ``make(lo, hi)`` gives (rows lo..hi of every column
        named, as numpy) when they are first read."""
        if length == 0:
            return
        chunk = _Lazy(length, make)
        for name in self.names:
            self._chunks[name].append(chunk)
        self.length += length
        self._cache.clear()

    def __deepcopy__(self, memo) -> "Series":
        """A copy sharing the (read-only) arrays: a replay checkpoint costs no array copies."""
        new = Series.__new__(Series)
        new.names = self.names
        new._chunks = {n: list(c) for n, c in self._chunks.items()}
        new._cache = dict(self._cache)
        new.length = self.length
        return new

    def __getitem__(self, name: str) -> np.ndarray:
        arr = self._cache.get(name)
        if arr is None:
            chunks = [c.whole(name) if isinstance(c, _Lazy) else c for c in self._chunks[name]]
            if len(chunks) > 1:
                whole = np.concatenate(chunks)
            else:
                whole = np.asarray(chunks[0]).view() if chunks else np.empty(0)
            whole.setflags(write=False)
            self._chunks[name][:] = [whole] if chunks else []
            arr = self._cache[name] = whole
        return arr

    def __len__(self) -> int:
        return self.length

    def last(self, name: str):
        if not self.length:
            return None
        chunk = self._chunks[name][-1]
        return chunk.last(name) if isinstance(chunk, _Lazy) else chunk[-1]


@dataclass
class GateRecord:
    seq: int
    epoch: int
    slot: str | None
    seed: str | None
    gate: str
    target_stage: str
    passed: bool
    checks_passed: list[str]
    checks_failed: list[str]


@dataclass
class GovernorRecord:
    seq: int
    epoch: int
    kind: str  # 'panic' | 'snapshot' | 'rollback'
    reason: str
    loss: float | None = None
    threshold: float | None = None
    mean: float | None = None
    std: float | None = None
    consecutive: int | None = None
    to_epoch: int | None = None
    seeds_pruned: list[str] = field(default_factory=list)


@dataclass
class Decision:
    seq: int
    epoch: int
    env: int
    controller: str
    op: str
    slot: str | None
    blueprint: str | None
    reason: str
    action_probs: dict[str, float]
    value: float | None


@dataclass
class StageSpan:
    """A slot's seed in one stage from ``start_epoch`` to ``end_epoch`` (None: still open)."""

    slot: str
    seed: str | None
    stage: str
    start_epoch: int
    start_seq: int
    end_epoch: int | None = None


@dataclass
class Mark:
    """A point on the lifecycle timeline: 'fossilized', 'pruned' or 'rollback'."""

    slot: str | None
    seed: str | None
    epoch: int
    seq: int
    kind: str
    reason: str


@dataclass
class SlotState:
    slot_id: str
    seed_id: str | None = None
    blueprint: str | None = None
    stage: str = "DORMANT"
    stage_since_epoch: int = 0
    alpha: float = 0.0
    alpha_target: float = 0.0
    alpha_mode: str = "hold"
    ratio: float | None = None
    health: float | None = None
    exploding: bool = False
    vanishing: bool = False
    last_gate: GateRecord | None = None
    contribution: float | None = None
    params: int | None = None
    blend: str | None = None
    tempo: str | None = None
    reset_seq: int = -1  # seq of the last germination/reset; older dense values do not apply


@dataclass
class RunState:
    """Everything a viewer shows about one run, as of the last event folded."""

    run_id: str = ""
    task: str = ""
    topology: str = ""
    config: dict = field(default_factory=dict)
    slot_ids: list[str] = field(default_factory=list)
    host_params: int = 0
    device: str = ""
    world_size: int = 1
    num_envs: int = 1
    heartbeat_s: float = 5.0
    planned_epochs: int = 0
    versions: dict = field(default_factory=dict)
    started_wall: float | None = None
    end_status: str | None = None  # 'completed' | 'failed' | 'interrupted' once finished
    end_reason: str = ""
    events: int = 0
    last_seq: int = -1
    epoch: int = 0
    step: int = 0
    first_wall: float | None = None
    last_wall: float | None = None
    last_progress_wall: float | None = None
    kind_counts: Counter = field(default_factory=Counter)
    slots: dict[str, SlotState] = field(default_factory=dict)
    spans: list[StageSpan] = field(default_factory=list)
    resets: dict[str, list[int]] = field(default_factory=dict)
    """Per slot, the seq of each germination and return to DORMANT: a plot breaks its lines there."""
    marks: list[Mark] = field(default_factory=list)
    gates: list[GateRecord] = field(default_factory=list)
    governor: list[GovernorRecord] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    logs: list[tuple[int, str, str]] = field(default_factory=list)
    per_class_acc: list[float] = field(default_factory=list)
    epochs: Series = field(default_factory=lambda: Series(
        "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "perplexity",
        "host_params", "total_params", "seconds", "step", "wall", "seq", "env"))
    batches: Series = field(default_factory=lambda: Series(
        "step", "epoch", "loss", "lr", "samples_per_s", "wall", "seq"))
    scalars: dict[str, Series] = field(default_factory=dict)
    alpha: dict[str, Series] = field(default_factory=dict)
    grads: dict[str, Series] = field(default_factory=dict)
    counterfactuals: dict[str, Series] = field(default_factory=dict)
    rewards: Series = field(default_factory=lambda: Series("env", "epoch", "step", "total", "wall", "seq"))
    reward_components: dict[str, Series] = field(default_factory=dict)
    ppo: Series = field(default_factory=lambda: Series(
        "step", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction",
        "explained_variance", "lr", "early_stopped", "wall", "seq"))
    head_entropy: dict[str, Series] = field(default_factory=dict)
    ranks: RankCheck = field(default_factory=lambda: RankCheck())
    envs: set[int] = field(default_factory=set)

    # -- derived ---------------------------------------------------------------------------

    def status(self, now: float, stall_after: float | None = None, crash_after: float | None = None) -> str:
        """The run's status as seen at wall time ``now``: how it ended ('completed', 'failed',
        'interrupted', from its run_finished event), else 'waiting' (no event yet),
        'running', 'stalled' or 'crashed'.

        Crashed: no run_finished and no event at all (heartbeats included) for
        ``crash_after`` seconds. Stalled: heartbeats arrive (or the silence is short) but no
        progress event for ``stall_after`` seconds.
        """
        return status_of(self.end_status, self.last_wall, self.last_progress_wall, self.heartbeat_s, now,
                         stall_after, crash_after)

    def best_val_acc(self) -> float | None:
        acc = self.epochs["val_acc"]
        acc = acc[np.isfinite(acc)] if len(acc) else acc
        return float(acc.max()) if len(acc) else None

    def count(self, kind: str) -> int:
        return self.kind_counts.get(kind, 0)

    def seeds_fossilized(self) -> int:
        return self.count("seed_fossilized")

    def seeds_pruned(self) -> int:
        return self.count("seed_pruned")

    def panics(self) -> int:
        return self.count("governor_panic")



def status_of(end_status: str | None, last_wall: float | None, last_progress_wall: float | None,
              heartbeat_s: float, now: float, stall_after: float | None = None,
              crash_after: float | None = None) -> str:
    """The status rule (see ``RunState.status``), from the few facts it needs, so a run list can
    judge a run from its summary file without reading its log."""
    if end_status is not None:
        return end_status if end_status in ENDED else "failed"
    if last_wall is None:
        return "waiting"
    hb = max(heartbeat_s or 0.0, 0.5)
    crash_after = crash_after if crash_after is not None else max(30.0, 6 * hb)
    stall_after = stall_after if stall_after is not None else max(60.0, 12 * hb)
    if now - last_wall > crash_after:
        return "crashed"
    if now - last_wall > 3 * hb or now - (last_progress_wall or last_wall) > stall_after:
        return "stalled"
    return "running"


class RankCheck:
    """Compares the lifecycle moves of every rank of a distributed run.

    Every rank must make the same decision at the same time, so each rank's sequence of
    (epoch, slot, to_stage) moves must equal rank 0's over their common length. The first
    difference is reported in ``divergence``; ``last_wall`` tells a silent (dead) rank.
    """

    def __init__(self) -> None:
        self.moves: dict[int, list[tuple[int, str, str]]] = {}
        self.last_wall: dict[int, float] = {}
        self.divergence: str | None = None

    def update(self, tables: dict[str, pa.Table]) -> None:
        """Take in new events, by kind (every rank's)."""
        for table in tables.values():
            ranks = to_numpy(table.column("rank"))
            wall = wall_seconds(table.column("wall_time"))
            lo, hi = int(ranks.min()), int(ranks.max())
            for rank in [lo] if lo == hi else np.unique(ranks).tolist():  # one rank: no mask
                latest = float(wall.max() if lo == hi else wall[ranks == rank].max())
                self.last_wall[rank] = max(self.last_wall.get(rank, 0.0), latest)
                self.moves.setdefault(rank, [])
        stages = tables.get("stage_changed")
        if stages is None:
            return
        for r in stages.select(["rank", "epoch", "slot", "to_stage"]).to_pylist():
            self.moves[r["rank"]].append((r["epoch"], r["slot"], r["to_stage"]))
        self._compare()

    def _compare(self) -> None:
        if self.divergence is not None or len(self.moves) < 2:
            return
        base = self.moves.get(0, [])
        for rank, moves in sorted(self.moves.items()):
            for i, (a, b) in enumerate(zip(base, moves)):
                if a != b:
                    self.divergence = (f"rank {rank} diverged from rank 0 at lifecycle move {i}: "
                                       f"{b[1]} -> {b[2]} at epoch {b[0]} vs {a[1]} -> {a[2]} at epoch {a[0]}")
                    return

    def silent(self, now: float, after: float) -> list[int]:
        """Ranks with no event for ``after`` seconds."""
        return [r for r, t in sorted(self.last_wall.items()) if now - t > after]

    @property
    def count(self) -> int:
        return len(self.last_wall)
