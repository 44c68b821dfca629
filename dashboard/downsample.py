"""Series shaping done on the server: min/max downsampling and EMA smoothing (pure numpy)."""

from __future__ import annotations

import numpy as np


def minmax_indices(y: np.ndarray, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` points keeping each bucket's min and max (and both ends).

    The series is cut into equal buckets; the lowest and highest point of each survive, so
    spikes stay visible however far the series is thinned. Short series are kept whole.
    """
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
    lo = np.argmin(np.where(np.isnan(grid), np.inf, grid), axis=1) + base
    hi = np.argmax(np.where(np.isnan(grid), -np.inf, grid), axis=1) + base
    idx = np.unique(np.concatenate([[0, n - 1], lo, hi]))
    return idx[idx < n]


def downsample(x: np.ndarray, y: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) thinned to at most ``limit`` points with ``minmax_indices``."""
    idx = minmax_indices(y, limit)
    return np.asarray(x)[idx], np.asarray(y)[idx]


def ema(y: np.ndarray, smoothing: float, block: int = 128) -> np.ndarray:
    """Exponential moving average ``s[i] = w*s[i-1] + (1-w)*y[i]``, ``s[0] = y[0]`` (w = smoothing).

    NaNs are carried over from the last finite value. Vectorised per block of ``block`` points
    (a closed form inside a block, a carried value between blocks), so a million points take
    milliseconds rather than a Python loop per point.
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
        v = raw if np.isnan(v) and raw is not None else v
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
