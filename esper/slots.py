"""Slots in the user's own model: ``esper.Slot`` modules and hooks on named submodules.

One batch goes through the model (eval mode, no gradient) to find the slots in forward order,
their feature shapes and the output's shape. Every slot of one model must have features of one
layout (its topology):

    (B, C, H, W) cnn    (B, C, L) conv1d    (B, C) mlp    (B, T, C) transformer

A 3-D feature is (B, C, L) when its dim 1 equals the slot's ``channels`` and (B, T, C) when
its last dim does; give ``channels`` (or ``topology``) for 3-D features. A slot is then bound
to a ``SeedSlot`` of the grown model and stays bound: the user's forward runs through it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from esper.kasmina.layouts import LAYOUTS, layout
from esper.kasmina.model import MorphogeneticModel
from esper.kasmina.protocol import InjectionSpec

__all__ = ["Slot", "GrownModel", "UserHost", "find_slots", "probe_slots", "release_hooks", "slot_specs"]


class Slot(nn.Module):
    """A place in your ``forward`` where Esper may grow a seed: ``h = self.slot(h)``.

    The identity until ``esper.grow`` binds it to a seed slot; from then on your model runs
    through whatever seed the slot holds (none, training, blending or fossilized). ``channels``
    is checked against the features it sees (and tells (B, C, L) from (B, T, C)); ``topology``
    forces the layout; ``name`` is the slot's id in the logs (default: its attribute path).
    """

    def __init__(self, channels: int | None = None, *, topology: str | None = None,
                 name: str | None = None) -> None:
        super().__init__()
        if channels is not None and (not isinstance(channels, int) or channels < 1):
            raise ValueError(f"Slot channels must be a positive int, got {channels!r}")
        if topology is not None:
            layout(topology)
        self.channels, self.topology, self.name = channels, topology, name
        self._probe = _Probe()

    def forward(self, x: Tensor) -> Tensor:
        bound = self.__dict__.get("_bound")  # a SeedSlot kept out of this module's children
        if bound is None:
            self._probe.saw(x)
            return x
        return bound(x)

    def bind(self, slot: nn.Module | None) -> None:
        """Route this slot through ``slot`` (a ``SeedSlot``), without registering it here: the
        grown model owns it, so its parameters appear once, under the grown model's ``slots``."""
        object.__setattr__(self, "_bound", slot)

    @property
    def bound(self) -> bool:
        return self.__dict__.get("_bound") is not None

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in (("channels", self.channels), ("topology", self.topology),
                                                    ("name", self.name)) if v is not None)


class _Probe:
    """Feature shapes a slot saw during the probe pass (plain object: not module state)."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.order: list[int] = []
        self.counter: list[int] | None = None

    def saw(self, x: Any) -> None:
        if self.counter is None:
            return
        if not isinstance(x, Tensor):
            raise TypeError(f"a slot received {type(x).__name__}; slots take a feature tensor")
        self.shapes.append(tuple(x.shape))
        self.order.append(self.counter[0])
        self.counter[0] += 1


class _HookSlot:
    """A slot on the output of a named submodule, through a forward hook."""

    def __init__(self, module: nn.Module, path: str) -> None:
        self.channels, self.topology, self.name, self.path = None, None, None, path
        self._probe, self._bound = _Probe(), None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self._bound is None:
            self._probe.saw(output)
            return None
        if not isinstance(output, Tensor):
            raise TypeError(f"slot on {self.path!r}: the module returned {type(output).__name__}, not a tensor")
        return self._bound(output)

    def bind(self, slot: nn.Module | None) -> None:
        self._bound = slot

    @property
    def bound(self) -> bool:
        return self._bound is not None


class UserHost(nn.Module):
    """The user's module as a host: its slots are specs, its forward is the model's."""

    def __init__(self, net: nn.Module, specs: list[InjectionSpec], topology: str) -> None:
        super().__init__()
        self.net, self.topology, self._specs = net, topology, specs

    def injection_specs(self) -> list[InjectionSpec]:
        return list(self._specs)

    @property
    def segment_channels(self) -> dict[str, int]:
        return {s.slot_id: s.channels for s in self._specs}

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class GrownModel(MorphogeneticModel):
    """Your model with its slots: ``host.net`` is your module, ``slots`` the seed slots. Its
    state dict holds both; ``forward`` is your model's (which calls the slots)."""

    def forward(self, x: Tensor) -> Tensor:
        return self.host(x)


