"""PPO loss terms and diagnostics as plain tensor functions (cleanrl ppo.py style)."""

from __future__ import annotations

import torch
from torch import Tensor


def normalize_advantages(adv: Tensor, eps: float = 1e-8) -> Tensor:
    """Zero mean, unit (unbiased) std; a single element is only centred."""
    if adv.numel() < 2:
        return adv - adv.mean()
    return (adv - adv.mean()) / (adv.std() + eps)


def clipped_surrogate(new_logp: Tensor, old_logp: Tensor, adv: Tensor, clip: float) -> Tensor:
    """PPO policy loss: mean of max(-A·r, -A·clip(r, 1-ε, 1+ε)); all inputs (B,)."""
    ratio = (new_logp - old_logp).exp()
    return torch.max(-adv * ratio, -adv * ratio.clamp(1.0 - clip, 1.0 + clip)).mean()


def per_head_surrogate(new_logp: Tensor, old_logp: Tensor, relevant: Tensor, adv: Tensor,
                       clip: float) -> Tensor:
    """Clip per head: sum over heads of the clipped surrogate of each head's own ratio, where the
    head is relevant to the sampled op. ``new_logp``, ``old_logp``, ``relevant`` are (B, H)."""
    ratio = (new_logp - old_logp).exp()  # (B, H)
    a = adv.unsqueeze(1)  # (B, 1)
    loss = torch.max(-a * ratio, -a * ratio.clamp(1.0 - clip, 1.0 + clip))  # (B, H)
    return (loss * relevant.to(loss.dtype)).sum(1).mean()


def clipped_value_loss(new_v: Tensor, old_v: Tensor, returns: Tensor, clip: float | None) -> Tensor:
    """0.5·mean(max((v - R)², (v_old + clip(v - v_old, ±c) - R)²)); unclipped when clip is None."""
    unclipped = (new_v - returns) ** 2
    if clip is None:
        return 0.5 * unclipped.mean()
    v_clip = old_v + (new_v - old_v).clamp(-clip, clip)
    return 0.5 * torch.max(unclipped, (v_clip - returns) ** 2).mean()


def entropy_bonus(head_entropy: Tensor, relevant: Tensor, coefs: Tensor) -> Tensor:
    """Σ_h coef_h · mean_b(relevant_bh · H_bh): the term *subtracted* from the loss. (B, H), (H,)."""
    return ((head_entropy * relevant.to(head_entropy.dtype)).mean(0) * coefs).sum()


def approx_kl(new_logp: Tensor, old_logp: Tensor) -> Tensor:
    """mean((r - 1) - log r), the low-variance KL(old || new) estimator (Schulman's k3)."""
    log_ratio = new_logp - old_logp
    return ((log_ratio.exp() - 1.0) - log_ratio).mean()


def clip_fraction(new_logp: Tensor, old_logp: Tensor, clip: float) -> Tensor:
    """Share of ratios with |r - 1| > ε."""
    return ((new_logp - old_logp).exp().sub(1.0).abs() > clip).float().mean()


def explained_variance(values: Tensor, returns: Tensor) -> float:
    """1 - Var(R - v) / Var(R); NaN when the returns do not vary."""
    var_r = returns.var(unbiased=False)
    if var_r.item() == 0.0:
        return float("nan")
    return float(1.0 - (returns - values).var(unbiased=False) / var_r)


def pooled_explained_variance(rounds: list[tuple[float, float, float, float]]) -> float:
    """``explained_variance`` over the samples of several equal-sized rounds, from each round's
    (return mean, return variance, mean and variance of R - v); NaN when the returns do not vary.
    A round's own explained variance compares its samples with each other only; pooled, the
    variation of the returns between rounds counts too, as does the value error's."""
    if not rounds:
        return float("nan")

    def pooled_var(means: list[float], variances: list[float]) -> float:
        grand = sum(means) / len(means)
        return sum(v + (m - grand) ** 2 for m, v in zip(means, variances)) / len(means)

    var_r = pooled_var([r[0] for r in rounds], [r[1] for r in rounds])
    var_e = pooled_var([r[2] for r in rounds], [r[3] for r in rounds])
    return float("nan") if var_r == 0.0 else 1.0 - var_e / var_r
