"""``esper ppo``: train the learned controller on K vectorised morphogenetic environments.

The lead wires it into ``esper/cli.py`` with ``add_ppo_arguments(subparser)`` and
``run_ppo(args)``. Rendering (rich) lives here only; the library modules never print.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from esper.kasmina.model import MorphogeneticModel
from esper.runtime.synthetic import SyntheticConfig
from esper.runtime.tasks import TaskOptions, build_task
from esper.session import prepare_runs_dir
from esper.simic.collect import RoundResult
from esper.simic.env import EnvConfig
from esper.simic.ppo import PPOConfig
from esper.simic.rewards import MODES, RewardConfig
from esper.simic.telemetry import ppo_update_event
from esper.simic.training import Budget, Configs, PPOTrainer, RunConfig, load_checkpoint
from telemetry_schema import events as ev
from telemetry_schema.endings import ending, exit_signals, interrupted_exit_code
from telemetry_schema.rundir import create_run, new_run_id


DEFAULT_WORKERS = min(2, os.cpu_count() or 1)
"""Worker processes of a default run: the 2 cores the default is sized for, where the machine has them."""
DEFAULT_BUDGET_S = 780.0
"""Seconds of learning of a default run: 13 minutes, leaving room for start-up and the checkpoint."""


def add_ppo_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Flags of ``esper ppo``. The defaults learn for at most 13 minutes (``--time-budget``), so a
    default run ends within 15 minutes on 2 CPU cores; on a fast machine it stops at ``--rounds``."""
    run, env = RunConfig(), EnvConfig()
    p.add_argument("--task", default=env.task, help="task of every environment")
    p.add_argument("--envs", type=int, default=run.envs, help="vectorised environments stepping in lockstep")
    p.add_argument("--rounds", type=int, default=None,
                   help=f"rounds at most, one PPO update each (default {run.rounds}; resumed: the checkpoint's)")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help=f"stop before a round that would end past this (default {DEFAULT_BUDGET_S:.0f}; 0 = none)")
    p.add_argument("--rollout-steps", type=int, default=run.rollout_steps, help="lockstep steps per round")
    p.add_argument("--episode-length", type=int, default=env.episode_length, help="RL steps (host epochs) per episode")
    p.add_argument("--reward-mode", choices=MODES, default=RewardConfig.mode)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--run-name", default=None)
    p.add_argument("--gates", choices=("strict", "permissive"), default=env.gates)
    p.add_argument("--lr", type=float, default=PPOConfig.lr, help="policy learning rate")
    p.add_argument("--entropy-scale", type=float, default=1.0,
                   help="multiplies every head's entropy coefficient (more exploration above 1)")
    p.add_argument("--train-size", type=int, default=env.synthetic_train,
                   help="training samples per epoch of the synthetic task")
    p.add_argument("--val-size", type=int, default=env.synthetic_val, help="validation samples of the synthetic task")
    p.add_argument("--workers", type=int, default=None,
                   help=f"processes the environments are split over (default: the CPU cores, at most "
                        f"{DEFAULT_WORKERS} and one per environment); the run steps the same with any number")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest for small hosts)")
    p.add_argument("--data-dir", default=None, help="data directory (cifar10)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR|learner.pt",
                   help="continue the learner of an earlier run (its configuration; --rounds/--time-budget may extend it)")
    return p




