"""The event catalogue: one frozen dataclass per telemetry event kind.

Each class is the single definition of its kind. The Arrow schema (``schema.py``), the
documentation (``README.md``) and the reader's conversion back to Python objects are all
derived from these classes. Every field carries its documentation in ``metadata["doc"]``.

Fields shared by every event (sequence number, times, rank, environment, epoch, step, slot,
seed) live in the *envelope*, not here: see ``schema.ENVELOPE``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar


def doc(text: str, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field documented by ``text`` (kept in the field's metadata)."""
    if isinstance(default, (list, dict)):
        factory = (lambda d=default: type(d)(d))
        return dataclasses.field(default_factory=factory, metadata={"doc": text})
    return dataclasses.field(default=default, metadata={"doc": text})


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event kind. ``KIND`` names the kind's stream in a log; ``SLOTTED`` kinds
    concern one slot and carry the envelope's slot and seed columns; ``RUN_WIDE`` kinds
    concern the whole process and carry no environment, epoch or step."""

    KIND: ClassVar[str] = ""
    SLOTTED: ClassVar[bool] = False
    RUN_WIDE: ClassVar[bool] = False


# --- run ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    """The run began. Always the first event of a stream."""

    KIND: ClassVar[str] = "run_started"
    RUN_WIDE: ClassVar[bool] = True
    run_id: str = doc("Run identifier; also the run directory's name.")
    task: str = doc("Task name, e.g. 'synthetic-images', 'cifar10', 'pydoc-text'.")
    topology: str = doc("Host topology: 'cnn' or 'transformer'.")
    host_params: int = doc("Trainable parameters of the host network at start.")
    slot_ids: list[str] = doc("Identifiers of the host's seed slots, in forward order.", [])
    config_json: str = doc("The full run configuration, serialised as JSON.", "{}")
    python_version: str = doc("Python version of the training process.", "")
    torch_version: str = doc("PyTorch version, empty when torch is not used.", "")
    device: str = doc("Device the model trains on, e.g. 'cpu', 'cuda:0'.", "cpu")
    world_size: int = doc("Number of distributed ranks (1 for a single process).", 1)
    num_envs: int = doc("Number of vectorised environments (1 for plain training).", 1)
    heartbeat_s: float = doc("Seconds between heartbeats; viewers judge staleness by it.", 5.0)
    planned_epochs: int = doc("Epochs the run is set to train (0 when not known): progress and time left.", 0)


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    """The run ended. A clean end is always this event, never inferred from end-of-file."""

    KIND: ClassVar[str] = "run_finished"
    RUN_WIDE: ClassVar[bool] = True
    status: str = doc("'completed', 'failed' or 'interrupted'.")
    reason: str = doc("Human-readable reason, e.g. the exception text of a failed run.", "")


@dataclass(frozen=True, slots=True)
class Heartbeat(Event):
    """The process is alive. Emitted every ``RunStarted.heartbeat_s`` seconds."""

    KIND: ClassVar[str] = "heartbeat"
    RUN_WIDE: ClassVar[bool] = True
    events_emitted: int = doc("Events emitted by this writer so far.")
    backpressure_waits: int = doc("Times an emit had to wait because the buffer bound was hit.", 0)


@dataclass(frozen=True, slots=True)
class LogMessage(Event):
    """A free-form message for anything that has no kind of its own."""

    KIND: ClassVar[str] = "log"
    level: str = doc("'debug', 'info', 'warning' or 'error'.")
    text: str = doc("The message.")


@dataclass(frozen=True, slots=True)
class SystemMetrics(Event):
    """The machine and the training process, sampled at the heartbeat's cadence."""

    KIND: ClassVar[str] = "system"
    cpu_percent: float = doc("CPU use of the training process since the last sample, percent of one core.")
    cpu_total_percent: float = doc("CPU use of the whole machine since the last sample, percent of all cores.", 0.0)
    rss_bytes: int = doc("Resident memory of the training process, bytes.", 0)
    mem_used_bytes: int = doc("Memory in use on the machine, bytes.", 0)
    mem_total_bytes: int = doc("Memory of the machine, bytes.", 0)
    gpu_util_percent: float | None = doc("GPU utilisation over the last sample period, percent (null: no GPU or no NVML).", None)
    gpu_mem_used_bytes: int | None = doc("GPU memory in use, bytes (null: no GPU).", None)
    gpu_mem_total_bytes: int | None = doc("GPU memory in all, bytes (null: no GPU).", None)


