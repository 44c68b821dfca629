"""The interface every host network offers to kasmina (which never imports a concrete host)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor


@dataclass(frozen=True)
class InjectionSpec:
    """A point in the host's forward pass where a seed slot sits."""

    slot_id: str
    # name of the slot, e.g. 'block1'
    channels: int
    # feature channels at that point (C of (B, C, H, W) or (B, T, C))
    position: int
    # index of the slot in forward order


@runtime_checkable
class HostProtocol(Protocol):
    """A host split into segments at its injection points."""

    topology: str
    # 'cnn' or 'transformer'

    def injection_specs(self) -> list[InjectionSpec]: ...

    @property
    def segment_channels(self) -> dict[str, int]: ...

    def forward_to_segment(self, slot_id: str, x: Tensor, from_slot: str | None = None) -> Tensor:
        """Run from the input (or from just after ``from_slot``) up to ``slot_id``."""

    def forward_from_segment(self, slot_id: str, h: Tensor) -> Tensor:
        """Run from just after ``slot_id`` to the output logits."""
