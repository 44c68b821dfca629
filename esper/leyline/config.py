"""Configuration dataclasses of the core. Every threshold of the spec lives here."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the quality gates G0-G5 (CORE_SPEC §2)."""

    mode: str = "permissive"
    # 'strict' or 'permissive': strict adds G2's improvement check and G5's 1.0pp bar
    min_training_epochs: int = 3
    # G2: epochs a seed must spend in TRAINING before it may blend
    gradient_ratio_threshold: dict[str, float] = field(
        default_factory=lambda: {"cnn": 0.05, "transformer": 0.05, "conv1d": 0.05, "mlp": 0.05})
    # G2: minimum seed gradient ratio, per host topology (review 001 §1.3)
    min_gradient_health: float = 0.7
    # G2/G4: minimum gradient health in [0, 1]
    min_improvement_pp: float = 0.5
    # G2 (strict only): val-accuracy gain since TRAINING began, percentage points
    alpha_tolerance: float = 1e-6
    # G3: how close alpha must be to its target
    min_holding_epochs: int = 2
    # G4: epochs the seed must have spent in HOLDING (the stability window)
    hold_loss_tolerance: float = 0.05
    # G4: val loss may be at most this fraction worse than at hold start
    max_isolation_violations: int = 3
    # G4: tolerated isolation violations
    min_contribution_strict: float = 1.0
    # G5 (strict): counterfactual contribution, percentage points, must be >= this
    min_contribution_permissive: float = 0.0
    # G5 (permissive): contribution must be > this


@dataclass(frozen=True)
class GradientConfig:
    """Gradient statistics of live seeds (CORE_SPEC §4)."""

    stride: int = 10
    # collect norms every k-th batch
    ema_decay: float = 0.9
    # decay of the ratio's exponential moving average (bias-corrected)
    min_host_norm: float = 1e-8
    # below this host norm the ratio is unmeasurable (None)
    ratio_clamp: float = 10.0
    # upper bound of the parameter-normalised ratio
    vanishing_norm: float = 1e-7
    # a tensor with a gradient norm below this is vanishing
    exploding_norm: float = 10.0
    # a tensor with a gradient norm above this (or non-finite) is exploding
    clip_norm: float = 1.0
    # host and each seed are clipped separately to this total norm


@dataclass(frozen=True)
class SlotConfig:
    """How a slot blends and retires its seed (CORE_SPEC §1, §3)."""

    blend: str = "add"
    # blend operator: 'add', 'multiply' or 'gate'
    tempo: str = "fast"
    # blend tempo: 'fast' (3 epochs), 'standard' (5), 'slow' (8)
    curve: str = "linear"
    # alpha ramp curve: 'linear', 'cosine', 'sigmoid', 'tanh'
    alpha_target: float = 1.0
    # alpha the blend ramps to (0.5, 0.7 or 1.0)
    isolate_blending: bool | None = None
    # seed input detached from the host in BLENDING+; None = topology default (cnn True, transformer False)
    prune_ticks: int = 0
    # epochs over which a blended seed's alpha ramps to 0 before it is freed (0 = instant)
    embargo_epochs: int = 5
    # epochs a slot cools down after a prune


@dataclass(frozen=True)
class GovernorConfig:
    """The loss watchdog of CORE_SPEC §6."""

    sensitivity: float = 6.0
    # statistical anomaly: loss > mean + sensitivity * std ...
    multiplier: float = 3.0
    # ... and loss > multiplier * mean ...
    floor_fraction: float = 1.0
    # ... and loss > floor_fraction * ln(num_classes) (task-relative absolute floor)
    history: int = 20
    # good losses kept for the statistics
    min_history: int = 10
    # samples needed before lobotomy and statistical checks run
    lobotomy_tolerance: float = 0.065
    # lobotomy: loss within this fraction of ln(num_classes) ...
    lobotomy_mean_fraction: float = 0.6
    # ... while the history mean is below this fraction of ln(num_classes)
    consecutive_to_rollback: int = 3
    # consecutive statistical anomalies that force a rollback
    snapshot_every: int = 5
    # good epochs between periodic snapshots


@dataclass(frozen=True)
class HeuristicConfig:
    """Thresholds of the heuristic controller (CORE_SPEC §7)."""

    min_epoch: int = 5
    # never germinate before this epoch
    prune_cooldown: int = 5
    # epochs after a prune before the next germination
    stable_window: int = 3
    # epochs of small relative loss change that mean the host has stabilised
    stable_rel_change: float = 0.1
    # 'small' relative change of the train loss between epochs
    plateau_window: int = 3
    # epochs over which accuracy must have stalled
    plateau_pp: float = 0.5
    # stalled = best accuracy gain below this, percentage points
    blueprints: tuple[str, ...] = ("conv_heavy", "conv_light", "bottleneck", "attention")
    # rotation order of blueprints (transformer hosts map to their own list)
    transformer_blueprints: tuple[str, ...] = ("mlp", "lora", "attention", "mlp_small")
    # rotation order for transformer hosts
    other_blueprints: dict[str, tuple[str, ...]] = field(default_factory=lambda: {
        "conv1d": ("conv_light", "bottleneck", "attention", "conv_heavy"),
        "mlp": ("lora", "mlp_small", "attention", "mlp")})
    # rotation order for the other host topologies: 1-D signals (conv1d), flat features (mlp)
    prune_penalty: float = 1.0
    # penalty added to a blueprint when its seed is pruned
    penalty_decay: float = 0.8
    # per-epoch decay of blueprint penalties
    failing_pp: float = -2.0
    # prune when improvement since germination stays below this ...
    failing_epochs: int = 5
    # ... after this many epochs
    fossilize_pp: float = 0.5
    # in HOLDING, fossilize when contribution exceeds this, else prune
    max_training_epochs: int = 10
    # prune a seed stuck in TRAINING (G2 failing) for this long
    hold_decide_epochs: int = 3
    # epochs in HOLDING before a non-contributing seed is pruned
    max_holding_epochs: int = 4
    # prune a seed whose fossilization keeps failing after this long in HOLDING
    slot_preference: str = "last"
    # which free slot to germinate into: 'last' (deepest) or 'first'
    ransomware_contribution_pp: float = 1.0
    # 'ransomware': contribution above this ...
    ransomware_total_pp: float = 0.0
    # ... while total improvement since germination is below this


@dataclass(frozen=True)
class TrainConfig:
    """The training loop (tolaria)."""

    epochs: int = 40
    # epochs to train
    host_lr: float = 3e-3
    # host AdamW learning rate
    seed_lr: float = 3e-3
    # seed AdamW learning rate
    weight_decay: float = 0.0
    # AdamW weight decay of host and seeds
    lr_schedule: str = "cosine"
    # 'cosine' (decay to lr_floor x lr over the run) or 'constant'
    lr_floor: float = 0.05
    # final learning-rate fraction of the cosine schedule
    seed_lr_scheduled: bool = False
    # seeds follow the host's schedule (True) or keep seed_lr (False: late seeds still learn)
    batch_stride: int = 20
    # emit batch metrics every k-th batch
    seed: int = 0
    # seed of torch.Generator for data order and model init
    device: str = "cpu"
    # 'cpu' or 'cuda'
    gates: GateConfig = field(default_factory=GateConfig)
    # quality gate thresholds
    gradients: GradientConfig = field(default_factory=GradientConfig)
    # gradient statistics
    slot: SlotConfig = field(default_factory=SlotConfig)
    # slot blending
    governor: GovernorConfig = field(default_factory=GovernorConfig)
    # loss watchdog
