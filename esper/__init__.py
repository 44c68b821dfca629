"""Esper: train neural networks that grow, and watch them grow.

``import esper`` is light: ``esper.log`` (logging from any training loop) never imports torch,
and the growth API (``esper.Slot``, ``esper.grow``, from ``esper.api``) is imported, with
torch, on first use.
"""

from __future__ import annotations

import importlib

_LAZY = {"Slot": "esper.api", "grow": "esper.api", "GrowResult": "esper.api", "log": "esper.log"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'esper' has no attribute {name!r}")
    mod = importlib.import_module(module)
    return mod if module.endswith("." + name) else getattr(mod, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
