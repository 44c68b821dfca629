"""Run logs of several streams, written to disk like a real run: a 2-rank distributed run
(agreeing, diverging, or with a rank that died) and a PPO run of several environments.

Ranks and environments differ on purpose (batch counts, reward counts, accuracies), so a view
that showed the wrong stream would show the wrong number of points.
"""

from __future__ import annotations

from pathlib import Path

from telemetry_schema import events as ev
from telemetry_schema.reader import STREAM_RE, stream_files
from telemetry_schema.rundir import create_run
from telemetry_schema.synth import SynthConfig, generate
from telemetry_schema.writer import WriterConfig

T0 = 1_700_000_000.0
EPOCH_S = 10.0
STEPS = 10  # per epoch
AGREE = [(1, "GERMINATED"), (2, "TRAINING"), (4, "BLENDING"), (6, "HOLDING")]
DIVERGE = AGREE[:2] + [(5, "BLENDING"), (6, "HOLDING")]


class StepClock:
    """The writer's clock: it stands still until the builder moves it."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _quiet() -> WriterConfig:
    return WriterConfig(heartbeat_s=0, flush_interval=3600)


def write_ddp_run(root: Path, run_id: str, moves: dict[int, list[tuple[int, str]]], epochs: dict[int, int] | None = None,
                  dead: set[int] = frozenset()) -> Path:
    """A 2-rank run. Rank R trains ``epochs[R]`` epochs of ``STEPS`` steps (10 s each) and moves
    slot s0 through ``moves[R]``. Rank 0 logs every step's batch loss; rank 1 every other step's
    (and a scalar on the others, so both ranks log the same number of events). A rank in ``dead``
    is cut off like a killed process: no run_finished, no end of stream."""
    epochs = epochs or {0: 6, 1: 6}
    for rank in (0, 1):
        clock = StepClock()
        started = ev.RunStarted(run_id=run_id, task="synthetic-images", topology="cnn", host_params=1000,
                                slot_ids=["s0"], world_size=2, heartbeat_s=5.0)
        run = create_run(root, started, rank=rank, config=_quiet(), clock=clock, wall_clock=lambda: T0)
        w = run.writer
        for epoch in range(1, epochs[rank] + 1):
            w.epoch = epoch
            for _ in range(STEPS):
                w.step += 1
                clock.t += EPOCH_S / STEPS
                if rank == 0 or w.step % 2 == 0:
                    w.emit(ev.BatchMetrics(loss=2.0 / w.step, lr=0.1, samples_per_s=100.0))
                else:
                    w.scalar("host/grad_norm", 1.0 / w.step)
            for at, stage in moves[rank]:
                if at == epoch:
                    w.emit(ev.StageChanged(from_stage="?", to_stage=stage), slot="s0", seed="s0-a")
            w.emit(ev.EpochCompleted(train_loss=1.0, train_acc=50.0 + epoch, val_loss=1.0,
                                     val_acc=40.0 + epoch + 10 * rank, total_params=1000, host_params=1000))
            w.flush()  # a batch per epoch, as the time-based flush would
        if rank in dead:
            _kill(run)
        else:
            run.close()
    return Path(root) / run_id


def _kill(run) -> None:
    """Close the writer, then cut the rank's streams back to what they held before: no
    run_finished, no end of stream, as a killed process leaves them."""
    run.writer.flush()
    rank = run.writer.rank
    mine = lambda: [p for p in stream_files(run.run_dir) if int(STREAM_RE.match(p.name)["rank"]) == rank]  # noqa: E731
    sizes = {p: p.stat().st_size for p in mine()}
    run.writer.close()
    for path in mine():
        if path not in sizes:
            path.unlink()  # a stream the close began (run_finished)
            continue
        with open(path, "r+b") as f:
            f.truncate(sizes[path])


def write_ppo_run(root: Path, run_id: str = "ppo-run", envs: int = 3, rounds: int = 4) -> Path:
    """A PPO run of ``envs`` environments in one stream. Each round env k logs k+1 rewards, one
    controller decision and one epoch (val_acc 60 + 10k + round); env 1 also moves its slot.
    The learner's PPO update and scalars carry env 0, as ``esper ppo`` writes them."""
    started = ev.RunStarted(run_id=run_id, task="synthetic-images", topology="cnn", host_params=500,
                            slot_ids=["s0", "s1"], num_envs=envs)
    clock = StepClock()
    with create_run(root, started, config=_quiet(), clock=clock, wall_clock=lambda: T0) as run:
        w = run.writer
        for r in range(1, rounds + 1):
            for env in range(envs):
                clock.t += 1.0
                for i in range(env + 1):
                    w.emit(ev.Reward(total=float(env + i), components={"rent": -0.1, "attribution": float(env)}),
                           env=env, epoch=r, step=i)
                w.emit(ev.ControllerDecision(controller="policy", op="GERMINATE" if r == 1 else "WAIT",
                                             action_probs={"WAIT": 0.4, "GERMINATE": 0.6}, value=0.1 * env),
                       env=env, epoch=r)
                if env == 1 and r <= 2:
                    w.emit(ev.StageChanged(from_stage="?", to_stage=("GERMINATED", "TRAINING")[r - 1]),
                           slot="s0", seed="s0-e1", env=env, epoch=r)
                w.emit(ev.EpochCompleted(train_loss=1.0, train_acc=50.0, val_loss=1.0, val_acc=60.0 + 10 * env + r,
                                         total_params=500, host_params=500), env=env, epoch=r, step=r)
            w.emit(ev.PPOUpdate(policy_loss=0.1 * r, value_loss=1.0, entropy=1.0, approx_kl=0.01, clip_fraction=0.1,
                                explained_variance=0.5, lr=3e-4, head_entropy={"op": 1.0}), step=r, epoch=r)
            w.scalar("ppo/reward_per_step", 0.5 * r, step=r, epoch=r)
            w.flush()  # a batch per round
    return Path(root) / run_id


def write_multi_root(root: Path, synth_events: int, seed: int) -> Path:
    """The runs both selection test modules use: 2-rank runs that agree, diverge and lose a
    rank, a 3-env PPO run, and a single-stream synthetic run."""
    write_ddp_run(root, "ddp-agree", {0: AGREE, 1: AGREE})
    write_ddp_run(root, "ddp-diverge", {0: AGREE, 1: DIVERGE})
    write_ddp_run(root, "ddp-dead", {0: AGREE, 1: AGREE[:2]}, epochs={0: 6, 1: 2}, dead={1})
    write_ppo_run(root, "ppo-run", envs=3)
    generate(root, SynthConfig(events=synth_events, seed=seed, run_id="single-run"))
    return root