# --- metrics -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Scalar(Event):
    """A named scalar metric, e.g. 'train/grad_norm' (the TensorBoard add_scalar analogue)."""

    KIND: ClassVar[str] = "scalar"
    name: str = doc("Namespaced metric name, e.g. 'seed/alpha', 'ppo/approx_kl'.")
    value: float = doc("The value (NaN and Inf are kept).")


@dataclass(frozen=True, slots=True)
class BatchMetrics(Event):
    """Training metrics of one batch, emitted every k-th batch (the batch stride)."""

    KIND: ClassVar[str] = "batch_metrics"
    loss: float = doc("Training loss of the batch.")
    lr: float = doc("Host learning rate in force for the batch.")
    samples_per_s: float = doc("Training throughput over the last stride, samples per second.")


@dataclass(frozen=True, slots=True)
class EpochCompleted(Event):
    """One epoch of training and its validation finished."""

    KIND: ClassVar[str] = "epoch_completed"
    train_loss: float = doc("Mean training loss over the epoch.")
    train_acc: float = doc("Training accuracy over the epoch, percent (token accuracy for LM tasks).")
    val_loss: float = doc("Validation loss.")
    val_acc: float = doc("Validation accuracy, percent.")
    perplexity: float | None = doc("exp(val_loss) clamped at exp(20) for language tasks, else null.", None)
    per_class_acc: list[float] = doc("Validation accuracy per class, percent (empty for LM tasks).", [])
    host_params: int = doc("Trainable parameters of the host alone.", 0)
    total_params: int = doc("Trainable parameters of host plus live and fossilized seeds.", 0)
    seconds: float = doc("Wall seconds the epoch took, validation included.", 0.0)
    forward_flops: int = doc("Forward FLOPs per sample of the model as it trained this epoch "
                             "(host and seeds in the forward pass; products, convolutions and "
                             "attention, a multiply-add = 2).", 0)
    flops_train: int = doc("FLOPs of this epoch's training passes, forward and backward (this rank's batches).", 0)
    flops_val: int = doc("FLOPs of this epoch's validation pass.", 0)
    flops_counterfactual: int = doc("FLOPs of this epoch's counterfactual passes (a slot forced off).", 0)
    flops_host: int = doc("The host's share of flops_train + flops_val + flops_counterfactual.", 0)
    flops_cumulative: int = doc("Training, validation and counterfactual FLOPs of the run so far, this "
                                "epoch included: the compute axis to compare runs on.", 0)


# --- seeds -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SeedGerminated(Event):
    """A seed was created in a slot (envelope slot and seed are set)."""

    KIND: ClassVar[str] = "seed_germinated"
    SLOTTED: ClassVar[bool] = True
    blueprint: str = doc("Blueprint name, e.g. 'conv_light', 'lora'.")
    params: int = doc("Trainable parameters of the seed.")
    blend: str = doc("Blend operator: 'add', 'multiply' or 'gate'.", "add")
    tempo: str = doc("Blend tempo: 'fast', 'standard' or 'slow'.", "standard")
    blend_epochs: int = doc("Epochs the alpha ramp will take at this tempo.", 5)


@dataclass(frozen=True, slots=True)
class StageChanged(Event):
    """A seed moved between lifecycle stages."""

    KIND: ClassVar[str] = "stage_changed"
    SLOTTED: ClassVar[bool] = True
    from_stage: str = doc("Stage left, e.g. 'TRAINING'.")
    to_stage: str = doc("Stage entered, e.g. 'BLENDING'.")
    reason: str = doc("Why: the gate passed, the controller's op, a governor rollback, ...", "")


