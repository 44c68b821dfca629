"""SeedSlot: one injection point of the host, holding at most one seed and its lifecycle.

Isolation (review 001 §1.5): in TRAINING the seed always reads ``host.detach()``. From BLENDING
on, ``SlotConfig.isolate_blending`` decides; the default isolates CNN seeds and lets transformer
seeds co-adapt. With isolation on, the host layers before the slot receive only the (1 - alpha)
share of the gradient on the direct path, i.e. none at alpha = 1 (HOLDING); a FOSSILIZED seed is
part of the host and is never isolated, so the whole network trains again after fossilization.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from esper.kasmina.alpha import TEMPO_EPOCHS, AlphaController, AlphaMode
from esper.kasmina.blueprints import build_blueprint
from esper.kasmina.gradients import GradientStats, new_gradient_stats
from esper.kasmina.isolation import (
    blend_gate, blend_multiply, blend_with_isolation, leaves_outside, ste_forward,
)
from esper.kasmina.layouts import pool_channels, probe_shape
from esper.kasmina.protocol import InjectionSpec
from esper.leyline.config import GradientConfig, SlotConfig
from esper.leyline.stages import LIVE_STAGES, SEED_FORWARD_STAGES, SeedStage, check_transition
from esper.nissa.sink import NullSink, Sink

S = SeedStage
RAMP_STAGES = frozenset({S.BLENDING, S.HOLDING})
"""Stages in which alpha ticks once per epoch (and so may be retargeted)."""


@dataclass
class SeedRecord:
    """Bookkeeping of the seed in a slot: what the gates and the controller read."""

    seed_id: str
    blueprint: str
    params: int
    grad: GradientStats
    germinated_epoch: int = 0
    epochs_in_stage: int = 0
    acc_at_germination: float = 0.0
    acc_at_stage_start: float = 0.0
    loss_at_hold_start: float = float("nan")
    probe_ok: bool = False
    contribution: float | None = None
    contribution_se: float | None = None
    # standard error of the latest contribution, percentage points (paired over validation samples)
    contribution_epoch: int | None = None
    # epoch at whose end ``contribution`` was measured (None = never)
    contributions: list[float] = field(default_factory=list)
    panics_in_stage: int = 0
    isolation_violations: int = 0
    # training forwards in this stage in which the isolated seed's output reached a tensor other
    # than its own parameters (its autograd graph is walked each time; see SeedSlot._audited)


class GateNet(nn.Module):
    """Per-sample gate of the GATE blend: pool -> Linear(C, max(8, C/4)) -> ReLU -> Linear -> sigmoid."""

    def __init__(self, c: int, topology: str = "cnn") -> None:
        super().__init__()
        self.topology = topology
        self.fc = nn.Sequential(nn.Linear(c, max(8, c // 4)), nn.ReLU(), nn.Linear(max(8, c // 4), 1))

    def forward(self, x: Tensor) -> Tensor:
        g = torch.sigmoid(self.fc(pool_channels(self.topology, x)))  # (B, 1)
        return g.view(-1, *([1] * (x.dim() - 1)))  # (B, 1, ...) like x


class SeedSlot(nn.Module):
    """A slot: identity while DORMANT; STE while TRAINING; alpha-blend from BLENDING on."""

    def __init__(self, spec: InjectionSpec, topology: str, cfg: SlotConfig = SlotConfig(),
                 grad_cfg: GradientConfig = GradientConfig(), sink: Sink | None = None) -> None:
        super().__init__()
        self.slot_id, self.channels, self.topology = spec.slot_id, spec.channels, topology
        self.cfg, self.grad_cfg = cfg, grad_cfg
        self.sink: Sink = sink or NullSink()
        self.stage = S.DORMANT
        self.seed: nn.Module | None = None
        self.gate_net: nn.Module | None = None
        self.record: SeedRecord | None = None
        self.alpha = AlphaController(curve=cfg.curve)
        self.forced_alpha: float | None = None
        self.embargo_left = 0
        self.pending_prune: tuple[str, str] | None = None
        self.isolate = cfg.isolate_blending if cfg.isolate_blending is not None else topology == "cnn"

    # -- forward -----------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        if self.seed is None or self.stage not in SEED_FORWARD_STAGES:
            return x
        if self.stage is S.TRAINING:
            return ste_forward(x, self._audited(self.seed(x.detach())))
        alpha = self.alpha.alpha if self.forced_alpha is None else self.forced_alpha
        if alpha == 0.0:
            return x
        isolate = self.isolate and self.stage is not S.FOSSILIZED  # a fossil is part of the host
        s = self.seed(x.detach() if isolate else x)
        if isolate:
            s = self._audited(s)
        if self.cfg.blend == "multiply":
            return blend_multiply(x, s, alpha, x)
        if self.cfg.blend == "gate":
            return blend_gate(x, s, alpha, self.gate_net(x))
        return blend_with_isolation(x, s, alpha)

    def _audited(self, s: Tensor) -> Tensor:
        """Count an isolation violation when a training forward of an isolated seed reaches, in its
        autograd graph, any tensor but the seed's own parameters (the host's layers or features)."""
        if self.training and torch.is_grad_enabled() and not torch.compiler.is_compiling():
            own = {id(p) for p in self.seed_parameters()}
            if leaves_outside(s, own):
                self.record.isolation_violations += 1
        return s

    # -- queries -----------------------------------------------------------------------------

    @property
    def seed_id(self) -> str | None:
        return self.record.seed_id if self.record else None

    @property
    def is_live(self) -> bool:
        return self.stage in LIVE_STAGES

    def seed_parameters(self) -> list[nn.Parameter]:
        mods = [m for m in (self.seed, self.gate_net) if m is not None]
        return [p for m in mods for p in m.parameters() if p.requires_grad]

    # -- lifecycle ---------------------------------------------------------------------------

    def transition(self, target: SeedStage, reason: str = "") -> None:
        """Move to ``target`` (raises IllegalTransition) and tell the sink."""
        check_transition(self.stage, target)
        previous, self.stage = self.stage, target
        if self.record is not None:
            self.record.epochs_in_stage = 0
            self.record.panics_in_stage = 0
            self.record.isolation_violations = 0
            self.record.grad.new_window()
        self.sink.stage_changed(self.slot_id, self.seed_id, previous, target, reason)

    def germinate(self, seed_id: str, blueprint: str, epoch: int, acc: float,
                  device: torch.device | str = "cpu") -> None:
        """Build the seed, probe its shape, and enter GERMINATED. G0 is checked by the caller."""
        seed = build_blueprint(self.topology, blueprint, self.channels).to(device)
        self.seed = seed
        self.gate_net = GateNet(self.channels, self.topology).to(device) if self.cfg.blend == "gate" else None
        params = sum(p.numel() for p in self.seed_parameters())
        self.record = SeedRecord(seed_id, blueprint, params, new_gradient_stats(self.grad_cfg),
                                 germinated_epoch=epoch, acc_at_germination=acc, acc_at_stage_start=acc)
        self.record.probe_ok = self._probe(device)
        self.alpha = AlphaController(curve=self.cfg.curve)
        self.transition(S.GERMINATED, "G0 passed")
        self.sink.seed_germinated(self.slot_id, seed_id, blueprint, params, self.cfg.blend,
                                  self.cfg.tempo, TEMPO_EPOCHS[self.cfg.tempo])

    def _probe(self, device) -> bool:
        probe = torch.randn(probe_shape(self.topology, self.channels), device=device)
        was_training = self.seed.training
        self.seed.eval()
        with torch.no_grad():
            out = self.seed(probe)
        self.seed.train(was_training)
        return out.shape == probe.shape

    def enter(self, target: SeedStage, reason: str, acc: float, loss: float) -> None:
        """Enter TRAINING, BLENDING, HOLDING or FOSSILIZED (after the gates passed)."""
        self.transition(target, reason)
        self.record.acc_at_stage_start = acc
        if target is S.BLENDING and self.alpha.idle:
            self.alpha.retarget(self.cfg.alpha_target, TEMPO_EPOCHS[self.cfg.tempo], self.cfg.curve)
            self.tick_alpha()  # the first epoch of BLENDING already blends
        elif target is S.HOLDING:
            self.record.loss_at_hold_start = loss
        elif target is S.FOSSILIZED:
            self.alpha = AlphaController(alpha=1.0, start=1.0, target=1.0, curve=self.alpha.curve)
            self.sink.alpha_changed(self.slot_id, self.seed_id, self.alpha)

    def set_alpha_target(self, target: float, epochs: int = 1) -> bool:
        """Ramp alpha to ``target`` over ``epochs`` epochs along the seed's curve; only while the
        alpha controller is idle. The first step is taken now, so the next epoch already trains
        with it and the target holds from the ``epochs``-th epoch on. Returns True if it began."""
        if not self.alpha.idle or self.stage not in RAMP_STAGES:
            return False
        self.alpha.retarget(target, max(1, int(epochs)))
        self.tick_alpha()
        return True

    def tick_alpha(self) -> None:
        if self.alpha.step():
            self.sink.alpha_changed(self.slot_id, self.seed_id, self.alpha)

    def prune(self, reason: str, initiator: str, instant: bool = False) -> None:
        """Prune the seed; scheduled (alpha ramps down over cfg.prune_ticks) once it has blended."""
        if not self.is_live:
            raise RuntimeError(f"slot {self.slot_id}: cannot prune a seed in {self.stage.name}")
        if self.pending_prune and not instant:
            return  # already ramping down
        if not instant and self.cfg.prune_ticks > 0 and self.alpha.alpha > 0.0:
            self.pending_prune = (reason, initiator)
            self.alpha.mode = AlphaMode.HOLD  # a prune overrides any ramp in progress
            self.alpha.retarget(0.0, self.cfg.prune_ticks)
            self.sink.alpha_changed(self.slot_id, self.seed_id, self.alpha)
            return
        self._free(reason, initiator)

    def _free(self, reason: str, initiator: str) -> None:
        seed_id = self.seed_id
        self.transition(S.PRUNED, reason)
        self.seed, self.gate_net, self.record, self.pending_prune = None, None, None, None
        self.alpha = AlphaController(curve=self.cfg.curve)
        self.sink.seed_pruned(self.slot_id, seed_id, reason, initiator)

    def end_epoch(self) -> None:
        """Per-epoch tick: alpha ramps, stage counters, scheduled prunes, embargo and reset."""
        if self.record is not None and self.is_live:
            self.record.epochs_in_stage += 1
        if self.stage in RAMP_STAGES:
            self.tick_alpha()
        if self.pending_prune and self.alpha.idle:
            self._free(*self.pending_prune)
        elif self.stage is S.PRUNED:
            self.embargo_left = self.cfg.embargo_epochs
            self.transition(S.EMBARGOED, f"cool-down {self.cfg.embargo_epochs} epochs")
        elif self.stage is S.EMBARGOED:
            self.embargo_left -= 1
            if self.embargo_left <= 0:
                self.transition(S.RESETTING, "embargo over")
        elif self.stage is S.RESETTING:
            self.transition(S.DORMANT, "reset")
