"""Learning-rate schedule of the PPO optimiser: linear warmup, then cosine decay to a floor."""

from __future__ import annotations

import math


def lr_factor(update: int, total_updates: int, warmup: int, floor: float) -> float:
    """Multiplier of the base LR at ``update`` (0-based).

    Warmup: (update + 1) / warmup for the first ``warmup`` updates. Then cosine from 1 down to
    ``floor`` at the last update (``total_updates - 1``); stays at ``floor`` after it.
    """
    if update < warmup:
        return (update + 1) / warmup
    span = total_updates - 1 - warmup
    if span <= 0:
        return 1.0
    t = min(1.0, (update - warmup) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