def configs_from_args(args: argparse.Namespace) -> Configs:
    """The run's configurations from the flags; raises ValueError for bad ones."""
    if args.workers is None:
        args.workers = max(1, min(DEFAULT_WORKERS, args.envs))
    for flag in ("envs", "rollout_steps", "episode_length", "train_size", "val_size", "threads", "workers"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1")
    if args.workers > args.envs:
        raise ValueError(f"--workers {args.workers}: at most one per environment (--envs {args.envs})")
    if args.rounds is not None and args.rounds < 1:
        raise ValueError("--rounds must be >= 1")
    if args.time_budget is not None and (args.time_budget < 0 or not math.isfinite(args.time_budget)):
        raise ValueError("--time-budget must be a number of seconds >= 0")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise ValueError("--lr must be > 0")
    if not (args.entropy_scale >= 0 and math.isfinite(args.entropy_scale)):
        raise ValueError("--entropy-scale must be >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    run = RunConfig(envs=args.envs, rounds=args.rounds or RunConfig.rounds, rollout_steps=args.rollout_steps,
                    time_budget_s=DEFAULT_BUDGET_S if args.time_budget is None else args.time_budget, seed=args.seed,
                    workers=args.workers)
    env = EnvConfig(task=args.task, episode_length=args.episode_length, seed=args.seed, device=args.device,
                    synthetic_train=args.train_size, synthetic_val=args.val_size, gates=args.gates,
                    data_dir=args.data_dir)
    ppo = PPOConfig()
    ppo = dataclasses.replace(ppo, lr=args.lr,
                              entropy_coefs={h: c * args.entropy_scale for h, c in ppo.entropy_coefs.items()})
    return Configs(run=run, env=env, reward=RewardConfig(mode=args.reward_mode, gamma=ppo.gamma), ppo=ppo)


def resumed_configs(args: argparse.Namespace, ckpt: dict) -> Configs:
    """A checkpoint's configurations, with --rounds / --time-budget / --workers taken from the flags."""
    cfgs = Configs.from_dict(ckpt["configs"])
    run = dataclasses.replace(cfgs.run, workers=min(args.workers or DEFAULT_WORKERS, cfgs.run.envs))
    if args.rounds is not None:
        run = dataclasses.replace(run, rounds=args.rounds)
    if args.time_budget is not None:
        run = dataclasses.replace(run, time_budget_s=args.time_budget)
    if run.rounds <= int(ckpt["rounds"]):
        raise ValueError(f"--resume: the checkpoint has done {ckpt['rounds']} of {run.rounds} rounds; "
                         f"pass --rounds N with N > {ckpt['rounds']} to learn longer")
    return dataclasses.replace(cfgs, run=run)


def _probe(env: EnvConfig):
    """(task name, topology, host params, slot ids) of the task's host, without training it."""
    opts = TaskOptions(batch_size=env.batch_size, seed=env.seed, data_dir=env.data_dir,
                       synthetic=SyntheticConfig(train_size=env.synthetic_train, val_size=env.synthetic_val))
    task = build_task(env.task, opts)
    model = MorphogeneticModel(task.host, list(env.slots) if env.slots else None)
    return task.name, task.topology, model.host_param_count(), list(model.order)


def _summary(i: int, r: RoundResult, eta_s: float) -> str:
    s = r.stats
    ret = f"{sum(r.episode_returns) / len(r.episode_returns):+.3f}" if r.episode_returns else "   n/a"
    comps = " ".join(f"{k}={v:+.3f}" for k, v in r.components.items() if v)
    heads = " ".join(f"{h}={v:.2f}" for h, v in s.head_entropy.items())
    return (f"round {i}: reward/step {r.mean_reward:+.4f} episode return {ret} | {comps} | eta {eta_s / 60:.1f} min\n"
            f"  pg {s.policy_loss:+.4f} vf {s.value_loss:.4f} kl {s.approx_kl:.2e} clip {s.clip_fraction:.3f} "
            f"ev {s.explained_variance:+.3f} lr {s.lr:.2e}{' KL-STOP' if s.early_stopped else ''} | H {heads}")


def _log_round(writer, i: int, r: RoundResult, seconds: float) -> None:
    """The learner's events of round ``i`` (step = round index, env 0)."""
    writer.emit(ppo_update_event(r.stats), step=i)
    writer.scalar("ppo/reward_per_step", r.mean_reward, step=i)
    writer.scalar("ppo/round_seconds", seconds, step=i)
    if r.episode_returns:
        writer.scalar("ppo/episode_return", sum(r.episode_returns) / len(r.episode_returns), step=i)
    for k, v in r.components.items():
        writer.scalar(f"reward/{k}", v, step=i)


def _log_cpu(writer, i: int, before: tuple[float, list[float]], after: tuple[float, list[float]]) -> None:
    """CPU seconds of round ``i``: this process (policy, update, environments when no workers) and
    the busiest worker. On an idle machine with a core per process, a round's wall time is about
    their sum; on a shared one, wall time is longer and these say what the round cost."""
    writer.scalar("ppo/round_cpu_seconds_main", after[0] - before[0], step=i)
    busiest = max((b - a for a, b in zip(before[1], after[1])), default=0.0)
    writer.scalar("ppo/round_cpu_seconds_worker", busiest, step=i)


def run_ppo(args: argparse.Namespace, console: Console | None = None,
            clock: Callable[[], float] = time.perf_counter) -> int:
    """Train a policy; writes ``<runs_dir>/<run_id>/events/``, ``policy.pt`` and ``learner.pt``
    (both after every round). Returns the exit status (0, or 128 + the signal's number when
    Ctrl-C, SIGTERM or SIGHUP interrupted it); raises ValueError for bad flags."""
    console = console or Console()
    ckpt = load_checkpoint(args.resume) if args.resume else None
    cfgs = resumed_configs(args, ckpt) if ckpt else configs_from_args(args)
    prepare_runs_dir(args.runs_dir)
    torch.set_num_threads(args.threads)
    task, topology, host_params, slot_ids = _probe(cfgs.env)
    config = dict(cfgs.as_dict(), resumed_from=str(args.resume) if args.resume else None)
    with exit_signals():  # SIGTERM / SIGHUP end the run as Ctrl-C does: log closed, checkpoints kept
        rw = create_run(args.runs_dir, ev.RunStarted(
            run_id=new_run_id(args.run_name or f"ppo-{task}"), task=task, topology=topology, host_params=host_params,
            slot_ids=slot_ids, config_json=json.dumps(config, default=str), python_version=platform.python_version(),
            torch_version=torch.__version__, device=cfgs.env.device, num_envs=cfgs.run.envs))
        console.print(f"run directory: [bold]{rw.run_dir}[/]" + (f" (resumed from {args.resume})" if ckpt else ""))
        status, reason = "completed", ""
        try:
            _learn(cfgs, rw, ckpt, console, clock)
        except KeyboardInterrupt as exc:
            status, reason = ending(type(exc), exc)
        except BaseException as exc:
            rw.close(*ending(type(exc), exc))
            raise
        rw.close(status, reason)
    return interrupted_exit_code(reason) if status == "interrupted" else 0


def _learn(cfgs: Configs, rw, ckpt: dict | None, console: Console, clock: Callable[[], float]) -> None:
    """Rounds until the budget is spent, logging and checkpointing each one."""
    trainer = PPOTrainer.build(cfgs, rw.writer, ckpt)
    budget = Budget(cfgs.run.rounds, cfgs.run.time_budget_s, trainer.rounds_done, clock=clock)
    spent = trainer.seconds_spent
    with trainer, Progress(TextColumn("round {task.completed:.0f}/{task.total:.0f}"), BarColumn(),
                           TimeElapsedColumn(), TextColumn("eta {task.fields[eta]}"), console=console) as progress:
        bar = progress.add_task("ppo", total=cfgs.run.rounds, completed=trainer.rounds_done, eta="?")
        while budget.allows_another():
            t0, cpu0 = clock(), trainer.cpu_seconds()
            result = trainer.round()
            budget.record(clock() - t0)
            _log_round(rw.writer, trainer.rounds_done, result, clock() - t0)
            _log_cpu(rw.writer, trainer.rounds_done, cpu0, trainer.cpu_seconds())
            trainer.save(Path(rw.run_dir), spent + budget.elapsed)
            progress.console.print(_summary(trainer.rounds_done, result, budget.eta_s()))
            progress.update(bar, completed=trainer.rounds_done, eta=f"{budget.eta_s() / 60:.1f} min")
    why = "round budget" if trainer.rounds_done >= cfgs.run.rounds else "time budget"
    console.print(f"stopped after {trainer.rounds_done} rounds ({why}), {budget.elapsed / 60:.1f} min")
    console.print(f"policy: [bold]{rw.run_dir}/policy.pt[/]  (use: esper train --controller "
                  f"policy:{rw.run_dir}/policy.pt; continue: esper ppo --resume {rw.run_dir})")


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m esper.simic.cli``) until ``esper ppo`` is wired in."""
    parser = add_ppo_arguments(argparse.ArgumentParser(prog="esper ppo"))
    return run_ppo(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
