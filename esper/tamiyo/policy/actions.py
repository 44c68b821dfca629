"""The factored action space of the learned controller.

An action is one index per head. The op head is sampled first; the other heads only matter for
the ops listed in ``HEADS_FOR_OP`` — the rest contribute nothing to log-prob, entropy or KL.
SET_ALPHA_TARGET uses two: where alpha goes (alpha_target) and over how many epochs (alpha_speed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import Tensor

from esper.leyline.actions import Decision, Op

OPS: tuple[Op, ...] = tuple(Op)
"""Op head index -> Op, in enum order (WAIT first)."""
BLENDS: tuple[str, ...] = ("add", "multiply", "gate")
TEMPOS: tuple[str, ...] = ("fast", "standard", "slow")
ALPHA_TARGETS: tuple[float, ...] = (0.5, 0.7, 1.0)
ALPHA_SPEEDS: tuple[int, ...] = (1, 3, 5)
"""Alpha-speed head index -> epochs the ramp to a new alpha target takes (1 = the next epoch)."""
CURVES: tuple[str, ...] = ("linear", "cosine", "sigmoid", "tanh")

HEADS_FOR_OP: Mapping[Op, tuple[str, ...]] = MappingProxyType({
    Op.WAIT: ("op",),
    Op.GERMINATE: ("op", "slot", "blueprint", "blend", "tempo", "curve"),
    Op.SET_ALPHA_TARGET: ("op", "slot", "alpha_target", "alpha_speed"),
    Op.PRUNE: ("op", "slot"),
    Op.FOSSILIZE: ("op", "slot"),
    Op.ADVANCE: ("op", "slot"),
})
"""Heads whose choice the op uses (and which therefore enter loss, entropy and KL)."""
LEGACY_HEAD_CHOICE: Mapping[str, int] = MappingProxyType({"alpha_speed": ALPHA_SPEEDS.index(1)})
"""Heads added after the first checkpoints, and the choice that reproduces what a checkpoint
without them did (SET_ALPHA_TARGET reached its target in one epoch)."""


@dataclass(frozen=True)
class ActionSpace:
    """Head names and sizes for a host with ``slot_ids`` and ``blueprints``."""

    slot_ids: tuple[str, ...]
    # slot ids in forward order (slot head index -> slot id)
    blueprints: tuple[str, ...]
    # blueprint names of the host topology (blueprint head index -> name)

    @property
    def head_sizes(self) -> dict[str, int]:
        return {"op": len(OPS), "slot": len(self.slot_ids), "blueprint": len(self.blueprints),
                "blend": len(BLENDS), "tempo": len(TEMPOS), "alpha_target": len(ALPHA_TARGETS),
                "alpha_speed": len(ALPHA_SPEEDS), "curve": len(CURVES)}

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.head_sizes)

    def relevance(self) -> Tensor:
        """(n_ops, n_heads) bool: head h matters for op o."""
        heads = self.heads
        return torch.tensor([[h in HEADS_FOR_OP[op] for h in heads] for op in OPS], dtype=torch.bool)

    def decode(self, action: dict[str, int], reason: str = "") -> Decision:
        """Turn head indices into the Decision they stand for, with every setting the op uses:
        GERMINATE carries its blueprint, blend, tempo and curve; SET_ALPHA_TARGET its target and
        speed (also written into the reason text, for readers of older logs)."""
        op = OPS[action["op"]]
        slot = self.slot_ids[action["slot"]] if op is not Op.WAIT else None
        if op is Op.SET_ALPHA_TARGET:
            target, steps = ALPHA_TARGETS[action["alpha_target"]], ALPHA_SPEEDS[action["alpha_speed"]]
            reason = " ".join(filter(None, (reason, alpha_reason(target, steps))))
            return Decision(op, slot, alpha_target=target, alpha_steps=steps, reason=reason)
        if op is Op.GERMINATE:
            return Decision(op, slot, self.blueprints[action["blueprint"]], reason, blend=BLENDS[action["blend"]],
                            tempo=TEMPOS[action["tempo"]], curve=CURVES[action["curve"]])
        return Decision(op, slot, reason=reason)

    def encode(self, d: Decision, blend: str = "add", tempo: str = "fast", curve: str = "linear") -> dict[str, int]:
        """The head indices that ``decode`` turns into ``d`` (the inverse of ``decode``); settings
        ``d`` leaves to the slot (None) take ``blend``, ``tempo`` and ``curve``, the slot's config.
        Heads the op does not use are 0. ValueError for a slot, blueprint or setting outside the space."""
        out = dict.fromkeys(self.heads, 0)
        out["op"] = OPS.index(d.op)
        try:
            if d.op is not Op.WAIT:
                out["slot"] = self.slot_ids.index(d.slot_id)
            if d.op is Op.GERMINATE:
                out["blueprint"] = self.blueprints.index(d.blueprint)
                out["blend"] = BLENDS.index(d.blend or blend)
                out["tempo"] = TEMPOS.index(d.tempo or tempo)
                out["curve"] = CURVES.index(d.curve or curve)
            if d.op is Op.SET_ALPHA_TARGET:
                out["alpha_target"] = ALPHA_TARGETS.index(d.alpha_target)
                out["alpha_speed"] = ALPHA_SPEEDS.index(d.alpha_steps or 1)
        except ValueError:
            raise ValueError(f"{d.op.name} {d.slot_id} {d.blueprint or ''}: outside the action space") from None
        return out


def alpha_reason(target: float, steps: int) -> str:
    """The reason text of a SET_ALPHA_TARGET, e.g. 'alpha_target=0.7 alpha_speed_epochs=3'."""
    return f"alpha_target={target:g} alpha_speed_epochs={steps}"
