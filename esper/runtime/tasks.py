"""Tasks: a host, its data loaders and the slot policy that suits its topology.

    synthetic-images   offline, deterministic grating images; the default (CNN host)
    pydoc-text         offline byte-level LM on the standard library's pydoc_data topics
    cifar10            CIFAR-10 python batches from --data-dir (random crop + flip, normalised)
    text:PATH          byte-level LM on any plain-text file
    npz:PATH           classification on the arrays of a .npz file (see esper.runtime.npz)
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from esper.kasmina.hosts import CNNConfig, CNNHost, TransformerConfig, TransformerHost
from esper.runtime.data import TensorLoader, lm_windows, random_crop_flip
from esper.leyline.tasks import BATCH_SIZE, TASK_NAMES, SyntheticConfig
from esper.runtime.synthetic import FreshSyntheticLoader, synthetic_val

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass
class Task:
    """Everything the trainer needs about a task."""

    name: str
    topology: str
    num_classes: int
    language: bool
    host: nn.Module
    train_loader: Iterable
    val_loader: Iterable
    batch_size: int
    isolate_blending: bool | None = None
    # the task's isolation choice from BLENDING on (None = topology default: CNN isolated)
    host_factory: Callable[[], nn.Module] | None = None
    # builds another host like ``host`` (fresh init from the global torch RNG) without reloading data


@dataclass(frozen=True)
class TaskOptions:
    """Knobs shared by every task."""

    batch_size: int = BATCH_SIZE
    # training and validation batch size
    seed: int = 0
    # data order (and synthetic data) seed
    data_dir: str | None = None
    # directory of downloaded data (cifar10)
    synthetic: SyntheticConfig = SyntheticConfig()
    # the synthetic image task
    text_block: int = 64
    # context length of the language tasks
    text_max_bytes: int = 400_000
    # bytes of a corpus used at most (keeps CPU epochs short)
    transformer: TransformerConfig = TransformerConfig()
    # host of the language tasks
    npz_kind: str = "auto"
    # npz tasks: what x holds, 'auto' (by its shape), 'image', 'signal' or 'features'
    host_width: int | None = None
    # host width: the CNN's first-block channels (base) or the transformer's embedding width; None = default
    host_depth: int | None = None
    # host depth: the CNN's conv blocks or the transformer's layers; None = default


def cnn_config(opts: TaskOptions, classes: int = 10) -> CNNConfig:
    """The CNN host of a task: the default preset with the options' width (base) and depth (blocks).

    A max-pool follows each of the first two blocks (fewer when there are fewer blocks)."""
    cfg = CNNConfig(num_classes=classes)
    if opts.host_width is not None:
        cfg = replace(cfg, base=_positive(opts.host_width, "host width"))
    if opts.host_depth is not None:
        depth = _positive(opts.host_depth, "host depth")
        cfg = replace(cfg, blocks=depth, pool_blocks=min(cfg.pool_blocks, depth))
    return cfg


def transformer_config(opts: TaskOptions) -> TransformerConfig:
    """The transformer host of a language task: the options' width and depth (layers) applied."""
    cfg = replace(opts.transformer, block_size=max(opts.transformer.block_size, opts.text_block))
    if opts.host_width is not None:
        width = _positive(opts.host_width, "host width")
        if width % cfg.heads:
            raise ValueError(f"host width {width} must be a multiple of the {cfg.heads} attention heads")
        cfg = replace(cfg, width=width)
    if opts.host_depth is not None:
        cfg = replace(cfg, layers=_positive(opts.host_depth, "host depth"))
    return cfg


def _positive(value: int, what: str) -> int:
    if value < 1:
        raise ValueError(f"{what} must be >= 1, got {value}")
    return value


