"""Concrete hosts: a small CNN and a GPT-style transformer, both split at injection points."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from esper.kasmina.blueprints import CausalSelfAttention
from esper.kasmina.protocol import InjectionSpec


@dataclass(frozen=True)
class CNNConfig:
    """CNNHost shape. The default is the capacity-starved CIFAR preset (~6.4k params)."""

    in_channels: int = 3
    # input image channels
    base: int = 8
    # channels of the first block; block i has base * 2^i
    blocks: int = 3
    # conv blocks (one slot after each)
    kernel: int = 3
    # conv kernel size (padding kernel // 2)
    pool_blocks: int = 2
    # a 2x2 max-pool follows each of the first this-many blocks
    num_classes: int = 10
    # output classes


class CNNHost(nn.Module):
    """Conv(no bias) -> BatchNorm -> ReLU blocks, max-pools, global average pool, Linear."""

    topology = "cnn"

    def __init__(self, cfg: CNNConfig = CNNConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        chans = [cfg.base * 2 ** i for i in range(cfg.blocks)]
        cins = [cfg.in_channels] + chans[:-1]
        self.blocks = nn.ModuleList()
        for i, (cin, cout) in enumerate(zip(cins, chans)):
            layers = [nn.Conv2d(cin, cout, cfg.kernel, padding=cfg.kernel // 2, bias=False),
                      nn.BatchNorm2d(cout), nn.ReLU()]
            if i < cfg.pool_blocks:
                layers.append(nn.MaxPool2d(2))
            self.blocks.append(nn.Sequential(*layers))
        self.head = nn.Linear(chans[-1], cfg.num_classes)
        self._specs = [InjectionSpec(f"block{i}", c, i) for i, c in enumerate(chans)]
        self._index = {s.slot_id: s.position for s in self._specs}
        self._seq = list(self.blocks)  # plain list: slicing a ModuleList builds a new module per call

    def injection_specs(self) -> list[InjectionSpec]:
        return list(self._specs)

    @property
    def segment_channels(self) -> dict[str, int]:
        return {s.slot_id: s.channels for s in self._specs}

    def forward_to_segment(self, slot_id: str, x: Tensor, from_slot: str | None = None) -> Tensor:
        start = 0 if from_slot is None else self._index[from_slot] + 1
        for block in self._seq[start:self._index[slot_id] + 1]:
            x = block(x)  # (B, C_i, H_i, W_i)
        return x

    def forward_from_segment(self, slot_id: str, h: Tensor) -> Tensor:
        for block in self._seq[self._index[slot_id] + 1:]:
            h = block(h)
        return self.head(h.mean(dim=(2, 3)))  # (B, classes)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, classes)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=(2, 3)))


@dataclass(frozen=True)
class TransformerConfig:
    """TransformerHost shape (the earlier system used width 384, 6 heads, 6 layers, block 256)."""

    vocab: int = 256
    # vocabulary size (256 for byte-level text)
    width: int = 64
    # embedding width
    heads: int = 4
    # attention heads
    layers: int = 2
    # transformer blocks
    block_size: int = 64
    # maximum context length
    layers_per_slot: int = 1
    # a slot follows every this-many layers


class Block(nn.Module):
    """Pre-norm GPT block: x + attn(ln(x)); x + mlp(ln(x)) (4x GELU MLP)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(width, heads)  # carries its own pre-norm
        nn.init.normal_(self.attn.proj.weight, std=0.02)
        self.ln = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C)
        x = self.attn(x)
        return x + self.mlp(self.ln(x))


class TransformerHost(nn.Module):
    """GPT-style causal LM with a weight-tied head; slots after layer groups."""

    topology = "transformer"

    def __init__(self, cfg: TransformerConfig = TransformerConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.width)
        self.pos = nn.Embedding(cfg.block_size, cfg.width)
        self.layers = nn.ModuleList(Block(cfg.width, cfg.heads) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.vocab, bias=False)
        self.head.weight = self.tok.weight  # weight tying
        for module in self.modules():  # GPT-2 init: small embeddings keep tied logits sane
            if isinstance(module, (nn.Linear, nn.Embedding)) and module.weight.abs().sum() > 0:
                nn.init.normal_(module.weight, std=0.02)
        ends = list(range(cfg.layers_per_slot - 1, cfg.layers, cfg.layers_per_slot))
        self._specs = [InjectionSpec(f"layer{e}", cfg.width, i) for i, e in enumerate(ends)]
        self._end = {s.slot_id: e for s, e in zip(self._specs, ends)}
        self._seq = list(self.layers)  # plain list: cheap slicing

    def injection_specs(self) -> list[InjectionSpec]:
        return list(self._specs)

    @property
    def segment_channels(self) -> dict[str, int]:
        return {s.slot_id: s.channels for s in self._specs}

    def embed(self, idx: Tensor) -> Tensor:  # (B, T) -> (B, T, C)
        t = idx.shape[1]
        pos = self.pos.weight[:t]  # (T, C)
        return self.tok(idx) + pos

    def forward_to_segment(self, slot_id: str, x: Tensor, from_slot: str | None = None) -> Tensor:
        if from_slot is None:
            x, start = self.embed(x), 0
        else:
            start = self._end[from_slot] + 1
        for layer in self._seq[start:self._end[slot_id] + 1]:
            x = layer(x)
        return x

    def forward_from_segment(self, slot_id: str, h: Tensor) -> Tensor:
        for layer in self._seq[self._end[slot_id] + 1:]:
            h = layer(h)
        return self.head(self.ln_f(h))  # (B, T, V)

    def forward(self, idx: Tensor) -> Tensor:  # (B, T) -> (B, T, V)
        x = self.embed(idx)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.ln_f(x))


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy for (B, K) or (B, T, K) logits."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
