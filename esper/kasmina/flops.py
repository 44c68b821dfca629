"""FLOPs of a model's forward and training passes, counted analytically per module.

What is counted is what ``torch.utils.flop_counter.FlopCounterMode`` counts: matrix products
(``F.linear``, ``matmul``/``bmm``), convolutions and scaled-dot-product attention, a multiply-add
being 2 FLOPs. Elementwise work (norms, activations, pooling, residual adds, the blend) is not
counted, as in torch's counter; on the hosts and blueprints here it is a few percent.

Backward, per product: the weight gradient costs the product's forward FLOPs when the weight
requires grad, the input gradient its forward FLOPs when the input requires grad (so the first
layer, and a seed reading a detached input, pay only for their weights). Attention's backward
costs 2 * (3 d + 2 d_v) / (2 (d + d_v)) of its forward (2.5x for d = d_v), as torch counts it.
A grouped convolution's weight gradient costs its forward FLOPs here; torch's counter charges it
``groups`` times that (its formula drops the groups), a known over-count of the reference.

The count runs the model once on a one-sample ``example`` in eval mode with autograd on (so
``requires_grad`` propagates as in training), under a ``TorchFunctionMode`` that reads only
shapes: no host-device synchronisation, no change to parameters, buffers or gradients. FLOPs
are linear in the batch for these ops, so per-sample counts times samples give a pass's total.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one sample through some modules."""

    forward: int = 0
    # forward-pass FLOPs
    backward: int = 0
    # backward-pass FLOPs (input and weight gradients as training computes them)

    @property
    def training(self) -> int:
        """Forward plus backward: one training step's FLOPs per sample."""
        return self.forward + self.backward

    def __add__(self, other: "FlopCount") -> "FlopCount":
        return FlopCount(self.forward + other.forward, self.backward + other.backward)


def _needs(t) -> int:
    return int(isinstance(t, Tensor) and t.requires_grad)


def _linear(args, kwargs, out) -> tuple[int, int]:
    x, w = args[0], args[1] if len(args) > 1 else kwargs["weight"]
    fwd = 2 * out.numel() * w.shape[1]  # (..., out) outputs, each a dot product of length in
    return fwd, fwd * (_needs(x) + _needs(w))


def _conv(args, kwargs, out) -> tuple[int, int]:
    x, w = args[0], args[1] if len(args) > 1 else kwargs["weight"]
    fwd = 2 * out.numel() * math.prod(w.shape[1:])  # each output: C_in/groups * k_h * k_w MACs
    return fwd, fwd * (_needs(x) + _needs(w))


def _matmul(args, kwargs, out) -> tuple[int, int]:
    a, b = args[0], args[1]
    fwd = 2 * out.numel() * a.shape[-1]
    return fwd, fwd * (_needs(a) + _needs(b))


def _sdpa(args, kwargs, out) -> tuple[int, int]:
    q, k, v = args[0], args[1], args[2]  # (..., S_q, d), (..., S_k, d), (..., S_k, d_v)
    rows = math.prod(q.shape[:-1]) * k.shape[-2]  # batch * heads * S_q * S_k
    d, dv = q.shape[-1], v.shape[-1]
    fwd = 2 * rows * (d + dv)  # scores q k^T, then weights @ v
    bwd = 2 * rows * (3 * d + 2 * dv) if (_needs(q) or _needs(k) or _needs(v)) else 0
    return fwd, bwd


_COSTS = MappingProxyType({
    F.linear: _linear,
    F.conv1d: _conv, F.conv2d: _conv, F.conv3d: _conv,
    torch.matmul: _matmul, torch.bmm: _matmul, torch.mm: _matmul,
    Tensor.matmul: _matmul, Tensor.__matmul__: _matmul, Tensor.bmm: _matmul, Tensor.mm: _matmul,
    F.scaled_dot_product_attention: _sdpa,
})


