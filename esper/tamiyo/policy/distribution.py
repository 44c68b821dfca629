"""The factored, masked action distribution: op first, then the heads that op uses."""

from __future__ import annotations

import torch
from torch import Tensor

from esper.tamiyo.policy.masks import apply_mask


def _log_softmax(logits: Tensor) -> Tensor:
    return torch.log_softmax(logits, dim=-1)


class FactoredDistribution:
    """Per-head categoricals over masked logits. ``logits[h]`` is (B, n_h); ``masks['slot']`` is
    (B, n_ops, n_slots) (the slot mask depends on the op), other masks (B, n_h); ``relevance`` is
    (n_ops, H) bool with heads in ``heads`` order."""

    def __init__(self, logits: dict[str, Tensor], masks: dict[str, Tensor], relevance: Tensor,
                 heads: tuple[str, ...]) -> None:
        self.raw, self.masks, self.relevance, self.heads = logits, masks, relevance, heads

    def _masked(self, head: str, op: Tensor | None) -> Tensor:
        mask = self.masks[head]
        if head == "slot":
            mask = mask[torch.arange(mask.shape[0]), op]  # (B, n_slots) row of the chosen op
        return apply_mask(self.raw[head], mask)

    def relevant(self, op: Tensor) -> Tensor:
        """(B, H) bool: heads that count for the chosen ops."""
        return self.relevance.to(op.device)[op]

    def sample(self, generator: torch.Generator | None = None, greedy: bool = False) -> dict[str, Tensor]:
        """One index per head, (B,) each; the op is drawn first (the slot mask depends on it)."""
        out: dict[str, Tensor] = {}
        for head in self.heads:
            logits = self._masked(head, out.get("op"))
            if greedy:
                out[head] = logits.argmax(-1)
            else:
                probs = torch.softmax(logits, -1)
                out[head] = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return out

    def head_log_probs(self, actions: dict[str, Tensor]) -> Tensor:
        """(B, H) log-prob of each head's choice, 0 where the head is irrelevant to the op."""
        op = actions["op"]
        cols = [_log_softmax(self._masked(h, op)).gather(-1, actions[h].unsqueeze(-1)).squeeze(-1)
                for h in self.heads]
        return torch.stack(cols, 1) * self.relevant(op).to(cols[0].dtype)

    def log_prob(self, actions: dict[str, Tensor]) -> Tensor:
        """(B,) joint log-prob of the relevant heads."""
        return self.head_log_probs(actions).sum(1)

    def head_entropy(self, op: Tensor) -> Tensor:
        """(B, H) entropy of each head (the slot head given the op), 0 where irrelevant."""
        cols = []
        for h in self.heads:
            logp = _log_softmax(self._masked(h, op))
            cols.append(-(logp.exp() * logp).sum(-1))
        return torch.stack(cols, 1) * self.relevant(op).to(cols[0].dtype)

    def op_probs(self) -> Tensor:
        """(B, n_ops) probabilities of the op head after masking."""
        return torch.softmax(self._masked("op", None), -1)
