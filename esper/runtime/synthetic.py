"""A deterministic synthetic image task on which the small CNN host underfits.

Each class is a grating orientation: ten classes 18 degrees apart, at a random spatial
frequency. Every sample has a random phase, contrast and colour jitter, a weaker
distractor grating of a random other class, and pixel noise. Telling the classes apart needs
phase-invariant orientation-and-frequency features, which a ~6k-parameter CNN learns only in part.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from esper.leyline.tasks import SyntheticConfig


def _gratings(labels: Tensor, cfg: SyntheticConfig, g: torch.Generator) -> Tensor:
    """(N, H, W) gratings whose orientation is label * pi / classes (plus jitter)."""
    n, s = len(labels), cfg.image_size
    theta = labels.float() * math.pi / cfg.classes + cfg.jitter * torch.randn(n, generator=g)
    freq = cfg.min_freq + (cfg.max_freq - cfg.min_freq) * torch.rand(n, generator=g)
    phase = 2 * math.pi * torch.rand(n, generator=g)
    ys, xs = torch.meshgrid(torch.arange(s).float(), torch.arange(s).float(), indexing="ij")
    proj = torch.cos(theta)[:, None, None] * xs + torch.sin(theta)[:, None, None] * ys  # (N, H, W)
    return torch.sin(2 * math.pi * freq[:, None, None] * proj + phase[:, None, None])


def make_images(n: int, cfg: SyntheticConfig, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """(x: (N, 3, H, W) float, y: (N,) long)."""
    y = torch.randint(0, cfg.classes, (n,), generator=g)
    main = _gratings(y, cfg, g)
    other = (y + torch.randint(1, cfg.classes, (n,), generator=g)) % cfg.classes
    distract = _gratings(other, cfg, g)
    colour_main = 0.5 + torch.rand(n, 3, generator=g)  # (N, 3)
    colour_other = 0.5 + torch.rand(n, 3, generator=g)
    contrast = 0.6 + 0.8 * torch.rand(n, generator=g)
    x = (contrast[:, None, None, None] * colour_main[:, :, None, None] * main[:, None]
         + cfg.distractor * colour_other[:, :, None, None] * distract[:, None])
    x = x + cfg.noise * torch.randn(x.shape, generator=g)
    return x, y


def synthetic_split(cfg: SyntheticConfig) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Train and validation sets, both generated from ``cfg.seed``."""
    g = torch.Generator().manual_seed(cfg.seed)
    return make_images(cfg.train_size, cfg, g), make_images(cfg.val_size, cfg, g)


class FreshSyntheticLoader:
    """Training batches of new synthetic images every pass (so the host cannot memorise).

    Pass k draws from a generator seeded by (seed, k): runs with the same seed see the same data.
    """

    def __init__(self, cfg: SyntheticConfig, batch_size: int, seed: int = 0) -> None:
        self.cfg, self.batch_size, self.seed, self.passes = cfg, batch_size, seed, 0

    def __len__(self) -> int:
        return (self.cfg.train_size + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.seed * 7919 + self.passes)
        self.passes += 1
        x, y = make_images(self.cfg.train_size, self.cfg, g)
        for i in range(0, len(x), self.batch_size):
            yield x[i:i + self.batch_size], y[i:i + self.batch_size]


def synthetic_val(cfg: SyntheticConfig) -> tuple[Tensor, Tensor]:
    """The fixed validation set (its own generator stream)."""
    return make_images(cfg.val_size, cfg, torch.Generator().manual_seed(cfg.seed))