def build_task(name: str, opts: TaskOptions = TaskOptions()) -> Task:
    """Build a task by name; ValueError for an unknown name, an empty dataset or a bad host size,
    FileNotFoundError for missing data."""
    if name == "synthetic-images":
        return _synthetic(opts)
    if name == "pydoc-text":
        from pydoc_data.topics import topics
        return _text("pydoc-text", "\n\n".join(topics[k] for k in sorted(topics)).encode(), opts)
    if name == "cifar10":
        return _cifar10(opts)
    if name.startswith("text:"):
        path = Path(name[5:])
        if not path.is_file():
            raise FileNotFoundError(f"text corpus not found: {path}")
        return _text(name, path.read_bytes(), opts)
    if name.startswith("npz:"):
        from esper.runtime.npz import npz_task
        return npz_task(name, opts)
    raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASK_NAMES)}")


def _synthetic(opts: TaskOptions) -> Task:
    cfg = replace(opts.synthetic, seed=opts.synthetic.seed + opts.seed)
    if cfg.train_size <= 0 or cfg.val_size <= 0:
        raise ValueError("empty dataset: synthetic train_size and val_size must be positive")
    xv, yv = synthetic_val(cfg)
    factory = partial(CNNHost, cnn_config(opts, cfg.classes))
    # Co-adaptation: with isolation, the layers before a slot stop learning at alpha = 1 and
    # their BatchNorm statistics lag once they resume (val accuracy dipped ~10pp after a prune);
    # measured on seeds 0/1: isolated +0.5/+0.05pp over the host alone, co-adapting +0.7/+0.9pp.
    return Task("synthetic-images", "cnn", cfg.classes, False, factory(),
                FreshSyntheticLoader(cfg, opts.batch_size, opts.seed),
                TensorLoader(xv, yv, 256), opts.batch_size, isolate_blending=False, host_factory=factory)


def _text(name: str, data: bytes, opts: TaskOptions) -> Task:
    data = data[:opts.text_max_bytes]
    if len(data) < 4 * (opts.text_block + 2):
        raise ValueError(f"empty dataset: {name} has only {len(data)} bytes")
    tokens = torch.from_numpy(np.frombuffer(data, dtype=np.uint8).astype(np.int64))
    cut = int(len(tokens) * 0.9)
    xt, yt = lm_windows(tokens[:cut], opts.text_block)
    xv, yv = lm_windows(tokens[cut:], opts.text_block)
    factory = partial(TransformerHost, transformer_config(opts))
    return Task(name, "transformer", 256, True, factory(), TensorLoader(xt, yt, opts.batch_size, True, opts.seed),
                TensorLoader(xv, yv, opts.batch_size), opts.batch_size, host_factory=factory)


def _cifar_batches(files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for f in files:
        with f.open("rb") as fh:
            d = pickle.load(fh, encoding="bytes")  # the official CIFAR-10 python format
        xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[b"labels"], dtype=np.int64))
    x = torch.from_numpy(np.concatenate(xs)).float() / 255.0
    mean, std = torch.tensor(CIFAR_MEAN)[:, None, None], torch.tensor(CIFAR_STD)[:, None, None]
    return (x - mean) / std, torch.from_numpy(np.concatenate(ys))


def _cifar10(opts: TaskOptions) -> Task:
    if not opts.data_dir:
        raise FileNotFoundError("cifar10 needs --data-dir (the cifar-10-batches-py directory)")
    root = Path(opts.data_dir)
    root = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    train = sorted(root.glob("data_batch_*"))
    test = root / "test_batch"
    if not train or not test.is_file():
        raise FileNotFoundError(f"no CIFAR-10 python batches (data_batch_*, test_batch) in {root}")
    xt, yt = _cifar_batches(train)
    xv, yv = _cifar_batches([test])
    if len(xt) == 0 or len(xv) == 0:
        raise ValueError(f"empty dataset in {root}")
    factory = partial(CNNHost, cnn_config(opts))
    return Task("cifar10", "cnn", 10, False, factory(),
                TensorLoader(xt, yt, opts.batch_size, True, opts.seed, random_crop_flip),
                TensorLoader(xv, yv, 512), opts.batch_size, host_factory=factory)