class _Counter(TorchFunctionMode):
    """Charges each counted op to the innermost module running (a stack kept by module hooks)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = [""]
        self.counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        cost = _COSTS.get(func)
        if cost is not None:
            fwd, bwd = cost(args, kwargs, out)
            c = self.counts[self.stack[-1]]
            c[0] += fwd
            c[1] += bwd
        return out


def count_module_flops(model: nn.Module, example: Tensor) -> dict[str, FlopCount]:
    """Per-sample FLOPs of ``model(example)`` by module name ('' = outside any submodule).

    ``example`` is one sample with its batch dimension, e.g. (1, C, H, W) or (1, T). Counts
    are charged to the innermost module running; sum the names under a prefix for a subtree.
    """
    counter = _Counter()

    def enter(module, args, name) -> None:
        counter.stack.append(name)

    def leave(module, args, out) -> None:  # returns None: the module's output is kept
        counter.stack.pop()

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda m, a, n=name: enter(m, a, n)))
        handles.append(module.register_forward_hook(leave))
    was_training = model.training
    model.eval()  # no BatchNorm statistics move; the counted ops are the same as in training
    try:
        with torch.enable_grad(), counter:
            model(example)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    n = example.shape[0]
    return {name: FlopCount(f // n, b // n) for name, (f, b) in counter.counts.items()}


def sum_under(counts: dict[str, FlopCount], prefix: str) -> FlopCount:
    """The FLOPs of module ``prefix`` and everything below it."""
    total = FlopCount()
    for name, c in counts.items():
        if name == prefix or name.startswith(prefix + "."):
            total = total + c
    return total


@dataclass(frozen=True)
class ModelFlops:
    """Per-sample FLOPs of a MorphogeneticModel as it runs now: the host and each slot's seed."""

    host: FlopCount
    # the host's own layers
    seeds: dict[str, FlopCount]
    # slot id -> its seed (and gate network), for slots whose seed runs in the forward pass

    @property
    def total(self) -> FlopCount:
        out = self.host
        for c in self.seeds.values():
            out = out + c
        return out

    def without(self, slot_id: str) -> FlopCount:
        """The model's FLOPs with ``slot_id``'s seed switched off (alpha forced to 0)."""
        return FlopCount(self.total.forward - self.seeds.get(slot_id, FlopCount()).forward,
                         self.total.backward - self.seeds.get(slot_id, FlopCount()).backward)


def model_flops(model: nn.Module, example: Tensor) -> ModelFlops:
    """Per-sample FLOPs of a MorphogeneticModel (``model.host`` and ``model.slots``) on ``example``.

    Anything outside the host and the slots (there is nothing today) is charged to the host.
    """
    counts = count_module_flops(model, example)
    seeds = {sid: sum_under(counts, f"slots.{sid}") for sid in model.slots}
    seed_total = FlopCount()
    for c in seeds.values():
        seed_total = seed_total + c
    everything = FlopCount(sum(c.forward for c in counts.values()), sum(c.backward for c in counts.values()))
    host = FlopCount(everything.forward - seed_total.forward, everything.backward - seed_total.backward)
    return ModelFlops(host, {sid: c for sid, c in seeds.items() if c.forward > 0})


def slot_input_shapes(model: nn.Module, example: Tensor) -> dict[str, tuple[int, ...]]:
    """The feature shape each slot of a MorphogeneticModel sees for ``example`` (one forward, eval
    mode, no gradient)."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [slot.register_forward_pre_hook(lambda m, a, sid=sid: shapes.__setitem__(sid, tuple(a[0].shape)))
               for sid, slot in model.slots.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return shapes


@dataclass(frozen=True)
class BlueprintCost:
    """What a blueprint would add in a slot, per sample."""

    params: int
    forward: int
    # forward FLOPs per sample


def blueprint_costs(model: nn.Module, example: Tensor, build) -> dict[str, dict[str, BlueprintCost]]:
    """slot id -> blueprint name -> cost of that seed there; ``build(slot_id)`` gives the (name, seed
    module) pairs to cost, built on the CPU and counted there on zeros of the slot's feature shape."""
    out: dict[str, dict[str, BlueprintCost]] = {}
    for sid, shape in slot_input_shapes(model, example).items():
        out[sid] = {}
        for name, seed in build(sid):
            params = sum(p.numel() for p in seed.parameters() if p.requires_grad)
            counts = count_module_flops(seed, torch.zeros(shape))
            out[sid][name] = BlueprintCost(params, sum(c.forward for c in counts.values()))
    return out


def cost_table(model: nn.Module, example: Tensor) -> tuple[int, dict[str, dict[str, tuple[int, int]]]]:
    """(host forward FLOPs per sample, slot id -> blueprint -> (params, forward FLOPs per sample))
    of a MorphogeneticModel on ``example``; what a controller reads to charge compute. Building the
    blueprints draws from the global RNG: callers that must not disturb it fork it."""
    from esper.kasmina.blueprints import blueprint_names, build_blueprint

    def build(sid: str):
        slot = model.slots[sid]
        return [(n, build_blueprint(slot.topology, n, slot.channels)) for n in blueprint_names(slot.topology)]

    costs = blueprint_costs(model, example, build)
    host = model_flops(model, example).host.forward
    return host, {sid: {n: (c.params, c.forward) for n, c in by.items()} for sid, by in costs.items()}
