"""Hosts for one-dimensional inputs: a 1-D CNN for signals and an MLP for flat feature vectors.

Both follow ``CNNHost``'s shape: blocks with a slot after each, split at the slots so a
``MorphogeneticModel`` can run them segment by segment (see ``HostProtocol``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from esper.kasmina.protocol import InjectionSpec


class _SegmentedHost(nn.Module):
    """Blocks (one slot after each) then a head: the segment interface of ``HostProtocol``."""

    topology = ""

    def _finish(self, blocks: list[nn.Module], channels: list[int], head: nn.Module) -> None:
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self._specs = [InjectionSpec(f"block{i}", c, i) for i, c in enumerate(channels)]
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
            x = block(x)
        return x

    def forward_from_segment(self, slot_id: str, h: Tensor) -> Tensor:
        for block in self._seq[self._index[slot_id] + 1:]:
            h = block(h)
        return self.head(h)

    def forward(self, x: Tensor) -> Tensor:
        for block in self._seq:
            x = block(x)
        return self.head(x)


@dataclass(frozen=True)
class Conv1dConfig:
    """Conv1dHost shape (a small default, the 1-D analogue of the CNN preset)."""

    in_channels: int = 1
    # input signal channels
    base: int = 8
    # channels of the first block; block i has base * 2^i
    blocks: int = 3
    # conv blocks (one slot after each)
    kernel: int = 5
    # conv kernel size (padding kernel // 2)
    pool_blocks: int = 2
    # a stride-2 max-pool follows each of the first this-many blocks
    num_classes: int = 10
    # output classes


class GlobalAvgPool1d(nn.Module):
    """(B, C, L) -> (B, C)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=2)


class Conv1dHost(_SegmentedHost):
    """Conv1d(no bias) -> BatchNorm1d -> ReLU blocks, max-pools, global average pool, Linear.
    Input (B, C_in, L); the features at a slot are (B, C_i, L_i)."""

    topology = "conv1d"

    def __init__(self, cfg: Conv1dConfig = Conv1dConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        chans = [cfg.base * 2 ** i for i in range(cfg.blocks)]
        blocks = []
        for i, (cin, cout) in enumerate(zip([cfg.in_channels] + chans[:-1], chans)):
            layers = [nn.Conv1d(cin, cout, cfg.kernel, padding=cfg.kernel // 2, bias=False),
                      nn.BatchNorm1d(cout), nn.ReLU()]
            if i < cfg.pool_blocks:
                layers.append(nn.MaxPool1d(2, ceil_mode=True))  # ceil: a length-1 signal survives
            blocks.append(nn.Sequential(*layers))
        self._finish(blocks, chans, nn.Sequential(GlobalAvgPool1d(), nn.Linear(chans[-1], cfg.num_classes)))


@dataclass(frozen=True)
class MLPConfig:
    """MLPHost shape."""

    in_features: int = 16
    # input feature count
    width: int = 64
    # hidden width of every block
    blocks: int = 3
    # hidden blocks (one slot after each)
    num_classes: int = 10
    # output classes


class MLPHost(_SegmentedHost):
    """Linear -> LayerNorm -> ReLU blocks and a Linear head. Input (B, F); features (B, width).
    LayerNorm rather than BatchNorm: a last batch of one sample must still train."""

    topology = "mlp"

    def __init__(self, cfg: MLPConfig = MLPConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        ins = [cfg.in_features] + [cfg.width] * (cfg.blocks - 1)
        blocks = [nn.Sequential(nn.Linear(i, cfg.width), nn.LayerNorm(cfg.width), nn.ReLU()) for i in ins]
        self._finish(blocks, [cfg.width] * cfg.blocks, nn.Linear(cfg.width, cfg.num_classes))
