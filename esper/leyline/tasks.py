"""What the command line needs to know about tasks without building one (no torch): their names,
their default epochs and batch size, and the synthetic image task's configuration."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

TASK_NAMES = ("synthetic-images", "pydoc-text", "cifar10", "text:PATH", "npz:PATH")
DEFAULT_EPOCHS = MappingProxyType({"pydoc-text": 15})
"""Epochs of a run when --epochs is not given, where a task differs from TrainConfig.epochs (a
pydoc-text epoch is ~20x a synthetic-images one: 15 keep a run to a few minutes on 2 cores)."""


def default_epochs(task: str, fallback: int) -> int:
    """Epochs of a run of ``task`` when --epochs is not given (``fallback``: TrainConfig.epochs)."""
    return DEFAULT_EPOCHS.get(task, fallback)


BATCH_SIZE = 64
"""Training and validation batch size of every task (TaskOptions.batch_size)."""


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and difficulty of the synthetic image task."""

    train_size: int = 8192
    # training samples
    val_size: int = 2048
    # validation samples
    image_size: int = 16
    # height and width in pixels
    classes: int = 10
    # number of orientations
    noise: float = 3.5
    # std of the additive pixel noise
    distractor: float = 0.3
    # contrast of the distractor grating relative to the class grating
    jitter: float = 0.04
    # std of the orientation jitter, radians (classes are pi / classes apart)
    min_freq: float = 0.12
    # lowest grating frequency, cycles per pixel
    max_freq: float = 0.35
    # highest grating frequency, cycles per pixel
    seed: int = 1234
    # generator seed: the same seed gives the same data
