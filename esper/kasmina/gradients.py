"""Gradient statistics of live seeds (CORE_SPEC §4).

Per-tensor gradient norms come from ``torch._foreach_norm`` (one fused kernel launch for a
whole list of tensors; private but stable across torch 2.x, used by ``clip_grad_norm_``
itself). Norms are collected on a stride and kept on the device; ``GradientCollector.flush``
reads every sample of an epoch back with a single host-device transfer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import Tensor, nn

from esper.leyline.config import GradientConfig


def tensor_grad_norms(params: Iterable[nn.Parameter], device: torch.device) -> Tensor:
    """(P,) L2 norm of each parameter's gradient; a parameter without a gradient counts 0."""
    params = list(params)
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch._foreach_norm(grads) if grads else []
    out, it = [], iter(norms)
    for p in params:
        out.append(next(it) if p.grad is not None else torch.zeros((), device=device))
    return torch.stack(out) if out else torch.zeros(0, device=device)


def gradient_ratio(seed_norm: float, host_norm: float, seed_params: int, host_params: int,
                   cfg: GradientConfig) -> float | None:
    """(seed_norm / host_norm) * sqrt(host_params / seed_params), clamped to cfg.ratio_clamp.

    None ("unmeasurable") when the host norm is below cfg.min_host_norm, either norm is not
    finite, or a side has no parameters — never seed / epsilon (review 001 §1.2).
    """
    if not (math.isfinite(seed_norm) and math.isfinite(host_norm)):
        return None
    if host_norm < cfg.min_host_norm or seed_params <= 0 or host_params <= 0:
        return None
    return min(cfg.ratio_clamp, (seed_norm / host_norm) * math.sqrt(host_params / seed_params))


def gradient_health(norms: list[float], cfg: GradientConfig) -> tuple[float, bool, bool]:
    """(health, vanishing, exploding) of per-tensor norms.

    health = 1 - 0.5 * share(norm < vanishing) - 0.8 * share(norm > exploding or non-finite).
    """
    if not norms:
        return 1.0, False, False
    n = len(norms)
    vanish = sum(1 for v in norms if math.isfinite(v) and v < cfg.vanishing_norm)
    explode = sum(1 for v in norms if not math.isfinite(v) or v > cfg.exploding_norm)
    health = max(0.0, min(1.0, 1.0 - 0.5 * vanish / n - 0.8 * explode / n))
    return health, vanish > 0, explode > 0


@dataclass
class BiasCorrectedEMA:
    """Exponential moving average with Adam-style bias correction."""

    decay: float = 0.9
    raw: float = 0.0
    count: int = 0

    def update(self, x: float) -> None:
        self.raw = self.decay * self.raw + (1.0 - self.decay) * x
        self.count += 1

    @property
    def value(self) -> float | None:
        """raw / (1 - decay^count); None before the first update."""
        if self.count == 0:
            return None
        return self.raw / (1.0 - self.decay ** self.count)


@dataclass
class GradientStats:
    """What the gates read about a seed's gradients. ``ratio`` is None until measured."""

    ema: BiasCorrectedEMA
    seed_norm: float = 0.0
    host_norm: float = 0.0
    health: float = 1.0
    vanishing: bool = False
    exploding: bool = False
    samples: int = 0
    window: list[tuple[float, bool]] = field(default_factory=list)
    # (health, exploding) of each sample since the seed's stage began; G2 and G4 judge its tail

    @property
    def ratio(self) -> float | None:
        return self.ema.value

    def recent(self, n: int) -> tuple[int, float | None, int]:
        """(samples, mean health, exploding samples) over the stage's last ``n`` samples (n = 0: all);
        the health is None before the first sample."""
        tail = self.window[-n:] if n > 0 else self.window
        health = sum(h for h, _ in tail) / len(tail) if tail else None
        return len(tail), health, sum(e for _, e in tail)

    def new_window(self) -> None:
        """Start the window of a new stage (the slot calls this on every stage move)."""
        self.window.clear()

    def update(self, host_norm: float, seed_norms: list[float], seed_params: int,
               host_params: int, cfg: GradientConfig) -> None:
        """Feed one real measurement (host total norm, per-tensor seed norms)."""
        seed_norm = math.sqrt(sum(v * v for v in seed_norms))
        self.seed_norm, self.host_norm, self.samples = seed_norm, host_norm, self.samples + 1
        self.health, self.vanishing, self.exploding = gradient_health(seed_norms, cfg)
        if not seed_norms:  # no trainable seed tensor: nothing was measured
            return
        self.window.append((self.health, self.exploding))
        ratio = gradient_ratio(seed_norm, host_norm, seed_params, host_params, cfg)
        if ratio is not None:
            self.ema.update(ratio)


def new_gradient_stats(cfg: GradientConfig) -> GradientStats:
    return GradientStats(ema=BiasCorrectedEMA(decay=cfg.ema_decay))


@dataclass
class GradientSample:
    """One strided measurement of one slot, read back from the device."""

    slot_id: str
    host_norm: float
    seed_norms: list[float]


@dataclass
class GradientCollector:
    """Collects per-slot norms on the device every ``stride`` batches; flushes in bulk."""

    pending: list[tuple[str, Tensor]] = field(default_factory=list)

    def collect(self, host_params: list[nn.Parameter], seeds: dict[str, list[nn.Parameter]],
                device: torch.device) -> None:
        """Queue norms of the host and of each seed (no synchronisation)."""
        if not seeds:
            return
        host_total = torch.linalg.vector_norm(tensor_grad_norms(host_params, device)).view(1)
        for slot_id, params in seeds.items():
            self.pending.append((slot_id, torch.cat([host_total, tensor_grad_norms(params, device)])))

    def flush(self) -> list[GradientSample]:
        """All queued samples as floats, with one device-to-host transfer."""
        if not self.pending:
            return []
        flat = torch.cat([t for _, t in self.pending]).tolist()
        out, i = [], 0
        for slot_id, t in self.pending:
            n = t.numel()
            out.append(GradientSample(slot_id, flat[i], flat[i + 1:i + n]))
            i += n
        self.pending.clear()
        return out
