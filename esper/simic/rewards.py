"""Reward of one controller step, by named component (accuracies in percentage points).

Two families. ``paired`` (the default) credits decisions with what they changed: the step's
accuracy gain minus that of a host-only shadow trained from the same initial weights on the same
batches (``esper.simic.vec_env``), so the host's own learning, which no action controls, nets out;
seeds pay rent for their parameters and for the compute they add. Over an episode the paired
gains sum to the final accuracy gap to the host alone. ``shaped`` and ``sparse`` are the earlier
system's components (counterfactual attribution, stage shaping, terminal accuracy, penalties).

Every component is clipped to a declared bound (``reward_bounds``) so no term can dwarf the
others (review 004: scale asymmetries). Potential-based shaping (Ng et al. 1999) uses the PPO
discount, so over an episode it telescopes to γ^T·φ(s_T) − φ(s_0) and cannot change the optimum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from esper.leyline.actions import Op
from esper.leyline.stages import SeedStage

COMPONENTS: tuple[str, ...] = ("paired_gain", "compute_rent", "attribution", "shaping", "rent", "action",
                               "terminal", "fossilize_penalty", "ransomware", "death")
MODES: tuple[str, ...] = ("paired", "shaped", "sparse")


@dataclass(frozen=True)
class RewardConfig:
    """Weights and bounds of the reward components."""

    mode: str = "paired"
    # 'paired' (gain over the host-only shadow, parameter and compute rent, death), 'shaped' (the
    # earlier system's components) or 'sparse' (terminal accuracy and death only)
    paired_scale: float = 0.1
    # paired: reward per pct-pt of accuracy gained over the shadow during the step
    paired_bound: float = 5.0
    # paired: |paired_gain| <= this
    paired_window: int = 3
    # paired: the gap is read as its mean over the last this-many epochs, so the episode's paired
    # gains sum to the mean gap of its last epochs (less validation noise than the last one alone)
    param_rent: float = 0.05
    # paired: an episode with seeds of p parameters throughout pays param_rent * ln(1 + p / host)
    # (spread over its steps): 0.05 ~ 0.5 pct-pt for a seed as large as the host
    compute_rent: float = 0.05
    # paired: an episode whose training FLOPs exceed the host alone's by a ratio x throughout
    # pays compute_rent * x (spread over its steps): 0.05 ~ 0.5 pct-pt per extra host of compute
    compute_rent_bound: float = 1.0
    # paired: |compute_rent| per step <= this
    attribution_sign: dict[str, float] = field(default_factory=lambda: {"FOSSILIZE": 1.0, "PRUNE": -1.0})
    # op name -> sign applied to the acted-on seed's contribution when the op takes effect
    attribution_scale: float = 0.5
    # reward per percentage point of counterfactual contribution
    attribution_bound: float = 5.0
    # |attribution| <= this
    shaping_scale: float = 0.3
    # scale of γφ(s') − φ(s)
    gamma: float = 0.995
    # discount of the shaping; must equal the PPO gamma
    stage_potentials: dict[str, float] = field(default_factory=lambda: {
        "GERMINATED": 1.0, "TRAINING": 2.0, "BLENDING": 3.5, "HOLDING": 5.5, "FOSSILIZED": 6.0})
    # potential of a slot by stage name (absent stages: 0); φ(s) sums over slots
    rent_coef: float = 0.5
    # rent = −min(rent_coef·ln(1 + added/host), rent_cap) ...
    rent_cap: float = 1.5
    # ... capped here ...
    rent_weight: float = 0.1
    # ... and charged per step at this weight (the formula's cap is per episode-length scale)
    action_costs: dict[str, float] = field(default_factory=lambda: {
        "WAIT": 0.0, "GERMINATE": -0.05, "SET_ALPHA_TARGET": -0.01, "PRUNE": -0.02,
        "FOSSILIZE": -0.01, "ADVANCE": -0.01})
    # cost of choosing each op (paid whether or not a gate lets it through)
    terminal_scale: float = 0.05
    # terminal reward per pct-pt of accuracy gained over the episode (from its first epoch); small,
    # because most of that gain is the host's own learning, which no action controls
    terminal_bound: float = 5.0
    # |terminal| <= this
    noncontributor_pp: float = 0.5
    # fossilizing a seed contributing less than this is penalised ...
    noncontributor_penalty: float = -1.0
    # ... by this
    ransomware_contribution_pp: float = 1.0
    # 'ransomware': contribution above this ...
    ransomware_total_pp: float = 0.0
    # ... while accuracy since germination improved by less than this
    ransomware_penalty: float = -2.0
    # penalty for fossilizing a ransomware seed (its attribution is also withheld)
    death_penalty: float = -10.0
    # governor rollback (the episode terminates)


@dataclass(frozen=True)
class StepFacts:
    """What happened in one step, as plain values (the environment fills it)."""

    op: Op
    # the op chosen
    took_effect: bool
    # the decision changed the model (gates passed)
    contribution: float | None
    # counterfactual contribution (pp) of the acted-on seed, as the policy observed it
    improvement: float | None
    # accuracy change (pp) since the acted-on seed germinated
    stages_before: tuple[SeedStage, ...]
    # every slot's stage before the action
    stages_after: tuple[SeedStage, ...]
    # every slot's stage after the epoch that followed
    host_params: int
    # parameters of the host
    added_params: int
    # parameters added by seeds (total − host)
    died: bool = False
    # the governor rolled the model back (terminal)
    episode_end: bool = False
    # last step of the episode (terminal accuracy term)
    acc_gain: float = 0.0
    # accuracy now minus at the episode's first epoch, pp
    gaps: tuple[float, ...] = ()
    # the episode's accuracy gaps to the host-only shadow, pp, one per epoch so far (the first, 0:
    # both start from the same weights), this step's last
    extra_compute: float = 0.0
    # the step's training FLOPs over the host alone's, minus 1 (0 = no seed ran)
    episode_length: int = 1
    # steps per episode (rents are per episode, spread over its steps)


def potential(stages: Sequence[SeedStage], cfg: RewardConfig) -> float:
    return sum(cfg.stage_potentials.get(s.name, 0.0) for s in stages)


def shaping(before: Sequence[SeedStage], after: Sequence[SeedStage], cfg: RewardConfig,
            terminal: bool = False) -> float:
    """scale·(γ·φ(s') − φ(s)); φ of a terminal state is 0."""
    phi_next = 0.0 if terminal else potential(after, cfg)
    return cfg.shaping_scale * (cfg.gamma * phi_next - potential(before, cfg))


def rent(host_params: int, added_params: int, cfg: RewardConfig) -> float:
    """−weight·min(coef·ln(1 + added/host), cap)."""
    ratio = max(0, added_params) / max(1, host_params)
    return -cfg.rent_weight * min(cfg.rent_coef * math.log1p(ratio), cfg.rent_cap)


def _clip(x: float, bound: float) -> float:
    return max(-bound, min(bound, x))


def is_ransomware(contribution: float | None, improvement: float | None, cfg: RewardConfig) -> bool:
    return (contribution is not None and improvement is not None
            and contribution > cfg.ransomware_contribution_pp and improvement < cfg.ransomware_total_pp)


def attribution(f: StepFacts, cfg: RewardConfig) -> float:
    sign = cfg.attribution_sign.get(f.op.name, 0.0)
    if not f.took_effect or f.contribution is None or sign == 0.0 or not math.isfinite(f.contribution):
        return 0.0
    if is_ransomware(f.contribution, f.improvement, cfg) and sign > 0:
        return 0.0
    return _clip(sign * cfg.attribution_scale * f.contribution, cfg.attribution_bound)


def windowed_change(gaps: Sequence[float], window: int) -> float:
    """How the moving mean of the last ``window`` gaps changed with the last gap. Over an episode
    these changes telescope to the mean of its last ``window`` gaps minus its first gap."""
    if len(gaps) < 2:
        return 0.0
    now = gaps[-window:]
    before = gaps[-window - 1:-1]
    return sum(now) / len(now) - sum(before) / len(before)


def paired(f: StepFacts, cfg: RewardConfig) -> dict[str, float]:
    """The paired components: gain over the shadow, parameter and compute rent, death."""
    out = dict.fromkeys(COMPONENTS, 0.0)
    if f.died:
        out["death"] = cfg.death_penalty
        return out
    out["paired_gain"] = _clip(cfg.paired_scale * windowed_change(f.gaps, cfg.paired_window), cfg.paired_bound)
    steps = max(1, f.episode_length)
    out["rent"] = -cfg.param_rent * math.log1p(max(0, f.added_params) / max(1, f.host_params)) / steps
    out["compute_rent"] = -_clip(cfg.compute_rent * max(0.0, f.extra_compute) / steps, cfg.compute_rent_bound)
    return out


def compute_reward(f: StepFacts, cfg: RewardConfig = RewardConfig()) -> dict[str, float]:
    """Every component by name (all of COMPONENTS; zeros where they do not apply)."""
    if cfg.mode == "paired":
        return paired(f, cfg)
    out = dict.fromkeys(COMPONENTS, 0.0)
    if f.episode_end or f.died:
        out["terminal"] = _clip(cfg.terminal_scale * f.acc_gain, cfg.terminal_bound) if not f.died else 0.0
    out["death"] = cfg.death_penalty if f.died else 0.0
    if cfg.mode == "sparse":
        return out
    out["attribution"] = attribution(f, cfg)
    out["shaping"] = shaping(f.stages_before, f.stages_after, cfg, terminal=f.died)
    out["rent"] = rent(f.host_params, f.added_params, cfg)
    out["action"] = cfg.action_costs.get(f.op.name, 0.0)
    fossilized = f.op is Op.FOSSILIZE and f.took_effect
    if fossilized and (f.contribution is None or f.contribution < cfg.noncontributor_pp):
        out["fossilize_penalty"] = cfg.noncontributor_penalty
    if fossilized and is_ransomware(f.contribution, f.improvement, cfg):
        out["ransomware"] = cfg.ransomware_penalty
    return out


def reward_bounds(cfg: RewardConfig, n_slots: int, max_ratio: float = 1e3) -> dict[str, tuple[float, float]]:
    """Closed interval each component lies in, for a host with ``n_slots`` slots whose seeds add at
    most ``max_ratio`` times the host's parameters."""
    top = max(cfg.stage_potentials.values(), default=0.0) * n_slots * cfg.shaping_scale
    costs = list(cfg.action_costs.values()) or [0.0]
    return {"paired_gain": (-cfg.paired_bound, cfg.paired_bound),
            "compute_rent": (-cfg.compute_rent_bound, 0.0),
            "attribution": (-cfg.attribution_bound, cfg.attribution_bound),
            "shaping": (-top, top),
            "rent": (-max(cfg.rent_weight * cfg.rent_cap, cfg.param_rent * math.log1p(max_ratio)), 0.0),
            "action": (min(min(costs), 0.0), max(max(costs), 0.0)),
            "terminal": (-cfg.terminal_bound, cfg.terminal_bound),
            "fossilize_penalty": (min(cfg.noncontributor_penalty, 0.0), 0.0),
            "ransomware": (min(cfg.ransomware_penalty, 0.0), 0.0),
            "death": (min(cfg.death_penalty, 0.0), 0.0)}
