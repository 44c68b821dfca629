"""In-memory batch loaders: deterministic order from a seed, optional batch augmentation."""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor

Augment = Callable[[Tensor, torch.Generator], Tensor]


class TensorLoader:
    """Yields (x, y) batches of in-memory tensors; reshuffles each pass from ``seed``."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, shuffle: bool = False, seed: int = 0,
                 augment: Augment | None = None) -> None:
        if len(x) != len(y):
            raise ValueError("x and y differ in length")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.augment = shuffle, augment
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.x) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            x = self.x[idx]
            if self.augment is not None:
                x = self.augment(x, self.generator)
            yield x, self.y[idx]


def random_crop_flip(x: Tensor, g: torch.Generator, pad: int = 4) -> Tensor:
    """Random crop (zero pad ``pad``) and horizontal flip of a (B, C, H, W) batch."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=g).tolist()
    x = padded[:, :, dy:dy + h, dx:dx + w]
    flip = torch.rand(b, generator=g) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def lm_windows(tokens: Tensor, block: int, stride: int | None = None) -> tuple[Tensor, Tensor]:
    """(inputs, targets) windows of a 1-D token tensor: targets are inputs shifted by one."""
    stride = stride or block
    starts = torch.arange(0, len(tokens) - block - 1, stride)
    if len(starts) == 0:
        raise ValueError(f"text too short: {len(tokens)} tokens for block {block}")
    idx = starts[:, None] + torch.arange(block + 1)[None, :]  # (N, block + 1)
    windows = tokens[idx]
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()
