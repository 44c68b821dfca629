"""The policy network: Linear + LayerNorm -> LSTM -> per-head MLPs and a value head."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

import torch
from torch import Tensor, nn

from esper.leyline.actions import Op
from esper.tamiyo.policy.actions import BLENDS, CURVES, LEGACY_HEAD_CHOICE, OPS, TEMPOS, ActionSpace
from esper.tamiyo.policy.checkpoint import CheckpointError, read_checkpoint, summarise_keys
from esper.tamiyo.policy.distribution import FactoredDistribution
from esper.tamiyo.policy.masks import MASKED_LOGIT
from esper.tamiyo.policy.normalizer import RunningNorm

State = tuple[Tensor, Tensor]
log = logging.getLogger(__name__)


@dataclass
class ActResult:
    """What one batched policy call returns."""

    actions: dict[str, Tensor]
    # head -> (B,) chosen indices
    head_logp: Tensor
    # (B, H) log-prob per relevant head (0 where irrelevant)
    value: Tensor
    # (B,) value estimates
    state: State
    # LSTM state after the step
    op_probs: Tensor
    # (B, n_ops) masked op probabilities


@dataclass(frozen=True)
class NetworkConfig:
    """Widths of the policy network."""

    hidden: int = 64
    # width of the encoder and of the LSTM
    head_hidden: int = 32
    # hidden width of each action head and of the value head
    wait_bias: float = 2.0
    # initial logit of WAIT over the other ops (the op head starts near uniform otherwise): a new
    # policy mostly lets the run be, so the seeds it germinates live long enough to show their effect
    blueprint_cost_prior: float = 0.5
    # initial blueprint logits are -this * ln(params / the cheapest's params) (set by the trainer
    # from the registry, PolicyNetwork.set_blueprint_prior): a new policy tries cheap seeds first
    # (GROWTH_NOTES: "cheap blueprints first"); at 0.5 on a CNN, norm ~0.6, attention ~0.15 ...
    # conv_heavy ~0.01. With a uniform blueprint head the default run's germinations were
    # dominated by costly seeds (conv_heavy: 11x the host's parameters, -8.8 pp in 20 epochs),
    # and the policy stopped germinating within 25 updates
    settings_bias: float = 3.0
    # initial logit of the slot's default blend settings (add, fast, linear: what the heuristic
    # uses) over the others: a new policy mostly germinates as the heuristic does (P ~0.7 for all
    # three) and learns where other settings pay. With uniform settings heads one germination in
    # 36 had them, and a seed's outcome varied with five random choices instead of two (slot and
    # blueprint): a slow tempo, for one, blends a seed over half a 16-epoch episode
    critic_inputs: int = 0
    # the last critic_inputs observation features are the critic's alone (an asymmetric
    # actor-critic): the value head reads them beside the LSTM's output, the actor never does, so
    # training may give the critic what a deployed controller cannot know (esper.simic.config
    # CRITIC_FEATURES: the episode's reward so far, the gap to the host-only shadow); a deployed
    # policy is given zeros there and reports no value. esper ppo sets it from the environments
    # (EnvConfig.critic_features)


CHOICES: Mapping[str, tuple[str, ...]] = MappingProxyType({"blend": BLENDS, "tempo": TEMPOS, "curve": CURVES})
SETTINGS_PRIOR: Mapping[str, str] = MappingProxyType({"blend": "add", "tempo": "fast", "curve": "linear"})
"""Head -> the choice ``NetworkConfig.settings_bias`` favours at initialisation (SlotConfig's defaults)."""


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.Tanh(), nn.Linear(d_hidden, d_out))