@dataclass(frozen=True, slots=True)
class GateEvaluated(Event):
    """A quality gate was evaluated for a seed."""

    KIND: ClassVar[str] = "gate_evaluated"
    SLOTTED: ClassVar[bool] = True
    gate: str = doc("'G0' to 'G5'.")
    target_stage: str = doc("The stage the gate guards entry to.")
    passed: bool = doc("Whether every check passed.")
    checks_passed: list[str] = doc("Short codes of the checks that passed, verbatim.", [])
    checks_failed: list[str] = doc("Short codes of the checks that failed, e.g. 'seed_gradient_low_0.02'.", [])


@dataclass(frozen=True, slots=True)
class AlphaChanged(Event):
    """The blending alpha of a slot ticked or was retargeted."""

    KIND: ClassVar[str] = "alpha"
    SLOTTED: ClassVar[bool] = True
    value: float = doc("Alpha now, in [0, 1].")
    target: float = doc("Alpha the controller is moving toward.")
    mode: str = doc("'hold', 'up' or 'down'.")
    curve: str = doc("Ramp curve: 'linear', 'cosine', 'sigmoid', 'tanh'.", "linear")


@dataclass(frozen=True, slots=True)
class GradientStats(Event):
    """Gradient statistics of a live seed, collected on the gradient stride."""

    KIND: ClassVar[str] = "gradient_stats"
    SLOTTED: ClassVar[bool] = True
    seed_norm: float = doc("L2 norm of the seed's gradients (before clipping).")
    host_norm: float = doc("L2 norm of the host's gradients (before clipping).")
    ratio: float | None = doc("Bias-corrected EMA of the parameter-normalised ratio; null when unmeasurable.", None)
    health: float = doc("Gradient health in [0, 1] (1 = no vanishing or exploding tensors).", 1.0)
    vanishing: bool = doc("Some seed tensor had a gradient norm below 1e-7.", False)
    exploding: bool = doc("Some seed tensor had a gradient norm above 10 or non-finite.", False)


@dataclass(frozen=True, slots=True)
class Counterfactual(Event):
    """Counterfactual attribution: accuracy with the slot on vs forced off."""

    KIND: ClassVar[str] = "counterfactual"
    SLOTTED: ClassVar[bool] = True
    real_acc: float = doc("Validation accuracy with the seed as it is, percent.")
    off_acc: float = doc("Validation accuracy with the slot's alpha forced to 0, percent.")
    contribution: float = doc("real_acc - off_acc, percentage points.")
    contribution_se: float | None = doc("Standard error of the contribution, percentage points: of the "
                                        "per-sample paired differences on the validation set.", None)


@dataclass(frozen=True, slots=True)
class SeedFossilized(Event):
    """A seed became a permanent part of the host."""

    KIND: ClassVar[str] = "seed_fossilized"
    SLOTTED: ClassVar[bool] = True
    reason: str = doc("Why it was fossilized, e.g. 'G5 passed, contribution 2.1pp'.")
    initiator: str = doc("'policy', 'heuristic' or 'governor'.")
    params: int = doc("Parameters the host gained.", 0)


@dataclass(frozen=True, slots=True)
class SeedPruned(Event):
    """A seed was removed."""

    KIND: ClassVar[str] = "seed_pruned"
    SLOTTED: ClassVar[bool] = True
    reason: str = doc("Why it was pruned.")
    initiator: str = doc("'policy', 'heuristic' or 'governor'.")


# --- governor ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GovernorPanic(Event):
    """The governor judged a validation loss anomalous."""

    KIND: ClassVar[str] = "governor_panic"
    reason: str = doc("'nan', 'inf', 'lobotomy' or 'statistical'.")
    loss: float = doc("The loss that triggered the panic.")
    threshold: float = doc("The threshold it crossed (NaN when not applicable).")
    mean: float = doc("Mean of the loss history.")
    std: float = doc("Standard deviation of the loss history.")
    consecutive: int = doc("Consecutive anomalies so far, this one included.")


