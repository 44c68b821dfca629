"""A synthetic run generator: a realistic Esper log of any size, for viewer tests and benchmarks.

    python -m telemetry_schema.synth --out runs --events 100000 --seed 0
    python -m telemetry_schema.synth --out runs --live --epoch-seconds 0.5   # a slow live run

The run has several slots whose seeds walk full lifecycles (gates that fail then pass, alpha
ramps, gradient statistics, counterfactuals, fossilize and prune), a governor panic and a
rollback, controller decisions and heartbeats. The same seed gives the same log (timestamps
come from a simulated clock unless ``live``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from telemetry_schema import events as ev
from telemetry_schema.rundir import RunWriter, create_run
from telemetry_schema.writer import WriterConfig

BLUEPRINTS = ("conv_light", "attention", "depthwise", "bottleneck", "conv_heavy")


@dataclass
class SynthConfig:
    events: int = 20_000
    """Approximate number of events to write."""
    seed: int = 0
    """Random seed: the same seed gives the same log."""
    slots: int = 3
    """Number of seed slots."""
    batches_per_epoch: int = 50
    """Training batches per epoch (one batch_metrics event each)."""
    grad_stride: int = 10
    """Batches between gradient_stats events of each live seed."""
    run_id: str = "synth-run"
    """Run directory name under the output directory."""
    live: bool = False
    """Use the real clock and sleep ``epoch_seconds`` per epoch (a slowly growing log)."""
    epoch_seconds: float = 0.5
    """Wall seconds per simulated epoch in live mode."""
    finish: bool = True
    """Write run_finished at the end (False leaves a log that looks crashed)."""
    max_epochs: int | None = None
    """Stop after this many epochs even if fewer events were written."""


class SimClock:
    """A deterministic clock advanced by the generator."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass
class _Slot:
    slot_id: str
    seed_id: str | None = None
    stage: str = "DORMANT"
    since: int = 0
    alpha: float = 0.0
    blueprint: str = ""
    quality: float = 0.0
    n_seeds: int = 0
    history: list = field(default_factory=list)