class PolicyNetwork(nn.Module):
    """Recurrent actor-critic over a factored action space."""

    def __init__(self, obs_dim: int, space: ActionSpace, cfg: NetworkConfig = NetworkConfig()) -> None:
        super().__init__()
        self.obs_dim, self.space, self.cfg = obs_dim, space, cfg
        self.head_names = space.heads
        self.register_buffer("relevance", space.relevance(), persistent=False)
        if not 0 <= cfg.critic_inputs < obs_dim:
            raise ValueError(f"critic_inputs must be in [0, {obs_dim}) for {obs_dim} observation features")
        self.actor_dim = obs_dim - cfg.critic_inputs
        self.norm = RunningNorm(obs_dim)
        self.encoder = nn.Sequential(nn.Linear(self.actor_dim, cfg.hidden), nn.LayerNorm(cfg.hidden), nn.Tanh())
        self.lstm = nn.LSTM(cfg.hidden, cfg.hidden)
        self.heads = nn.ModuleDict({h: _mlp(cfg.hidden, cfg.head_hidden, n) for h, n in space.head_sizes.items()})
        self.value = _mlp(cfg.hidden + cfg.critic_inputs, cfg.head_hidden, 1)
        for head in self.heads.values():  # near-uniform initial policy ...
            nn.init.normal_(head[-1].weight, std=0.01)
            nn.init.zeros_(head[-1].bias)
        with torch.no_grad():  # ... that mostly waits, and germinates with the default settings
            self.heads["op"][-1].bias[OPS.index(Op.WAIT)] = cfg.wait_bias
            for head, choice in SETTINGS_PRIOR.items():
                self.heads[head][-1].bias[CHOICES[head].index(choice)] = cfg.settings_bias

    @torch.no_grad()
    def set_blueprint_prior(self, log_cost: Tensor) -> None:
        """Blueprint head's initial bias: -cfg.blueprint_cost_prior * ``log_cost`` (n_blueprints,)."""
        self.heads["blueprint"][-1].bias.copy_(-self.cfg.blueprint_cost_prior * log_cost)

    def initial_state(self, batch: int) -> State:
        z = torch.zeros(1, batch, self.cfg.hidden)
        return z, z.clone()

    def forward(self, obs: Tensor, state: State, starts: Tensor) -> tuple[dict[str, Tensor], Tensor, State]:
        """obs (T, B, D), starts (T, B) bool (episode begins: LSTM state reset before the step).
        Returns logits {head: (T, B, n)}, values (T, B), final state."""
        normed = self.norm(obs)
        x = self.encoder(normed[..., :self.actor_dim])  # (T, B, H)
        h, c = state
        outs = []
        for t in range(obs.shape[0]):
            keep = (~starts[t]).to(x.dtype).view(1, -1, 1)  # (1, B, 1)
            out, (h, c) = self.lstm(x[t:t + 1], (h * keep, c * keep))
            outs.append(out)
        z = torch.cat(outs, 0)  # (T, B, H)
        logits = {name: head(z) for name, head in self.heads.items()}
        critic_in = torch.cat([z, normed[..., self.actor_dim:]], -1) if self.cfg.critic_inputs else z
        return logits, self.value(critic_in).squeeze(-1), (h, c)

    def distribution(self, logits: dict[str, Tensor], masks: dict[str, Tensor]) -> FactoredDistribution:
        """Distribution over flat (N, ·) logits and masks."""
        return FactoredDistribution(logits, masks, self.relevance, self.head_names)

    @torch.no_grad()
    def act(self, obs: Tensor, masks: dict[str, Tensor], state: State, starts: Tensor,
            generator: torch.Generator | None = None, greedy: bool = False) -> ActResult:
        """One batched step: obs (B, D), masks (B, ...), starts (B,) -> sampled actions."""
        logits, values, state = self(obs.unsqueeze(0), state, starts.unsqueeze(0))
        dist = self.distribution({h: v[0] for h, v in logits.items()}, masks)
        actions = dist.sample(generator, greedy)
        return ActResult(actions, dist.head_log_probs(actions), values[0], state, dist.op_probs())

    # -- checkpoints -------------------------------------------------------------------------

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        """A plain dict of tensors and builtins, loadable with torch.load(weights_only=True).

        Written beside ``path`` and renamed over it: a run stopped mid-save keeps the last whole
        checkpoint instead of a torn one."""
        tmp = Path(f"{path}.tmp")
        torch.save({"state_dict": self.state_dict(), "obs_dim": self.obs_dim,
                    "slot_ids": list(self.space.slot_ids), "blueprints": list(self.space.blueprints),
                    "network": asdict(self.cfg), "extra": extra or {}}, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> tuple[PolicyNetwork, dict]:
        """(network, extra) from ``save``; never unpickles arbitrary objects.

        A checkpoint saved before a head of ``LEGACY_HEAD_CHOICE`` existed loads with that head
        pinned to the choice that reproduces its old behaviour (logged as a warning); any other
        mismatch, and any file that is not such a checkpoint, raises a one-line CheckpointError
        (a ValueError). Building the network draws its throwaway initial weights from a forked
        RNG: loading a policy leaves the caller's torch RNG (a training run's) untouched."""
        ckpt = read_checkpoint(path)
        space = ActionSpace(tuple(ckpt["slot_ids"]), tuple(ckpt["blueprints"]))
        try:
            with torch.random.fork_rng(devices=[]):
                net = cls(int(ckpt["obs_dim"]), space, NetworkConfig(**ckpt["network"]))
        except (TypeError, ValueError, RuntimeError) as exc:  # unknown or absurd network settings
            raise CheckpointError(f"{path}: not a checkpoint of this PolicyNetwork (network {ckpt['network']!r}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        state = ckpt["state_dict"]
        absent = {k.split(".")[1] for k in net.state_dict() if k not in state and k.startswith("heads.")}
        legacy = sorted(h for h in absent if h in LEGACY_HEAD_CHOICE)
        for head in legacy:
            state = state | net.pinned_head_state(head, LEGACY_HEAD_CHOICE[head])
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches; torch's message spans lines
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            raise CheckpointError(f"{path}: not a checkpoint of this PolicyNetwork ({lines[-1]})") from None
        if missing or unexpected:
            raise CheckpointError(f"{path}: not a checkpoint of this PolicyNetwork (missing {summarise_keys(missing)}; "
                                  f"unexpected {summarise_keys(unexpected)})")
        if legacy:
            log.warning("%s predates the %s head(s): pinned to their old behaviour", path, ", ".join(legacy))
        return net, dict(ckpt["extra"])

    def pinned_head_state(self, head: str, choice: int) -> dict[str, Tensor]:
        """State-dict entries of ``head`` that always pick ``choice`` (the others get logit -1e4)."""
        last = self.heads[head][-1]
        bias = torch.full_like(last.bias, MASKED_LOGIT)
        bias[choice] = 0.0
        first = self.heads[head][0]
        return {f"heads.{head}.0.weight": first.weight.detach().clone(),
                f"heads.{head}.0.bias": first.bias.detach().clone(),
                f"heads.{head}.2.weight": torch.zeros_like(last.weight), f"heads.{head}.2.bias": bias}
