"""Action masks: which (op, slot) pairs are legal for the slots' stages.

Legality follows the transition table: GERMINATE needs a DORMANT slot; ADVANCE moves a
GERMINATED, TRAINING or BLENDING seed one stage on; FOSSILIZE and SET_ALPHA_TARGET need a
HOLDING seed (the alpha controller is idle only there); PRUNE needs a live seed. WAIT is always
legal. Gates may still refuse a legal move; masks only rule out moves that cannot happen.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from types import MappingProxyType

import torch
from torch import Tensor

from esper.leyline.actions import Op
from esper.leyline.stages import LIVE_STAGES, SeedStage
from esper.tamiyo.policy.actions import OPS, ActionSpace

S = SeedStage
LEGAL_STAGES: Mapping[Op, frozenset[SeedStage]] = MappingProxyType({
    Op.GERMINATE: frozenset({S.DORMANT}),
    Op.ADVANCE: frozenset({S.GERMINATED, S.TRAINING, S.BLENDING}),
    Op.FOSSILIZE: frozenset({S.HOLDING}),
    Op.SET_ALPHA_TARGET: frozenset({S.HOLDING}),
    Op.PRUNE: LIVE_STAGES,
})
"""Stages of the target slot in which each slot-taking op is legal."""
MASKED_LOGIT = -1e4
"""Logit given to an illegal choice."""


def slot_op_mask(stages: Sequence[SeedStage]) -> Tensor:
    """(n_ops, n_slots) bool: op o may target slot s. The WAIT row is all True (slot unused)."""
    rows = [[True] * len(stages) if op is Op.WAIT else [st in LEGAL_STAGES[op] for st in stages]
            for op in OPS]
    return torch.tensor(rows, dtype=torch.bool)


def build_masks(space: ActionSpace, stages: Sequence[SeedStage], inert: Collection[str] = (),
                present: Sequence[bool] | None = None) -> dict[str, Tensor]:
    """Masks of one observation: 'op' (n_ops,), 'slot' (n_ops, n_slots), other heads (n,).

    ``inert`` blueprints are masked out of the blueprint head (GERMINATE is illegal when no
    blueprint is left); slots whose ``present`` flag is False (a checkpoint's slot the running
    model lacks) take no op. An op is legal when at least one slot may take it; WAIT always is."""
    slot = slot_op_mask(stages)
    if present is not None:
        slot &= torch.tensor(list(present), dtype=torch.bool).unsqueeze(0)
    blueprint = torch.tensor([b not in inert for b in space.blueprints], dtype=torch.bool)
    if not blueprint.any():
        slot[OPS.index(Op.GERMINATE)] = False
    op = slot.any(dim=1)
    op[OPS.index(Op.WAIT)] = True
    slot[OPS.index(Op.WAIT)] = True  # WAIT uses no slot: any index is fine
    masks = {"op": op, "slot": slot, "blueprint": blueprint}
    for head, n in space.head_sizes.items():
        if head not in masks:
            masks[head] = torch.ones(n, dtype=torch.bool)
    return masks


def stack_masks(masks: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Batch a list of per-observation masks along a new first dimension."""
    return {k: torch.stack([m[k] for m in masks]) for k in masks[0]}


def apply_mask(logits: Tensor, mask: Tensor) -> Tensor:
    """Illegal choices get logit -1e4 (probability ~0, gradients stay finite)."""
    return torch.where(mask, logits, torch.full_like(logits, MASKED_LOGIT))
