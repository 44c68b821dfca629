"""The PPO update of the recurrent factored policy, with an approximate-KL early stop that runs.

Minibatches are groups of whole environment sequences, so the LSTM replays each sequence from the
round's initial state with the same episode resets it had while acting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from esper.simic import losses as L
from esper.simic.config import PPOConfig
from esper.simic.gae import compute_gae
from esper.simic.rollout import Rollout
from esper.simic.schedule import lr_factor
from esper.tamiyo.policy.network import PolicyNetwork


@dataclass
class UpdateStats:
    """What one update did (the fields of the PPOUpdate event, plus bookkeeping)."""

    policy_loss: float = 0.0
    value_loss: float = 0.0
    entropy: float = 0.0
    approx_kl: float = 0.0
    # KL(old || new) over the whole round, measured after the update (what the update did)
    clip_fraction: float = 0.0
    explained_variance: float = float("nan")
    lr: float = 0.0
    head_entropy: dict[str, float] = field(default_factory=dict)
    early_stopped: bool = False
    # the KL early stop ended the update before its last minibatch
    optimizer_steps: int = 0
    # minibatch steps actually taken
    teacher_weight: float = 0.0
    # weight of the imitation loss in this update (0 without a teacher)
    imitation_loss: float = float("nan")
    # mean cross-entropy of the teacher's choices under the policy the update left (NaN without one)
    teacher_agreement: float = float("nan")
    # share of the round's states where the updated policy's greedy action is the teacher's (on the
    # heads the teacher's op uses)
    return_mean: float = float("nan")
    return_var: float = float("nan")
    value_error_mean: float = float("nan")
    value_error_var: float = float("nan")
    # mean and variance of the round's returns and of their errors R - v under the values the
    # round was collected with: a round holds a few dozen correlated samples, so its explained
    # variance is noisy; these let it be pooled over many rounds (losses.pooled_explained_variance)


MOMENTS: tuple[str, ...] = ("return_mean", "return_var", "value_error_mean", "value_error_var")
"""The UpdateStats fields a round's explained variance is pooled from, in the order
``losses.pooled_explained_variance`` takes them (each logged as the scalar ``ppo/<name>``)."""


class PPO:
    """Owns the optimiser and the update counter of a PolicyNetwork."""

    def __init__(self, net: PolicyNetwork, cfg: PPOConfig = PPOConfig(), total_updates: int = 100) -> None:
        self.net, self.cfg, self.total_updates = net, cfg, total_updates
        self.opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=1e-5)
        self.updates = 0
        self.coefs = torch.tensor([cfg.entropy_coefs.get(h, 0.0) for h in net.head_names])

    def _set_lr(self) -> float:
        warmup = min(self.cfg.warmup_updates, self.total_updates // 10)
        lr = self.cfg.lr * lr_factor(self.updates, self.total_updates, warmup, self.cfg.lr_floor)
        for g in self.opt.param_groups:
            g["lr"] = lr
        return lr

    def teacher_weight(self) -> float:
        """Weight of the imitation loss at this update: teacher_coef, decaying linearly to 0 over
        teacher_fraction of the run's updates (0 without a teacher)."""
        cfg = self.cfg
        if cfg.teacher == "none" or cfg.teacher_coef <= 0 or cfg.teacher_fraction <= 0:
            return 0.0
        return cfg.teacher_coef * max(0.0, 1.0 - self.updates / (cfg.teacher_fraction * self.total_updates))

    def _dist(self, r: Rollout, idx: Tensor):
        """Replay sequences ``idx`` of the rollout: the flat (T·b) action distribution and values."""
        state = (r.init_state[0][:, idx], r.init_state[1][:, idx])
        logits, values, _ = self.net(r.obs[:, idx], state, r.starts[:, idx])
        flat = {h: v.reshape(-1, v.shape[-1]) for h, v in logits.items()}
        masks = {h: m[:, idx].reshape(-1, *m.shape[2:]) for h, m in r.masks.items()}
        return self.net.distribution(flat, masks), values.reshape(-1)

    def _evaluate(self, r: Rollout, idx: Tensor):
        """Replay sequences ``idx``: flat (T·b) head log-probs, entropies, relevance, values, and the
        cross-entropy of the teacher's choices (None without them)."""
        dist, values = self._dist(r, idx)
        head_logp, head_ent, rel, imitation = self._scores(r, idx, dist)
        return head_logp, head_ent, rel, values, imitation

    def _scores(self, r: Rollout, idx: Tensor, dist):
        """Under ``dist`` (of sequences ``idx``): the taken actions' head log-probs, entropies and
        relevance, and the cross-entropy of the teacher's choices (None without them)."""
        actions = {h: a[:, idx].reshape(-1) for h, a in r.actions.items()}
        imitation = None
        if r.teacher_actions is not None:
            taught = {h: a[:, idx].reshape(-1) for h, a in r.teacher_actions.items()}
            imitation = -dist.head_log_probs(taught).sum(1)
        return dist.head_log_probs(actions), dist.head_entropy(actions["op"]), dist.relevant(actions["op"]), imitation

    def _minibatch(self, r: Rollout, idx: Tensor, adv: Tensor, returns: Tensor) -> dict[str, Tensor] | None:
        """One optimizer step on sequences ``idx``; None (no step) when its KL is already past target."""
        cfg = self.cfg
        head_logp, head_ent, rel, values, imitation = self._evaluate(r, idx)
        old_head = r.head_logp[:, idx].reshape(-1, head_logp.shape[1])
        new_lp, old_lp = head_logp.sum(1), old_head.sum(1)
        kl = L.approx_kl(new_lp, old_lp).detach()
        if cfg.target_kl is not None and kl.item() > cfg.target_kl:
            return None
        a = adv[:, idx].reshape(-1)
        pg = L.per_head_surrogate(head_logp, old_head, rel, a, cfg.clip)
        vl = L.clipped_value_loss(values, r.values[:, idx].reshape(-1), returns[:, idx].reshape(-1), cfg.value_clip)
        loss = pg + cfg.vf_coef * vl - L.entropy_bonus(head_ent, rel, self.coefs)
        weight = self.teacher_weight()
        if imitation is not None and weight > 0:
            loss = loss + weight * imitation.mean()
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.max_grad_norm)
        self.opt.step()
        return {"pg": pg.detach(), "vl": vl.detach(), "cf": L.clip_fraction(new_lp, old_lp, cfg.clip)}

    @torch.no_grad()
    def _after(self, r: Rollout, stats: UpdateStats) -> None:
        """KL and entropies of the policy the update left, over the whole round: the update's
        own minibatch KLs are measured before each step (the first one is exactly 0), so their
        mean understates what the update did. Heads no sample used are left out."""
        idx = torch.arange(r.obs.shape[1])
        dist, _ = self._dist(r, idx)
        head_logp, head_ent, rel, imitation = self._scores(r, idx, dist)
        old = r.head_logp.reshape(-1, head_logp.shape[1])
        if imitation is not None:
            stats.imitation_loss = float(imitation.mean())
            stats.teacher_agreement = self._agreement(r, dist)
        stats.approx_kl = float(L.approx_kl(head_logp.sum(1), old.sum(1)))
        stats.entropy = float(head_ent.sum(1).mean())
        counts = rel.sum(0)
        stats.head_entropy = {h: float(head_ent[:, i].sum() / counts[i])
                              for i, h in enumerate(self.net.head_names) if counts[i] > 0}

    def _agreement(self, r: Rollout, dist) -> float:
        """Share of the round's states where the greedy action under ``dist`` (the whole round's)
        matches the teacher's on every head the teacher's op uses."""
        greedy = dist.sample(greedy=True)
        taught = {h: a.reshape(-1) for h, a in r.teacher_actions.items()}
        rel = dist.relevant(taught["op"])
        same = torch.stack([greedy[h] == taught[h] for h in self.net.head_names], 1)
        return float((same | ~rel).all(1).float().mean())

    def update(self, r: Rollout) -> UpdateStats:
        """One PPO update on a round; the KL early stop ends it before an overshooting step."""
        cfg, stats = self.cfg, UpdateStats()
        stats.lr = self._set_lr()
        stats.teacher_weight = self.teacher_weight() if r.teacher_actions is not None else 0.0
        adv, returns = compute_gae(r.rewards, r.values, r.next_values, r.terminated, r.truncated,
                                   cfg.gamma, cfg.gae_lambda)
        if cfg.normalize_advantages:
            adv = L.normalize_advantages(adv)
        n_env = r.obs.shape[1]
        groups = max(1, min(cfg.minibatches, n_env))
        sums: dict[str, float] = {}
        for _ in range(cfg.update_epochs):
            for idx in torch.randperm(n_env).chunk(groups):
                out = self._minibatch(r, idx, adv, returns)
                if out is None:
                    stats.early_stopped = True
                    break
                stats.optimizer_steps += 1
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
            if stats.early_stopped:
                break
        self.updates += 1
        n = max(1, stats.optimizer_steps)
        stats.policy_loss, stats.value_loss = sums.get("pg", 0.0) / n, sums.get("vl", 0.0) / n
        stats.clip_fraction = sums.get("cf", 0.0) / n
        self._after(r, stats)
        values, returns = r.values.reshape(-1), returns.reshape(-1)
        stats.explained_variance = L.explained_variance(values, returns)
        err = returns - values
        stats.return_mean, stats.return_var = float(returns.mean()), float(returns.var(unbiased=False))
        stats.value_error_mean, stats.value_error_var = float(err.mean()), float(err.var(unbiased=False))
        return stats
