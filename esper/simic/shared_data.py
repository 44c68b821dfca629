"""The data of K lockstep environments: one task built once, one training pass drawn per step.

Every environment of a step trains on the same batches in the same order (no data-order noise
between environments, and the data is generated or loaded once instead of K times). Augmentation,
where a task has it, belongs to the loader and is drawn once with the batches, from the loader's
own generator. What stays per environment is the host: each one gets a fresh host from
``new_host`` under its own RNG stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from esper.runtime.tasks import Task, TaskOptions, build_task

Batch = tuple[Tensor, Tensor]


@dataclass
class SharedData:
    """The task whose training loader is the single data iterator of all environments."""

    task: Task
    # built once; its validation loader is shared too (plain ordered passes that change no state)
    device: torch.device
    # where drawn batches are put, once for every environment

    @classmethod
    def build(cls, name: str, opts: TaskOptions, device: str = "cpu") -> SharedData:
        """Build task ``name``; the host it builds along the way draws from a forked CPU RNG
        seeded with ``opts.seed``, so building leaves the caller's RNG untouched."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(opts.seed)
            task = build_task(name, opts)
        if task.host_factory is None:
            raise ValueError(f"task {name!r} cannot build fresh hosts (no host_factory)")
        return cls(task, torch.device(device))

    @property
    def val_loader(self) -> Iterable:
        return self.task.val_loader

    def new_host(self) -> nn.Module:
        """A fresh host of the task, initialised from the global torch RNG (the caller's stream)."""
        return self.task.host_factory()

    @property
    def passes(self) -> int:
        """Passes drawn so far, where the loader counts them (the synthetic task's does; 0 else)."""
        return int(getattr(self.task.train_loader, "passes", 0))

    def skip_to(self, passes: int) -> None:
        """Continue the data stream at pass ``passes`` (a resumed run) where the loader counts its
        passes; a loader that does not (a fixed dataset) starts again from its beginning."""
        if passes and hasattr(self.task.train_loader, "passes"):
            self.task.train_loader.passes = passes

    def draw(self) -> tuple[Batch, ...]:
        """The next pass of the training loader, on the device: one step's batches for every
        environment. Raises ValueError when the loader yields no batch."""
        batches = tuple((x.to(self.device), y.to(self.device)) for x, y in self.task.train_loader)
        if not batches:
            raise ValueError("empty training loader: it yielded no batch")
        return batches
