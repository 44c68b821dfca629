"""torch.distributed plumbing: process group set-up under torchrun, agreement, timeouts.

Every lifecycle decision must be the same on every rank at the same step, so decisions are
made on rank 0 and broadcast (``agree``) before the other ranks apply them: once per epoch, one
``agree`` carries the governor's verdict, the controller's decisions and every gate result
(which decisions, how, and how seeds germinated mid-run join DDP: ``esper.tolaria.agreement``).
Payloads travel as JSON bytes in a uint8 tensor (never pickle). Collectives carry the process group's timeout: a
rank that dies makes the others' next collective fail within ``timeout_s`` with a
``RankFailure`` instead of hanging.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


class RankFailure(RuntimeError):
    """A collective failed or timed out: another rank is dead or unreachable."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a distributed run (world_size 1: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timeout_s: float = 60.0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_from_env(device: str = "cpu", timeout_s: float = 60.0) -> DistContext:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on CUDA)."""
    if not launched_by_torchrun():
        return DistContext(timeout_s=timeout_s)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    ctx = DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                      local_rank=int(os.environ.get("LOCAL_RANK", 0)), timeout_s=timeout_s)
    if device.startswith("cuda"):
        torch.cuda.set_device(ctx.local_rank)
    return ctx


def shutdown() -> None:
    """Leave the process group (also after a RankFailure: a group left with a dead peer makes
    gloo's teardown abort the interpreter at exit)."""
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except RuntimeError:  # a peer already gone: nothing more to release
            log.warning("leaving the process group failed", exc_info=True)


def _collective(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (RuntimeError, dist.DistBackendError) as exc:  # gloo raises RuntimeError on a dead peer
        raise RankFailure(f"collective {fn.__name__} failed: {str(exc).splitlines()[0]}") from exc


def agree(ctx: DistContext, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (JSON-serialisable values only)."""
    if not ctx.enabled:
        return value
    if ctx.is_main:
        payload = json.dumps(value).encode()
        size = torch.tensor([len(payload)], dtype=torch.int64)
    else:
        size = torch.zeros(1, dtype=torch.int64)
    _collective(dist.broadcast, size, src=0)
    buf = (torch.frombuffer(bytearray(payload), dtype=torch.uint8) if ctx.is_main
           else torch.empty(int(size.item()), dtype=torch.uint8))
    _collective(dist.broadcast, buf, src=0)
    return value if ctx.is_main else json.loads(bytes(buf.tolist()).decode())


def all_equal(ctx: DistContext, tensor: torch.Tensor) -> bool:
    """True when ``tensor`` is identical on every rank (a parameter checksum, say)."""
    if not ctx.enabled:
        return True
    lo, hi = tensor.detach().clone(), tensor.detach().clone()
    _collective(dist.all_reduce, lo, op=dist.ReduceOp.MIN)
    _collective(dist.all_reduce, hi, op=dist.ReduceOp.MAX)
    return bool(torch.equal(lo, hi))


def mean_scalar(ctx: DistContext, value: float) -> float:
    """The mean of a float over ranks (so every rank sees the same validation metric)."""
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    _collective(dist.all_reduce, t, op=dist.ReduceOp.SUM)
    return float(t.item()) / ctx.world_size


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        _collective(dist.barrier)


class ShardedLoader:
    """Rank ``r`` of ``world_size`` takes batches r, r + world_size, ... of ``loader``.

    Every rank iterates the same underlying order (the loaders reshuffle from a seed, identical on
    every rank), so the shards are disjoint. The tail is cut so every rank sees the same number of
    batches: DDP's all-reduce in backward needs every rank to take the same number of steps.
    """

    def __init__(self, loader, rank: int, world_size: int) -> None:
        self.loader, self.rank, self.world_size = loader, rank, world_size
        if len(loader) < world_size:
            raise ValueError(f"{len(loader)} training batches cannot be shared by {world_size} ranks")

    def __len__(self) -> int:
        return len(self.loader) // self.world_size

    def __iter__(self):
        usable = len(self) * self.world_size
        for i, batch in enumerate(self.loader):
            if i >= usable:
                continue  # drain the loader so its pass counter advances like everywhere else
            if i % self.world_size == self.rank:
                yield batch


def peers_of(ctx: DistContext) -> str:
    """The other ranks, in words ('rank 1', 'ranks 1, 2, 3') for failure reasons."""
    others = [r for r in range(ctx.world_size) if r != ctx.rank]
    return ("rank " if len(others) == 1 else "ranks ") + ", ".join(map(str, others))


def average_buffers(ctx: DistContext, module: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks, in place.

    DDP broadcasts rank 0's buffers before each forward, but the last training batch of an epoch
    updates each rank's statistics from its own shard: without this, validation (and so every
    gate and controller input) would read slightly different statistics on each rank.
    """
    if not ctx.enabled:
        return
    for buf in module.buffers():
        if buf.is_floating_point():
            t = buf.detach().double()
            _collective(dist.all_reduce, t, op=dist.ReduceOp.SUM)
            buf.copy_((t / ctx.world_size).to(buf.dtype))