@dataclass(frozen=True, slots=True)
class GovernorSnapshot(Event):
    """The governor saved a known-good snapshot (on CPU)."""

    KIND: ClassVar[str] = "governor_snapshot"
    reason: str = doc("'periodic' or 'fossilized'.")
    tensors: int = doc("Tensors in the snapshot.", 0)


@dataclass(frozen=True, slots=True)
class GovernorRollback(Event):
    """The governor restored its last snapshot."""

    KIND: ClassVar[str] = "governor_rollback"
    to_epoch: int = doc("Epoch the restored snapshot was taken at.")
    seeds_pruned: list[str] = doc("Seed ids pruned by the rollback.", [])
    reason: str = doc("What triggered it.", "")


# --- controller and learning -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ControllerDecision(Event):
    """The controller chose an action (envelope slot set when the action targets one)."""

    KIND: ClassVar[str] = "controller_decision"
    SLOTTED: ClassVar[bool] = True
    controller: str = doc("'heuristic', 'policy' or 'none'.")
    op: str = doc("'WAIT', 'GERMINATE', 'SET_ALPHA_TARGET', 'PRUNE', 'FOSSILIZE' or 'ADVANCE'.")
    blueprint: str | None = doc("Blueprint for GERMINATE, else null.", None)
    reason: str = doc("The heuristic's reason text (empty for a policy).", "")
    action_probs: dict[str, float] = doc("A policy's probability of each op (empty for the heuristic).", {})
    value: float | None = doc("A policy's value estimate, else null.", None)
    blend: str | None = doc("GERMINATE: the blend operator chosen for the seed, else null (the slot's own).", None)
    tempo: str | None = doc("GERMINATE: the blend tempo chosen for the seed, else null (the slot's own).", None)
    curve: str | None = doc("GERMINATE: the alpha curve chosen for the seed, else null (the slot's own).", None)
    alpha_target: float | None = doc("SET_ALPHA_TARGET: the new alpha target, else null.", None)
    alpha_steps: int | None = doc("SET_ALPHA_TARGET: epochs the ramp to the target takes, else null.", None)


@dataclass(frozen=True, slots=True)
class PPOUpdate(Event):
    """One PPO update of the controller policy."""

    KIND: ClassVar[str] = "ppo_update"
    policy_loss: float = doc("Clipped surrogate loss.")
    value_loss: float = doc("Clipped value loss.")
    entropy: float = doc("Mean entropy over the relevant heads.")
    approx_kl: float = doc("Approximate KL divergence old -> new policy.")
    clip_fraction: float = doc("Share of ratios outside the clip range.")
    explained_variance: float = doc("1 - Var(returns - values) / Var(returns).")
    lr: float = doc("Policy learning rate.")
    head_entropy: dict[str, float] = doc("Entropy of each action head.", {})
    early_stopped: bool = doc("The approximate-KL early stop ended the update.", False)


@dataclass(frozen=True, slots=True)
class Reward(Event):
    """Reward of one environment step, total and by component."""

    KIND: ClassVar[str] = "reward"
    total: float = doc("Sum of the components.")
    components: dict[str, float] = doc("Each component by name, e.g. 'attribution', 'rent'.", {})


EVENT_TYPES: tuple[type[Event], ...] = (
    RunStarted, RunFinished, Heartbeat, LogMessage, SystemMetrics,
    Scalar, BatchMetrics, EpochCompleted,
    SeedGerminated, StageChanged, GateEvaluated, AlphaChanged, GradientStats, Counterfactual,
    SeedFossilized, SeedPruned,
    GovernorPanic, GovernorSnapshot, GovernorRollback,
    ControllerDecision, PPOUpdate, Reward,
)
KINDS: dict[str, type[Event]] = {cls.KIND: cls for cls in EVENT_TYPES}


def field_docs(cls: type[Event]) -> list[tuple[str, str]]:
    """(name, doc) of each payload field of an event class, in order."""
    return [(f.name, f.metadata.get("doc", "")) for f in dataclasses.fields(cls)]