class SynthRun:
    def __init__(self, out: Path, cfg: SynthConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.clock = None if cfg.live else SimClock(1_700_000_000.0 + cfg.seed * 86_400)
        kwargs = {} if cfg.live else {"clock": self.clock, "wall_clock": self.clock}
        slot_ids = [f"r0c{i}" for i in range(cfg.slots)]
        started = ev.RunStarted(
            run_id=cfg.run_id, task="synthetic-images", topology="cnn", host_params=6_400,
            slot_ids=slot_ids, config_json=json.dumps({"synthetic": True, "seed": cfg.seed}),
            python_version=sys.version.split()[0], torch_version="", device="cpu",
            heartbeat_s=1.0 if cfg.live else 5.0)
        self.rw: RunWriter = create_run(out, started, config=WriterConfig(heartbeat_s=1.0 if cfg.live else 0),
                                        **kwargs)
        self.w = self.rw.writer
        self.slots = [_Slot(s) for s in slot_ids]
        self.acc = 30.0
        self.loss = 2.3
        self.bonus = 0.0
        self.consecutive_panic = 0
        self.next_beat = 0.0
        self.emitted = 1  # run_started

    def emit(self, event: ev.Event, **envelope) -> None:
        self.emitted += 1
        self.w.emit(event, **envelope)

    def tick(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.now += seconds

    def run(self) -> RunWriter:
        # About 150 epochs whatever the size: bigger logs get longer epochs.
        self.cfg.batches_per_epoch = max(self.cfg.batches_per_epoch, self.cfg.events // 160)
        epoch = 0
        while self.emitted < self.cfg.events:
            if self.cfg.max_epochs is not None and epoch >= self.cfg.max_epochs:
                break
            epoch += 1
            self.epoch(epoch)
            if self.cfg.live:
                time.sleep(self.cfg.epoch_seconds)
        if self.cfg.finish:
            self.rw.close("completed")
        else:
            self.w.flush()
        return self.rw

    # -- one epoch --------------------------------------------------------------------------

    def epoch(self, e: int) -> None:
        w, rng, cfg = self.w, self.rng, self.cfg
        w.epoch = e
        for b in range(cfg.batches_per_epoch):
            w.step += 1
            self.tick(0.02)
            self.loss = max(0.3, self.loss * 0.998 + rng.gauss(0, 0.01))
            self.emit(ev.BatchMetrics(loss=self.loss + rng.gauss(0, 0.05), lr=0.01 * 0.99 ** e,
                                   samples_per_s=6_400 + rng.gauss(0, 200)))
            if b % cfg.grad_stride == 0:
                for s in self.slots:
                    if s.stage in ("TRAINING", "BLENDING", "HOLDING"):
                        self.grads(s)
            if self.clock is not None and self.clock.now >= self.next_beat:
                self.emit(ev.Heartbeat(events_emitted=self.emitted))
                self.next_beat = self.clock.now + 5.0
        self.lifecycle(e)
        self.governor(e)
        self.acc = min(95.0, self.acc + 1.5 * math.exp(-e / 30) + rng.gauss(0, 0.3))
        val_acc = self.acc + self.bonus
        params = 6_400 + sum(1_200 for s in self.slots if s.stage in ("FOSSILIZED", "TRAINING",
                                                                       "BLENDING", "HOLDING"))
        self.emit(ev.EpochCompleted(
            train_loss=self.loss, train_acc=val_acc + 2, val_loss=self.loss * 1.05, val_acc=val_acc,
            per_class_acc=[max(0.0, min(100.0, val_acc + rng.gauss(0, 5))) for _ in range(10)],
            host_params=6_400, total_params=params, seconds=1.0))

    def grads(self, s: _Slot) -> None:
        learning = s.quality > 0
        seed_norm = abs(self.rng.gauss(0.3 if learning else 0.01, 0.05))
        host_norm = abs(self.rng.gauss(1.0, 0.1))
        ratio = min(10.0, seed_norm / host_norm * 2.0)
        self.emit(ev.GradientStats(seed_norm=seed_norm, host_norm=host_norm, ratio=ratio,
                                     health=0.95 if learning else 0.6, vanishing=not learning,
                                     exploding=False), slot=s.slot_id, seed=s.seed_id)

    def move(self, s: _Slot, to: str, e: int, reason: str) -> None:
        self.emit(ev.StageChanged(from_stage=s.stage, to_stage=to, reason=reason),
                    slot=s.slot_id, seed=s.seed_id)
        s.stage, s.since = to, e

    def gate(self, s: _Slot, gate: str, target: str, checks: list[tuple[str, bool]]) -> bool:
        passed = all(ok for _, ok in checks)
        self.emit(ev.GateEvaluated(gate=gate, target_stage=target, passed=passed,
                                     checks_passed=[c for c, ok in checks if ok],
                                     checks_failed=[c for c, ok in checks if not ok]),
                    slot=s.slot_id, seed=s.seed_id)
        return passed

    def decide(self, op: str, s: _Slot | None, reason: str, blueprint: str | None = None) -> None:
        self.emit(ev.ControllerDecision(controller="heuristic", op=op, blueprint=blueprint, reason=reason),
                    slot=s.slot_id if s else None, seed=s.seed_id if s else None)

    def lifecycle(self, e: int) -> None:
        rng = self.rng
        live = [s for s in self.slots if s.stage not in ("DORMANT", "FOSSILIZED")]
        free = [s for s in self.slots if s.stage == "DORMANT"]
        if not live and free and e % 4 == 1:
            s = free[0]
            s.n_seeds += 1
            s.seed_id = f"{s.slot_id}-seed{s.n_seeds}"
            s.blueprint = BLUEPRINTS[(s.n_seeds + len(self.slots)) % len(BLUEPRINTS)]
            s.quality = rng.choice([1.5, 2.5, -0.5, 0.0])
            self.decide("GERMINATE", s, "plateau: acc +0.2pp over 3 epochs", s.blueprint)
            self.gate(s, "G0", "GERMINATED", [("seed_id_known", True), ("slot_empty", True)])
            self.emit(ev.SeedGerminated(blueprint=s.blueprint, params=1_200, blend="add", tempo="standard",
                                     blend_epochs=5), slot=s.slot_id, seed=s.seed_id)
            self.move(s, "GERMINATED", e, "G0 passed")
            return
        if not live:
            self.decide("WAIT", None, "host still improving")
            return
        for s in live:
            self.advance(s, e)

    def advance(self, s: _Slot, e: int) -> None:
        age = e - s.since
        if s.stage == "GERMINATED":
            if self.gate(s, "G1", "TRAINING", [("shape_preserved", True), ("stage_germinated", True)]):
                self.move(s, "TRAINING", e, "G1 passed")
        elif s.stage == "TRAINING":
            learning = s.quality > 0
            ok = age >= 3 and learning
            self.gate(s, "G2", "BLENDING", [
                (f"epochs_in_stage_{age}", age >= 3),
                ("seed_gradient_ok" if learning else "seed_gradient_low_0.01", learning),
                ("gradient_health_ok" if learning else "gradient_health_low_0.60", learning)])
            if ok:
                self.decide("ADVANCE", s, "G2 passed")
                self.move(s, "BLENDING", e, "G2 passed")
            elif age >= 6:
                self.prune(s, e, "no improvement after 6 epochs")
        elif s.stage == "BLENDING":
            s.alpha = min(1.0, s.alpha + 0.2)
            self.emit(ev.AlphaChanged(value=s.alpha, target=1.0, mode="up" if s.alpha < 1 else "hold",
                                        curve="linear"), slot=s.slot_id, seed=s.seed_id)
            self.counterfactual(s)
            done = s.alpha >= 1.0
            self.gate(s, "G3", "HOLDING", [("alpha_at_target", done), ("alpha_idle", done)])
            if done:
                self.move(s, "HOLDING", e, "G3 passed")
        elif s.stage == "HOLDING":
            contrib = self.counterfactual(s)
            if age >= 2:
                ok = self.gate(s, "G5", "FOSSILIZED", [
                    ("contribution_measured", True),
                    (f"contribution_{contrib:.2f}pp" if contrib >= 1 else f"contribution_low_{contrib:.2f}pp",
                     contrib >= 1.0)])
                if ok:
                    self.decide("FOSSILIZE", s, f"contribution {contrib:.2f}pp > 0.5")
                    self.move(s, "FOSSILIZED", e, "G5 passed")
                    self.emit(ev.SeedFossilized(reason=f"G5 passed, contribution {contrib:.2f}pp",
                                                  initiator="heuristic", params=1_200),
                                slot=s.slot_id, seed=s.seed_id)
                    self.bonus += contrib
                    self.emit(ev.GovernorSnapshot(reason="fossilized", tensors=24))
                else:
                    self.prune(s, e, f"contribution {contrib:.2f}pp too low")
        elif s.stage == "PRUNED":
            self.move(s, "EMBARGOED", e, "cool down")
        elif s.stage == "EMBARGOED" and age >= 3:
            self.move(s, "RESETTING", e, "embargo over")
        elif s.stage == "RESETTING":
            self.move(s, "DORMANT", e, "reset")
            s.seed_id, s.alpha = None, 0.0

    def counterfactual(self, s: _Slot) -> float:
        contrib = s.quality * s.alpha + self.rng.gauss(0, 0.2)
        real = self.acc + self.bonus + contrib
        self.emit(ev.Counterfactual(real_acc=real, off_acc=real - contrib, contribution=contrib),
                    slot=s.slot_id, seed=s.seed_id)
        return contrib

    def prune(self, s: _Slot, e: int, reason: str, initiator: str = "heuristic") -> None:
        if initiator == "heuristic":
            self.decide("PRUNE", s, reason)
        self.move(s, "PRUNED", e, reason)
        self.emit(ev.SeedPruned(reason=reason, initiator=initiator), slot=s.slot_id, seed=s.seed_id)
        s.alpha = 0.0
        self.emit(ev.AlphaChanged(value=0.0, target=0.0, mode="hold", curve="linear"),
                    slot=s.slot_id, seed=s.seed_id)

    def governor(self, e: int) -> None:
        if e % 5 == 0:
            self.emit(ev.GovernorSnapshot(reason="periodic", tensors=24))
        if e % 23 == 0:  # a lone statistical anomaly
            self.emit(ev.GovernorPanic(reason="statistical", loss=self.loss * 8, threshold=self.loss * 3,
                                         mean=self.loss, std=0.05, consecutive=1))
        if e % 37 == 0:  # three in a row: rollback
            for c in (1, 2, 3):
                self.emit(ev.GovernorPanic(reason="nan" if c == 1 else "statistical", loss=float("nan") if c == 1
                                             else self.loss * 9, threshold=self.loss * 3, mean=self.loss,
                                             std=0.05, consecutive=c))
            pruned = [s for s in self.slots if s.stage in ("GERMINATED", "TRAINING", "BLENDING", "HOLDING")]
            self.emit(ev.GovernorRollback(to_epoch=e - e % 5, seeds_pruned=[s.seed_id for s in pruned],
                                            reason="3 consecutive anomalies"))
            for s in pruned:
                self.prune(s, e, "governor rollback", initiator="governor")


def generate(out: str | Path, cfg: SynthConfig | None = None) -> Path:
    """Write a synthetic run under ``out`` and return its run directory."""
    cfg = cfg or SynthConfig()
    return SynthRun(Path(out), cfg).run().run_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m telemetry_schema.synth", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs", help="directory to create the run directory in")
    p.add_argument("--events", type=int, default=SynthConfig.events, help="approximate events to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same log)")
    p.add_argument("--slots", type=int, default=3, help="number of seed slots")
    p.add_argument("--run-id", default=None, help="run directory name (default synth-<seed>-<events>)")
    p.add_argument("--live", action="store_true", help="real clock, sleep between epochs")
    p.add_argument("--epoch-seconds", type=float, default=0.5, help="seconds per epoch with --live")
    p.add_argument("--no-finish", action="store_true", help="leave the run unfinished (looks crashed)")
    a = p.parse_args(argv)
    if a.events < 1 or a.slots < 1:
        p.error("--events and --slots must be positive")
    cfg = SynthConfig(events=a.events, seed=a.seed, slots=a.slots, live=a.live, epoch_seconds=a.epoch_seconds,
                      run_id=a.run_id or f"synth-{a.seed}-{a.events}", finish=not a.no_finish)
    try:
        run_dir = generate(a.out, cfg)
    except (FileExistsError, ValueError) as exc:
        sys.stderr.write(f"synth: {exc}\n")
        return 2
    sys.stdout.write(f"{run_dir}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
