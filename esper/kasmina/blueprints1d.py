"""Seed blueprints for 1-D signal hosts (``conv1d``) and flat-feature hosts (``mlp``).

Registered into ``blueprints.BLUEPRINTS`` when ``esper.kasmina`` is imported (its
``__init__`` imports this module). Like every blueprint they are residual and start as the
identity: the last layer of each branch is zero-initialised.
"""

from __future__ import annotations

from torch import Tensor, nn

from esper.kasmina.blueprints import BLUEPRINTS, BlueprintFactory, GatedNorm, LoRA, Noop, Residual, tf_mlp, zero_init


def _groups(c: int) -> int:
    return next(g for g in (8, 4, 2, 1) if c % g == 0)


def _conv_bn_relu(cin: int, cout: int, k: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv1d(cin, cout, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm1d(cout), nn.ReLU()]


class FeatureGate(nn.Module):
    """x * (1 + s(summary(x))): per-channel gating, s's last layer zero-initialised. For
    (B, C, L) the summary is the mean over L (squeeze-and-excitation); for (B, C), x itself."""

    def __init__(self, c: int) -> None:
        super().__init__()
        hidden = max(4, c // 4)
        self.fc = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(), zero_init(nn.Linear(hidden, c)))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, L) or (B, C)
        s = self.fc(x.mean(dim=2) if x.dim() == 3 else x)  # (B, C)
        return x * (1.0 + (s[:, :, None] if x.dim() == 3 else s))


def conv1d_small(c: int) -> nn.Module:
    return Residual(zero_init(nn.Conv1d(c, c, 3, padding=1)))


def conv1d_light(c: int) -> nn.Module:
    return Residual(nn.Sequential(*_conv_bn_relu(c, c, 3), zero_init(nn.Conv1d(c, c, 1))))


def conv1d_heavy(c: int) -> nn.Module:
    return Residual(nn.Sequential(*_conv_bn_relu(c, 2 * c, 5), *_conv_bn_relu(2 * c, 2 * c, 5),
                                  zero_init(nn.Conv1d(2 * c, c, 5, padding=2))))


def conv1d_depthwise(c: int) -> nn.Module:
    return Residual(nn.Sequential(*_conv_bn_relu(c, c, 5, groups=c), zero_init(nn.Conv1d(c, c, 1))))


def conv1d_bottleneck(c: int) -> nn.Module:
    h = max(4, c // 2)
    return Residual(nn.Sequential(*_conv_bn_relu(c, h, 1), *_conv_bn_relu(h, h, 3), zero_init(nn.Conv1d(h, c, 1))))


CONV1D: dict[str, BlueprintFactory] = {
    "noop": lambda c: Noop(),
    "norm": lambda c: GatedNorm(nn.GroupNorm(_groups(c), c)),
    "attention": FeatureGate,
    "depthwise": conv1d_depthwise,
    "bottleneck": conv1d_bottleneck,
    "conv_small": conv1d_small,
    "conv_light": conv1d_light,
    "conv_heavy": conv1d_heavy,
}
"""Blueprints of 1-D convolutional hosts, on (B, C, L) features."""

MLP: dict[str, BlueprintFactory] = {
    "noop": lambda c: Noop(),
    "norm": lambda c: GatedNorm(nn.LayerNorm(c)),
    "attention": FeatureGate,
    "lora": lambda c: LoRA(c, 8),
    "lora_large": lambda c: LoRA(c, 32),
    "mlp_small": lambda c: tf_mlp(c, 2),
    "mlp": lambda c: tf_mlp(c, 4),
}
"""Blueprints of MLP hosts, on (B, C) features."""

BLUEPRINTS.setdefault("conv1d", CONV1D)
BLUEPRINTS.setdefault("mlp", MLP)
