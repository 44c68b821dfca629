"""Pure tensor functions of the slot: the straight-through estimator and the blend operators.

All are free of Python control flow on tensor values, so they compile with
``torch.compile(fullgraph=True)``. Every operator is the identity at alpha = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor


def ste_forward(host: Tensor, seed: Tensor) -> Tensor:
    """Straight-through estimator: forward equals ``host``, backward also reaches ``seed``.

    host, seed: (B, C, H, W) or (B, T, C), same shape. The seed term cancels in value
    (seed - seed) but not in the graph, so the seed is trained as if its output were used
    while the host's gradient is exactly the one it would get without the seed.
    """
    return host + (seed - seed.detach())


def leaves_outside(t: Tensor, allowed: set[int]) -> int:
    """How many leaf tensors outside ``allowed`` (ids) the autograd graph of ``t`` reaches: the
    parameters and inputs whose gradient ``t`` would feed. Reads the graph only (no sync); not for
    compiled code."""
    seen, stack, outside = set(), [t.grad_fn], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)  # AccumulateGrad: a leaf that requires grad
        if leaf is not None:
            outside += id(leaf) not in allowed
            continue
        stack.extend(n for n, _ in node.next_functions)
    return outside


def blend_add(host: Tensor, seed: Tensor, alpha: Tensor | float) -> Tensor:
    """ADD: ``h + alpha * (s - h)``; host path gets (1 - alpha), seed path alpha."""
    return torch.lerp(host, seed, alpha) if isinstance(alpha, Tensor) else host + alpha * (seed - host)


def blend_multiply(host: Tensor, seed: Tensor, alpha: Tensor | float, inp: Tensor) -> Tensor:
    """MULTIPLY: ``h * (1 + alpha * tanh(s - x))`` where x is the slot input."""
    return host * (1.0 + alpha * torch.tanh(seed - inp))


def blend_gate(host: Tensor, seed: Tensor, alpha: Tensor | float, gate: Tensor) -> Tensor:
    """GATE: ``h + clamp(alpha * g) * (s - h)`` with g: (B, 1, ...) a per-sample gate in [0, 1]."""
    return host + torch.clamp(alpha * gate, 0.0, 1.0) * (seed - host)


def blend_with_isolation(host: Tensor, seed: Tensor, alpha: Tensor | float) -> Tensor:
    """ADD-blend of host and seed features; ``seed`` was computed from a detached host input
    when the slot isolates, so the only host gradient is (1 - alpha) on the direct path.

    host, seed: same shape, e.g. (B, C, H, W). d out/d host = 1 - alpha; d out/d seed = alpha.
    """
    return host + alpha * (seed - host)
