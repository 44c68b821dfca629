"""Generalised advantage estimation with truncation distinct from termination.

A *terminated* step ends the episode for good: nothing is bootstrapped after it. A *truncated*
step ends the episode because time ran out: the value of the state reached is bootstrapped,
then the recursion is cut so no advantage leaks into the next episode.
"""

from __future__ import annotations

import torch
from torch import Tensor


def compute_gae(rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor,
                truncated: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """(advantages, returns), all (T, N).

    ``values[t]`` is V(s_t); ``next_values[t]`` is V(s_{t+1}) of the state the step reached (for a
    truncated step: the bootstrap value of the episode's last state; ignored where terminated).
    """
    term = terminated.to(rewards.dtype)  # (T, N)
    ended = torch.maximum(term, truncated.to(rewards.dtype))  # (T, N)
    deltas = rewards + gamma * (1.0 - term) * next_values - values  # (T, N)
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])  # (N,)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * (1.0 - ended[t]) * running
        adv[t] = running
    return adv, adv + values


def next_values_from(values: Tensor, final_values: Tensor, ended: Tensor,
                     bootstrap: Tensor) -> Tensor:
    """V(s_{t+1}) for each step, (T, N): the next step's value inside an episode, ``bootstrap[t]``
    where step t ended an episode, and ``final_values`` (N,) after the last step of the rollout."""
    shifted = torch.cat([values[1:], final_values.unsqueeze(0)], dim=0)  # (T, N)
    return torch.where(ended.bool(), bootstrap, shifted)
