"""One log directory holding a run of every shape both viewers must agree on, written like real
runs (create_run, EventWriter) under simulated clocks: finished, interrupted, live, crashed, a
PPO run of two environments, a 2-rank run, and a run of 100k batch losses with one spike.

Seen at ``NOW``: the live run's last event is seconds old, the crashed one's hours old.
"""

from __future__ import annotations

from pathlib import Path

from telemetry_schema import events as ev
from telemetry_schema.rundir import create_run
from telemetry_schema.writer import WriterConfig
from tests.dashboard.multistream import _kill
from tests.telemetry.export_runs import T0, Clock, ddp_run, ppo_run

NOW = T0 + 3 * 3600.0
"""The wall time both viewers judge the runs at."""
SPIKE_AT, SPIKE = 61_234, 50.0
BATCHES = 100_000
RUNS = ("finished", "interrupted", "live", "crashed", "ppo", "ddp", "spike")


def _run(root: Path, run_id: str, start: float, epochs: int, steps: int = 4, spike: bool = False):
    clock = Clock()
    started = ev.RunStarted(run_id=run_id, task="synthetic-images", topology="cnn", host_params=1000,
                            slot_ids=["s0"], config_json='{"lr": 0.1, "run": "%s"}' % run_id, planned_epochs=10,
                            heartbeat_s=5.0)
    run = create_run(root, started, clock=clock, wall_clock=lambda: start + clock.t,
                     config=WriterConfig(heartbeat_s=0, flush_interval=3600))
    w = run.writer
    per_epoch = BATCHES // epochs if spike else steps
    for epoch in range(1, epochs + 1):
        w.epoch = epoch
        for _ in range(per_epoch):
            w.step += 1
            clock.t += 0.001 if spike else 0.5
            loss = SPIKE if spike and w.step == SPIKE_AT else 1.0
            w.emit(ev.BatchMetrics(loss=loss, lr=0.1, samples_per_s=100.0))
        if epoch == 2:
            w.emit(ev.SeedGerminated(blueprint="conv_light", params=664), slot="s0", seed="seed1")
            w.emit(ev.GateEvaluated(gate="G1", target_stage="TRAINING", passed=True, checks_passed=["shape_ok"],
                                    checks_failed=[]), slot="s0", seed="seed1")
        if epoch >= 2:
            w.emit(ev.AlphaChanged(value=min(1.0, 0.25 * (epoch - 1)), target=1.0, mode="up"), slot="s0",
                   seed="seed1")
        w.emit(ev.EpochCompleted(train_loss=1.0 / epoch, train_acc=50.0 + epoch, val_loss=1.5 / epoch,
                                 val_acc=40.0 + epoch, total_params=1664, host_params=1000))
        w.emit(ev.SystemMetrics(cpu_percent=90.0 + epoch, rss_bytes=10**9 + epoch * 10**8))
        w.log("info", f"epoch {epoch} reason: 0.5 done")
        w.flush()
    return run, clock


def _killed(run) -> None:
    """The writer stops as a killed process's does: no run_finished, and no summary file
    written at a close (this writer's clock never reached its first periodic summary)."""
    _kill(run)
    (run.run_dir / "summary.json").unlink(missing_ok=True)


def write_all(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    run, _ = _run(root, "finished", T0, 5)
    run.close()
    run, _ = _run(root, "interrupted", T0, 3)
    run.close(status="interrupted", reason="SIGTERM")
    run, _ = _run(root, "live", NOW - 8.0, 3)  # its last event comes 2 s before NOW
    _killed(run)
    run, _ = _run(root, "crashed", T0, 3)  # silent for hours at NOW
    _killed(run)
    run, _ = _run(root, "spike", T0, 10, spike=True)
    run.close()
    ppo_run(root, "ppo")
    ddp_run(root, "ddp")
    return root