def find_slots(model: nn.Module, names: list[str]) -> list:
    """Every ``Slot`` of ``model`` (not yet bound), then a hook slot on each named submodule."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"grow needs an nn.Module, got {type(model).__name__}")
    found = []
    for path, module in model.named_modules():
        if isinstance(module, Slot):
            if module.bound:
                raise ValueError(f"slot {path!r} is already bound to a grown model; grow a fresh model")
            module.path = path
            found.append(module)
    modules = dict(model.named_modules())
    for name in names:  # all checked before any hook is added
        if name not in modules or name == "":
            raise ValueError(f"slots: no submodule named {name!r} in {type(model).__name__}")
    found += [_HookSlot(modules[name], name) for name in names]
    if not found:
        raise ValueError("no slot: put esper.Slot(channels) modules in the model's forward, or name "
                         "submodules with slots=[...]")
    return found


def release_hooks(found: list) -> None:
    """Remove the forward hooks of hook slots (the model is left as it was)."""
    for slot in found:
        if isinstance(slot, _HookSlot):
            slot.handle.remove()


def probe_slots(model: nn.Module, found: list, x: Tensor) -> Tensor:
    """One forward pass (eval, no gradient) that records each slot's features and order."""
    counter = [0]
    for slot in found:
        slot._probe.counter, slot._probe.shapes, slot._probe.order = counter, [], []
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            out = model(x.to(device))
    finally:
        model.train(was_training)
        for slot in found:
            slot._probe.counter = None
    if not isinstance(out, Tensor):
        raise TypeError(f"the model returned {type(out).__name__}; grow needs a tensor output")
    for slot in found:
        where = getattr(slot, "path", "?")
        if not slot._probe.shapes:
            raise ValueError(f"slot {where!r} was not called in the forward pass")
        if len(slot._probe.shapes) > 1:
            raise ValueError(f"slot {where!r} is called {len(slot._probe.shapes)} times per forward; "
                             f"use one slot per place")
    found.sort(key=lambda s: s._probe.order[0])
    return out


def slot_specs(found: list) -> tuple[list[InjectionSpec], str]:
    """One spec per slot, in forward order, and the topology they share."""
    specs, topologies, ids = [], {}, set()
    for i, slot in enumerate(found):
        topology, channels = _read_layout(slot, slot._probe.shapes[0])
        topologies[slot.path] = topology
        slot_id = slot.name or slot.path.replace(".", "_")
        if "." in slot_id or not slot_id or slot_id in ids:
            raise ValueError(f"slot id {slot_id!r} (of {slot.path!r}) is empty, has a dot or is taken; "
                             f"give the Slot a name=")
        ids.add(slot_id)
        specs.append(InjectionSpec(slot_id, channels, i))
    kinds = set(topologies.values())
    if len(kinds) > 1:
        raise ValueError("slots of one model must share a feature layout; got "
                         + ", ".join(f"{p}: {t}" for p, t in topologies.items()))
    return specs, kinds.pop()


def _read_layout(slot, shape: tuple[int, ...]) -> tuple[str, int]:
    """(topology, channels) of a slot from its feature shape (see the module docstring)."""
    where, c = slot.path, slot.channels
    topology = slot.topology or {4: "cnn", 2: "mlp"}.get(len(shape))
    if topology is None and len(shape) == 3:
        if c is None or (shape[1] == c) == (shape[2] == c):
            raise ValueError(f"slot {where!r}: 3-D features {shape} are (B, C, L) or (B, T, C); "
                             f"give the slot channels= (or topology='conv1d' or 'transformer')")
        topology = "conv1d" if shape[1] == c else "transformer"
    if topology is None:
        raise ValueError(f"slot {where!r}: features of shape {shape}; slots take 2-D, 3-D or 4-D features")
    dims = LAYOUTS[topology]
    if len(shape) != len(dims):
        raise ValueError(f"slot {where!r}: {topology} features are {dims}, got shape {shape}")
    seen = shape[dims.index("C")]
    if c is not None and c != seen:
        raise ValueError(f"slot {where!r}: declared {c} channels, but its features {shape} have {seen}")
    return topology, seen
