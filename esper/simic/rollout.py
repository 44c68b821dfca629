"""Rollout storage of a round: T steps of N environments, kept as (T, N, ...) tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from esper.simic.gae import next_values_from

State = tuple[Tensor, Tensor]


@dataclass
class Rollout:
    """One round of experience, ready for a PPO update."""

    obs: Tensor
    # (T, N, D) raw observation features
    starts: Tensor
    # (T, N) bool: step t begins an episode (LSTM state resets)
    actions: dict[str, Tensor]
    # head -> (T, N) long
    masks: dict[str, Tensor]
    # head -> (T, N, ...) bool
    head_logp: Tensor
    # (T, N, H) log-prob of each relevant head under the behaviour policy (0 if irrelevant)
    values: Tensor
    # (T, N) V(s_t) under the behaviour policy
    rewards: Tensor
    # (T, N)
    terminated: Tensor
    # (T, N) bool: the episode ended for good after step t (no bootstrap)
    truncated: Tensor
    # (T, N) bool: the episode was cut after step t (bootstrap with V of the reached state)
    next_values: Tensor
    # (T, N) V(s_{t+1}) used by GAE
    init_state: State
    # LSTM state (1, N, H) before step 0
    teacher_actions: dict[str, Tensor] | None = None
    # head -> (T, N) long: the teacher's choice in each state (esper.simic.teacher), when there is one


class RolloutBuffer:
    """Appends one lockstep step at a time; ``finish`` stacks everything into a Rollout."""

    def __init__(self, init_state: State) -> None:
        self.init_state = (init_state[0].detach().clone(), init_state[1].detach().clone())
        self.steps: list[dict] = []

    def add(self, obs: Tensor, starts: Tensor, actions: dict[str, Tensor], masks: dict[str, Tensor],
            head_logp: Tensor, values: Tensor, teacher: dict[str, Tensor] | None = None) -> None:
        """The policy's side of a step, each (N, ...); ``teacher``: the teacher's choices."""
        self.steps.append({"obs": obs, "starts": starts, "actions": actions, "masks": masks,
                           "head_logp": head_logp.detach(), "values": values.detach(), "teacher": teacher})

    def add_outcome(self, rewards: Tensor, terminated: Tensor, truncated: Tensor, bootstrap: Tensor) -> None:
        """The environments' side of the last step, each (N,); ``bootstrap`` is V of the state
        an episode ended in (used only where truncated)."""
        self.steps[-1].update(rewards=rewards, terminated=terminated, truncated=truncated,
                              bootstrap=bootstrap.detach())

    def __len__(self) -> int:
        return len(self.steps)

    def finish(self, final_values: Tensor) -> Rollout:
        """``final_values`` (N,): V of the states reached after the last step."""
        st = self.steps

        def stack(key: str) -> Tensor:
            return torch.stack([s[key] for s in st])

        values, term, trunc = stack("values"), stack("terminated"), stack("truncated")
        ended = term | trunc
        nv = next_values_from(values, final_values.detach(), ended, stack("bootstrap"))
        heads = st[0]["actions"].keys()
        teacher = ({h: torch.stack([s["teacher"][h] for s in st]) for h in st[0]["teacher"]}
                   if st[0]["teacher"] is not None else None)
        return Rollout(stack("obs"), stack("starts"), {h: torch.stack([s["actions"][h] for s in st]) for h in heads},
                       {h: torch.stack([s["masks"][h] for s in st]) for h in st[0]["masks"]},
                       stack("head_logp"), values, stack("rewards"), term, trunc, nv, self.init_state, teacher)
