"""Plot series, computed once for both viewers: which metrics a run has, and each metric's
curves on a chosen x axis, smoothed, thinned and broken where the data does.

Every plottable quantity of a ``RunState`` has a name (``metrics``): the epoch metrics
(``val_acc``, ``train_loss``, ...), training batches (``batch/loss``), any scalar the run
logged under its own name (``ppo/approx_kl``, ``reward/rent``, ``my/metric``), per-slot series
(``alpha/<slot>``, ``grad_ratio/<slot>``, ``contribution/<slot>``), PPO updates
(``ppo_update/approx_kl``) and rewards (``reward_total``, ``reward_component/<name>``).

``curves(state, name, options)`` turns one into ``Curve`` s ready to draw:
- x is the epoch, the optimiser step, wall seconds since the run started, or the run's
  cumulative FLOPs (from ``epoch_completed``; steps between two epoch ends are interpolated);
- a line is broken (a NaN point) where its x goes backwards (a PPO episode restarting its
  epochs and steps), where a slot's seed was reset (no line across epochs without a seed), and
  one curve is drawn per environment of a PPO run;
- smoothing is TensorBoard's exponential moving average, and thinning keeps each bucket's
  minimum and maximum, so a single spike among a million points survives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from telemetry_schema.state import RunState, Series

X_AXES = ("epoch", "step", "wall", "flops")
EPOCH_METRICS = ("train_loss", "val_loss", "train_acc", "val_acc", "perplexity", "total_params", "flops_cumulative")
BATCH_METRICS = ("loss", "lr", "samples_per_s")
SLOT_METRICS = {"alpha": ("alpha", "value"), "grad_ratio": ("grads", "ratio"),
                "grad_health": ("grads", "health"), "contribution": ("counterfactuals", "contribution")}
PPO_METRICS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "explained_variance", "lr")


class SeriesError(ValueError):
    """A metric name or filter that cannot be used; the message is one line."""


@dataclass(frozen=True)
class SeriesOptions:
    x: str = "epoch"
    """The x axis: 'epoch', 'step', 'wall' (seconds since the run started) or 'flops'."""
    smoothing: float = 0.0
    """Weight of the exponential moving average, in [0, 1): 0 draws the raw values."""
    max_points: int = 2000
    """Points per curve at most (thinned keeping each bucket's minimum and maximum)."""
    log_y: bool = False
    """A log y axis: points at or below zero cannot be drawn and become gaps."""


@dataclass
class Curve:
    """One line: its legend name, and x and y (NaN in both where the line breaks)."""

    name: str
    x: np.ndarray
    y: np.ndarray

    def extremes(self) -> tuple[float, float] | None:
        finite = self.y[np.isfinite(self.y)]
        return (float(finite.min()), float(finite.max())) if len(finite) else None


def metrics(state: RunState) -> list[str]:
    """Every metric name the run has data for, in a stable order."""
    names = [m for m in EPOCH_METRICS if len(state.epochs) and np.isfinite(state.epochs[m]).any()]
    names += [f"batch/{m}" for m in BATCH_METRICS if len(state.batches)]
    names += sorted(state.scalars)
    for prefix, (attr, _) in SLOT_METRICS.items():
        names += [f"{prefix}/{slot}" for slot in sorted(s for s in getattr(state, attr) if s)]  # no null slot
    names += [f"ppo_update/{m}" for m in PPO_METRICS if len(state.ppo)]
    if len(state.rewards):
        names += ["reward_total"] + [f"reward_component/{c}" for c in sorted(state.reward_components)]
    return list(dict.fromkeys(names))


def select(names: list[str], pattern: str) -> list[str]:
    """The names matching a regular expression (searched, case-insensitive; '' keeps all)."""
    if not pattern:
        return list(names)
    try:
        rx = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise SeriesError(f"bad filter {pattern!r}: {exc}") from None
    return [n for n in names if rx.search(n)]


def curves(state: RunState, name: str, options: SeriesOptions = SeriesOptions()) -> list[Curve]:
    """The curves of metric ``name`` (empty when the run has no data for it yet)."""
    if options.x not in X_AXES:
        raise SeriesError(f"x axis {options.x!r}: expected one of {', '.join(X_AXES)}")
    raw = _raw(state, name)
    out = []
    for label, series, y_col, breaks in raw:
        if not len(series):
            continue
        x = x_values(state, series, options.x)
        y = np.asarray(series[y_col], dtype=np.float64)
        out.append(shape(label, x, y, options, _seq(series), breaks))
    return out


def sources(state: RunState, name: str) -> list[tuple[str, Series, str]]:
    """The data behind metric ``name``'s curves, unshaped (no smoothing, thinning or breaks):
    (label, series, y column) for each curve ``curves`` would draw. For exporters that want
    every point with its own envelope (seq, step, wall)."""
    return [(label, series, column) for label, series, column, _ in _raw(state, name)]


def _seq(series: Series) -> np.ndarray | None:
    return np.asarray(series["seq"]) if "seq" in series.names else None


def _raw(state: RunState, name: str) -> list[tuple[str, Series, str, np.ndarray]]:
    """(label, series, y column, seqs where the line must break) for each curve of ``name``."""
    none = np.zeros(0, np.int64)
    if name in EPOCH_METRICS:
        return _by_env(state.epochs, name, name)
    head, _, rest = name.partition("/")
    if head == "batch" and rest in BATCH_METRICS:
        return [(name, state.batches, rest, none)]
    if name in state.scalars:
        return [(name, state.scalars[name], "value", none)]
    if head in SLOT_METRICS and rest:
        attr, column = SLOT_METRICS[head]
        series = getattr(state, attr).get(rest)
        if series is None:
            return []
        return [(rest, series, column, np.asarray(state.resets.get(rest, []), np.int64))]
    if head == "ppo_update" and rest in PPO_METRICS:
        return [(name, state.ppo, rest, none)]
    if name == "reward_total":
        return _by_env(state.rewards, "total", "reward")
    if head == "reward_component" and rest in state.reward_components:
        return [(rest, state.reward_components[rest], "value", none)]
    if name in metrics(state):
        return []
    raise SeriesError(f"no metric {name!r} in this run")


def _by_env(series: Series, column: str, label: str) -> list[tuple[str, Series, str, np.ndarray]]:
    """One curve per environment when the series holds several (a PPO run), else one."""
    none = np.zeros(0, np.int64)
    if "env" not in series.names or not len(series):
        return [(label, series, column, none)]
    env = np.asarray(series["env"])
    envs = np.unique(env[np.isfinite(env)]) if env.dtype.kind == "f" else np.unique(env)
    if len(envs) <= 1:
        return [(label, series, column, none)]
    return [(f"{label} env {int(e)}", _rows(series, env == e), column, none) for e in envs]


def _rows(series: Series, mask: np.ndarray) -> Series:
    part = Series(*series.names)
    part.append(**{n: np.asarray(series[n])[mask] for n in series.names})
    return part


def x_values(state: RunState, series: Series, axis: str) -> np.ndarray:
    """A series' x on ``axis`` (NaN where it cannot be placed, e.g. FLOPs before any epoch)."""
    names = series.names
    if axis == "wall":
        start = state.started_wall if state.started_wall is not None else state.first_wall
        return np.asarray(series["wall"], np.float64) - (start or 0.0) if "wall" in names else _index(series)
    if axis == "epoch" and "epoch" in names:
        return np.asarray(series["epoch"], np.float64)
    if axis == "step" and "step" in names:
        return np.asarray(series["step"], np.float64)
    if axis == "flops":
        return _flops(state, series)
    if "seq" in names:  # no such column (e.g. a reward component): place by the event order
        return _at_seq(state, np.asarray(series["seq"]), axis)
    return _index(series)


def _index(series: Series) -> np.ndarray:
    return np.arange(len(series), dtype=np.float64)


def _at_seq(state: RunState, seq: np.ndarray, axis: str) -> np.ndarray:
    """x of events known only by sequence number: the x of the epoch series at that point."""
    ep = state.epochs
    if not len(ep) or axis not in ("epoch", "step"):
        return seq.astype(np.float64)
    return np.interp(seq, np.asarray(ep["seq"], np.float64), np.asarray(ep[axis], np.float64))


def _flops(state: RunState, series: Series) -> np.ndarray:
    """Cumulative FLOPs at each point: each epoch end's count, interpolated over the steps between."""
    if "flops_cumulative" in series.names:
        return np.asarray(series["flops_cumulative"], np.float64)
    ep = state.epochs
    if "flops_cumulative" not in ep.names or not len(ep):
        return np.full(len(series), np.nan)
    flops = np.asarray(ep["flops_cumulative"], np.float64)
    key = "step" if "step" in series.names else "seq"
    at = np.asarray(series[key], np.float64)
    knots = np.asarray(ep[key], np.float64)
    x = np.interp(at, np.r_[0.0, knots], np.r_[0.0, flops])
    x[at > knots.max()] = np.nan  # past the last epoch end: not counted yet
    return x


def shape(label: str, x: np.ndarray, y: np.ndarray, options: SeriesOptions,
          seq: np.ndarray | None = None, breaks: np.ndarray | None = None) -> Curve:
    """Smooth, thin and break one line."""
    if options.smoothing > 0:
        y = ema(y, options.smoothing)
    if options.log_y:
        y = np.where(y > 0, y, np.nan)
    cut = np.zeros(len(x), bool)
    if len(x) > 1:
        with np.errstate(invalid="ignore"):
            cut[1:] |= np.diff(x) < 0  # x went backwards: a new episode, no line back across
    if breaks is not None and len(breaks) and seq is not None and len(seq) > 1:
        # a reset between two points: the seed changed, or the slot held none meanwhile
        crossed = np.searchsorted(breaks, seq[1:], side="right") > np.searchsorted(breaks, seq[:-1], side="right")
        cut[1:] |= crossed
    keep = thin(y, options.max_points)
    x, y, cut = x[keep], y[keep], cut[keep]
    if cut.any():
        at = np.flatnonzero(cut)
        x = np.insert(x.astype(np.float64), at, np.nan)
        y = np.insert(y.astype(np.float64), at, np.nan)
    return Curve(label, np.asarray(x, np.float64), np.asarray(y, np.float64))


def thin(y: np.ndarray, limit: int) -> np.ndarray:
    """Indices of at most about ``limit`` points keeping each bucket's minimum and maximum (and
    both ends): however far a series is thinned, its spikes stay."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n <= limit:
        return np.arange(n)
    buckets = max(1, (limit - 2) // 2)
    size = -(-n // buckets)  # ceil
    padded = np.full(buckets * size, np.nan)
    padded[:n] = y
    grid = padded.reshape(buckets, size)
    base = np.arange(buckets) * size
    finite = np.isfinite(grid)
    lo = np.argmin(np.where(finite, grid, np.inf), axis=1) + base
    hi = np.argmax(np.where(finite, grid, -np.inf), axis=1) + base
    idx = np.unique(np.concatenate([[0, n - 1], lo, hi]))
    return idx[idx < n]


def ema(y: np.ndarray, smoothing: float, block: int = 128) -> np.ndarray:
    """Exponential moving average ``s[i] = w*s[i-1] + (1-w)*y[i]``, ``s[0] = y[0]`` (w = smoothing).

    Non-finite values carry the last finite one. Vectorised per block of ``block`` points (a
    closed form inside a block, a carried value between blocks): a million points in
    milliseconds, not a Python loop per point.
    """
    y = np.asarray(y, dtype=np.float64)
    if smoothing <= 0 or len(y) == 0:
        return y.copy()
    y = _ffill(y)
    w = float(min(smoothing, 0.999))
    block = max(1, min(block, int(150 / -np.log10(w))))  # keep w**-block below 1e150
    out = np.empty_like(y)
    k = np.arange(block, dtype=np.float64)
    up, down = w ** -k, w ** k
    carry = y[0]
    for start in range(0, len(y), block):
        chunk = y[start:start + block]
        m = len(chunk)
        partial = (1 - w) * down[:m] * np.cumsum(chunk * up[:m])  # the block's own points
        out[start:start + m] = partial + carry * w ** (k[:m] + 1)
        carry = out[start + m - 1]
    return out


def ema_reference(y, smoothing: float) -> np.ndarray:
    """The obvious loop, kept as the test reference of ``ema``."""
    out, prev, raw = [], None, None
    for v in np.asarray(y, dtype=np.float64):
        v = raw if not np.isfinite(v) and raw is not None else v
        raw = v
        prev = v if prev is None else smoothing * prev + (1 - smoothing) * v
        out.append(prev)
    return np.asarray(out)


def _ffill(y: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(y)
    if not bad.any():
        return y
    idx = np.where(bad, 0, np.arange(len(y)))
    np.maximum.accumulate(idx, out=idx)
    out = y[idx]
    first = np.flatnonzero(~bad)
    out[: first[0] if len(first) else len(y)] = y[first[0]] if len(first) else 0.0
    return out


@dataclass(frozen=True)
class Marker:
    """A moment to mark on a time chart: a governor panic or rollback, with its hover text."""

    x: float
    kind: str
    text: str


def markers(state: RunState, axis: str = "epoch") -> list[Marker]:
    """The governor's panics and rollbacks on ``axis``, with their reason and rollback target."""
    out = []
    if not state.governor:
        return out
    seqs = np.array([g.seq for g in state.governor], np.float64)
    xs = _at_seq(state, seqs, axis) if axis in ("epoch", "step") else seqs
    if axis == "epoch":
        xs = np.array([g.epoch for g in state.governor], np.float64)
    for g, x in zip(state.governor, xs):
        if g.kind == "panic":
            out.append(Marker(float(x), "panic", f"governor panic ({g.reason}): loss {g.loss:.4g}"
                              + (f" > {g.threshold:.4g}" if g.threshold is not None and np.isfinite(g.threshold) else "")))
        elif g.kind == "rollback":
            out.append(Marker(float(x), "rollback", f"rollback to epoch {g.to_epoch} ({g.reason})"
                              + (f", pruned {', '.join(g.seeds_pruned)}" if g.seeds_pruned else "")))
    return out
