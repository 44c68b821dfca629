"""Where the channels are in each topology's features, for code that must know the layout.

    cnn          (B, C, H, W)   images
    transformer  (B, T, C)      token sequences (channels last)
    conv1d       (B, C, L)      one-dimensional signals
    mlp          (B, C)         flat feature vectors

A slot's seed maps a feature tensor to one of the same shape; the slot probes it with a small
tensor of its layout, and the GATE blend pools each sample's features to (B, C).
"""

from __future__ import annotations

from torch import Tensor

LAYOUTS: dict[str, str] = {"cnn": "BCHW", "transformer": "BTC", "conv1d": "BCL", "mlp": "BC"}
"""topology -> the order of a feature tensor's dimensions."""


def layout(topology: str) -> str:
    """The layout of ``topology``'s features; ValueError for an unknown topology."""
    try:
        return LAYOUTS[topology]
    except KeyError:
        raise ValueError(f"unknown topology {topology!r}; known: {', '.join(LAYOUTS)}") from None


def probe_shape(topology: str, channels: int, size: int = 4) -> tuple[int, ...]:
    """A small feature shape of ``topology`` with ``channels`` channels (batch 2, extent ``size``)."""
    return tuple({"B": 2, "C": channels}.get(d, size) for d in layout(topology))


def pool_channels(topology: str, x: Tensor) -> Tensor:
    """Mean over every dimension but batch and channels: (B, C)."""
    dims = layout(topology)
    if x.dim() != len(dims):
        raise ValueError(f"{topology} features are {x.dim()}-D, expected {len(dims)}-D ({dims})")
    spatial = tuple(i for i, d in enumerate(dims) if d not in "BC")
    return x.mean(dim=spatial) if spatial else x
