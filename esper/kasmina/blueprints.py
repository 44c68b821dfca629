"""Seed blueprints for CNN and transformer hosts, and the registry that builds them.

Every blueprint is residual and shape-preserving: ``out = x + f(x)`` with the last layer of
``f`` zero-initialised, so germinating a seed never changes the model's output.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def zero_init(layer: nn.Module) -> nn.Module:
    """Zero the weight (and bias) of ``layer``: its residual branch starts as 0."""
    nn.init.zeros_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return layer


class Residual(nn.Module):
    """x + body(x)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Noop(nn.Module):
    """Identity seed with no parameters (its gradient ratio is unmeasurable: G2 fails closed)."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class GatedNorm(nn.Module):
    """x + tanh(g) * (norm(x) - x), g starts at 0."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        return x + torch.tanh(self.gate) * (self.norm(x) - x)


class SqueezeExcite(nn.Module):
    """x * (1 + s(pool(x))): channel attention, s's last layer zero-initialised."""

    def __init__(self, c: int) -> None:
        super().__init__()
        hidden = max(4, c // 4)
        self.fc = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(), zero_init(nn.Linear(hidden, c)))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        s = self.fc(x.mean(dim=(2, 3)))  # (B, C)
        return x * (1.0 + s[:, :, None, None])


def _conv_bn_relu(cin: int, cout: int, k: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU()]


def cnn_conv_small(c: int) -> nn.Module:
    return Residual(zero_init(nn.Conv2d(c, c, 3, padding=1)))


def cnn_conv_light(c: int) -> nn.Module:
    return Residual(nn.Sequential(*_conv_bn_relu(c, c, 3), zero_init(nn.Conv2d(c, c, 1))))


def cnn_conv_heavy(c: int) -> nn.Module:
    return Residual(nn.Sequential(*_conv_bn_relu(c, 2 * c, 3), *_conv_bn_relu(2 * c, 2 * c, 3),
                                  zero_init(nn.Conv2d(2 * c, c, 3, padding=1))))


def cnn_depthwise(c: int) -> nn.Module:
    return Residual(nn.Sequential(*_conv_bn_relu(c, c, 3, groups=c), zero_init(nn.Conv2d(c, c, 1))))


def cnn_bottleneck(c: int) -> nn.Module:
    h = max(4, c // 2)
    return Residual(nn.Sequential(*_conv_bn_relu(c, h, 1), *_conv_bn_relu(h, h, 3),
                                  zero_init(nn.Conv2d(h, c, 1))))


class LoRA(nn.Module):
    """x + B(A(x)) with rank r; B starts at zero."""

    def __init__(self, c: int, rank: int) -> None:
        super().__init__()
        self.a = nn.Linear(c, rank, bias=False)
        self.b = zero_init(nn.Linear(rank, c, bias=False))

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C)
        return x + self.b(self.a(x))


class CausalSelfAttention(nn.Module):
    """Extra causal attention (is_causal=True: review 001 §1.4), output projection zeroed."""

    def __init__(self, c: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln = nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = zero_init(nn.Linear(c, c))

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C)
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln(x)).split(c, dim=2)  # each (B, T, C)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, C/H)
        return x + self.proj(y.transpose(1, 2).reshape(b, t, c))


def tf_mlp(c: int, mult: int) -> nn.Module:
    return Residual(nn.Sequential(nn.LayerNorm(c), nn.Linear(c, mult * c), nn.GELU(),
                                  zero_init(nn.Linear(mult * c, c))))


def _heads(c: int) -> int:
    return next(h for h in (4, 2, 1) if c % h == 0)


BlueprintFactory = Callable[[int], nn.Module]

from esper.kasmina.blueprints1d import CONV1D, MLP  # noqa: E402  (they build on the modules above)

BLUEPRINTS: Mapping[str, Mapping[str, BlueprintFactory]] = MappingProxyType({
    "cnn": MappingProxyType({
        "noop": lambda c: Noop(),
        "norm": lambda c: GatedNorm(nn.GroupNorm(next(g for g in (8, 4, 2, 1) if c % g == 0), c)),
        "attention": SqueezeExcite,
        "depthwise": cnn_depthwise,
        "bottleneck": cnn_bottleneck,
        "conv_small": cnn_conv_small,
        "conv_light": cnn_conv_light,
        "conv_heavy": cnn_conv_heavy,
    }),
    "transformer": MappingProxyType({
        "noop": lambda c: Noop(),
        "norm": lambda c: GatedNorm(nn.LayerNorm(c)),
        "lora": lambda c: LoRA(c, 8),
        "lora_large": lambda c: LoRA(c, 32),
        "attention": lambda c: CausalSelfAttention(c, _heads(c)),
        "mlp_small": lambda c: tf_mlp(c, 2),
        "mlp": lambda c: tf_mlp(c, 4),
    }),
    "conv1d": CONV1D,
    "mlp": MLP,
})
"""topology -> blueprint name -> constructor(channels) (read-only: no module-level mutable state)."""


def blueprint_names(topology: str) -> list[str]:
    return list(BLUEPRINTS[topology])


def build_blueprint(topology: str, name: str, channels: int) -> nn.Module:
    """Build a seed; raises KeyError for an unknown topology or blueprint."""
    try:
        factory = BLUEPRINTS[topology][name]
    except KeyError:
        raise KeyError(f"unknown blueprint {name!r} for topology {topology!r}") from None
    return factory(channels)


def blueprint_params(topology: str, name: str, channels: int) -> int:
    """Trainable parameters of a blueprint at ``channels`` channels."""
    return sum(p.numel() for p in build_blueprint(topology, name, channels).parameters())
