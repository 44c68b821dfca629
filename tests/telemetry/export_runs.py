"""Run directories for the export tests, written like real runs (create_run, EventWriter)
under a simulated clock: a single-process run holding every awkward value (NaN, infinities,
nulls, lists, maps, text with commas, quotes and newlines), a 2-rank run whose ranks
interleave in time, a PPO run of two environments, and ways to tear or corrupt a stream."""

from __future__ import annotations

import math
from pathlib import Path

from telemetry_schema import events as ev
from telemetry_schema.reader import EVENTS_DIR
from telemetry_schema.rundir import create_run
from telemetry_schema.writer import WriterConfig

T0 = 1_700_000_000.0
EPOCHS = 3
STEPS = 4  # per epoch
CONFIG = '{"lr": 0.1, "name": "export test", "layers": [1, 2]}'


class Clock:
    """The writer's clock: it stands still until the test moves it."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _open(root: Path, run_id: str, rank: int = 0, world_size: int = 1, num_envs: int = 1, offset: float = 0.0):
    clock = Clock()
    started = ev.RunStarted(run_id=run_id, task="synthetic-images", topology="cnn", host_params=1000,
                            slot_ids=["s0", "s1"], config_json=CONFIG, world_size=world_size,
                            num_envs=num_envs, planned_epochs=EPOCHS, python_version="3.x")
    run = create_run(root, started, rank=rank, clock=clock, wall_clock=lambda: T0 + offset,
                     config=WriterConfig(heartbeat_s=0, flush_interval=3600))
    return run, clock


def single_run(root: Path, run_id: str = "single") -> Path:
    """One process, EPOCHS epochs of STEPS steps, one flush per epoch."""
    run, clock = _open(root, run_id)
    w = run.writer
    for epoch in range(1, EPOCHS + 1):
        w.epoch = epoch
        for _ in range(STEPS):
            w.step += 1
            clock.t += 0.25
            w.emit(ev.BatchMetrics(loss=2.0 / w.step, lr=0.1, samples_per_s=100.0 + w.step))
            w.scalar("train/grad_norm", {5: math.nan, 6: math.inf, 7: -math.inf}.get(w.step, 1.0 / w.step))
        w.emit(ev.SystemMetrics(cpu_percent=50.0 + epoch, rss_bytes=10**9 + epoch))
        w.emit(ev.GateEvaluated(gate="G1", target_stage="TRAINING", passed=epoch % 2 == 0,
                                checks_passed=["shape_ok", 'quote"d'], checks_failed=[] if epoch % 2 == 0 else ["low,grad"]),
               slot="s0", seed="s0-a")
        w.emit(ev.AlphaChanged(value=0.25 * epoch, target=1.0, mode="up"), slot="s0", seed="s0-a")
        w.emit(ev.GradientStats(seed_norm=0.5, host_norm=1.0, ratio=None if epoch == 1 else 0.5 * epoch), slot="s0",
               seed="s0-a")
        w.emit(ev.ControllerDecision(controller="policy", op="WAIT", reason="",
                                     action_probs={"WAIT": 0.75, "GERMINATE": 0.25 if epoch != 2 else math.nan},
                                     value=None if epoch == 1 else 0.5), slot=None)
        w.emit(ev.Reward(total=0.5 * epoch, components={"rent": -0.1 * epoch, "attribution": 0.6 * epoch}))
        w.emit(ev.PPOUpdate(policy_loss=0.1, value_loss=0.2, entropy=1.0 + epoch, approx_kl=0.01, clip_fraction=0.1,
                            explained_variance=0.5, lr=3e-4, head_entropy={"op": 1.0, "slot": 0.5}))
        w.emit(ev.EpochCompleted(train_loss=1.0 / epoch, train_acc=50.0 + epoch, val_loss=1.5 / epoch,
                                 val_acc=40.0 + epoch + 0.5, perplexity=None if epoch == 1 else math.exp(1.5 / epoch),
                                 per_class_acc=[10.0 * epoch, math.nan], total_params=1000 + epoch, host_params=1000))
        w.log("info", f'epoch {epoch}, "done"\nnext line ünïcode')
        w.flush()
    w.emit(ev.GovernorPanic(reason="inf", loss=math.inf, threshold=math.nan, mean=1.0, std=0.1, consecutive=1))
    run.close()
    return Path(root) / run_id


def ddp_run(root: Path, run_id: str = "ddp") -> Path:
    """Two ranks of one run; rank 1's clock is 0.1 s behind rank 0's, so their events
    interleave in time. Rank R's val_acc is 40 + epoch + 10 R."""
    for rank in (0, 1):
        run, clock = _open(root, run_id, rank=rank, world_size=2, offset=0.1 * rank)
        w = run.writer
        for epoch in range(1, EPOCHS + 1):
            w.epoch = epoch
            for _ in range(STEPS):
                w.step += 1
                clock.t += 0.25
                w.emit(ev.BatchMetrics(loss=(rank + 1.0) / w.step, lr=0.1, samples_per_s=100.0))
            w.scalar("host/grad_norm", 1.0 + rank + epoch)
            w.emit(ev.EpochCompleted(train_loss=1.0, train_acc=50.0, val_loss=1.0, val_acc=40.0 + epoch + 10 * rank,
                                     total_params=1000, host_params=1000))
            w.flush()
        run.close()
    return Path(root) / run_id


def ppo_run(root: Path, run_id: str = "ppo") -> Path:
    """Two environments in one stream, two episodes each of 2 epochs (epochs and steps start
    again each episode), and the learner's updates and scalars (env 0) after each round."""
    run, clock = _open(root, run_id, num_envs=2)
    w = run.writer
    for round_ in range(2):
        for env in (0, 1):
            step = 0
            for epoch in (1, 2):
                step += 5
                clock.t += 1.0
                w.emit(ev.EpochCompleted(train_loss=1.0, train_acc=50.0, val_loss=1.0,
                                         val_acc=10.0 * env + epoch + round_, total_params=1000, host_params=1000),
                       env=env, epoch=epoch, step=step)
                w.emit(ev.Reward(total=env + 0.1 * epoch, components={"rent": -0.01 * epoch}), env=env, epoch=epoch,
                       step=step)
        clock.t += 1.0
        w.emit(ev.PPOUpdate(policy_loss=0.1 * round_, value_loss=0.2, entropy=1.0, approx_kl=0.01, clip_fraction=0.1,
                            explained_variance=0.5, lr=3e-4), step=round_)
        w.scalar("ppo/episode_return", 1.0 + round_, step=round_)
        w.flush()
    run.close()
    return Path(root) / run_id


def stream(run_dir: Path, kind: str, rank: int = 0) -> Path:
    return Path(run_dir) / EVENTS_DIR / f"{kind}.rank{rank}.arrows"


def tear(path: Path, keep_of_last: int = 10) -> None:
    """Cut a closed stream inside its last batch, as a writer killed mid-write leaves it."""
    data = path.read_bytes()
    end = data.rfind(b"\xff\xff\xff\xff", 0, len(data) - 8)  # the last batch's message starts here
    path.write_bytes(data[:end + keep_of_last])


def corrupt(path: Path) -> None:
    """Flip a byte in the body of a stream's last batch (its checksum no longer matches)."""
    data = bytearray(path.read_bytes())
    data[len(data) - 8 - 16] ^= 0xFF
    path.write_bytes(bytes(data))
