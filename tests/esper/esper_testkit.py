"""Tiny models and data for the esper core tests."""

import torch

from esper.kasmina import CNNConfig, CNNHost, MorphogeneticModel
from esper.runtime.data import TensorLoader

TINY_CNN = CNNConfig(base=4, blocks=2, pool_blocks=1, num_classes=3)


def tiny_data(n=96, classes=3, size=8, seed=0, batch=32):
    """A learnable toy task: the class is which channel is brightest."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = 0.5 * torch.randn(n, 3, size, size, generator=g)
    x[torch.arange(n), y] += 1.0
    return TensorLoader(x, y, batch, shuffle=True, seed=seed)


def tiny_model(slots=None):
    return MorphogeneticModel(CNNHost(TINY_CNN), slots)
