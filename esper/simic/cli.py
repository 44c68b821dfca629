"""``esper ppo``: train the learned controller on K vectorised morphogenetic environments.

``esper.cli`` parses the flags (``esper.flags.add_ppo_arguments``, torch-free) and calls
``run_ppo(args)``. Rendering (rich) lives here only; the library modules never print.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from esper.flags import add_ppo_arguments
from esper.kasmina.model import MorphogeneticModel
from esper.leyline.tasks import SyntheticConfig
from esper.progress import format_duration
from esper.runtime.tasks import TaskOptions, build_task
from esper.session import prepare_runs_dir
from esper.simic.collect import RoundResult
from esper.simic.config import DEFAULT_BUDGET_S, DEFAULT_WORKERS, EnvConfig, PPOConfig
from esper.simic.ppo import MOMENTS
from esper.simic.rewards import RewardConfig
from esper.simic.telemetry import ppo_update_event
from esper.simic.training import Budget, Configs, PPOTrainer, RunConfig, load_checkpoint
from telemetry_schema import events as ev
from telemetry_schema.endings import ending, exit_signals, interrupted_exit_code
from telemetry_schema.rundir import create_run, exact_run_dir, new_run_id
from telemetry_schema.tags import check_tag, write_tags

__all__ = ["add_ppo_arguments", "configs_from_args", "resumed_configs", "run_ppo", "main"]


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
    for flag in ("teacher_coef", "teacher_fraction"):
        if not (getattr(args, flag) >= 0 and math.isfinite(getattr(args, flag))):
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    run = RunConfig(envs=args.envs, rounds=args.rounds or RunConfig.rounds, rollout_steps=args.rollout_steps,
                    time_budget_s=DEFAULT_BUDGET_S if args.time_budget is None else args.time_budget, seed=args.seed,
                    workers=args.workers)
    env = EnvConfig(task=args.task, episode_length=args.episode_length, seed=args.seed, device=args.device,
                    synthetic_train=args.train_size, synthetic_val=args.val_size, gates=args.gates,
                    data_dir=args.data_dir, critic_features=args.critic_features)
    ppo = PPOConfig()
    ppo = dataclasses.replace(ppo, lr=args.lr,
                              entropy_coefs={h: c * args.entropy_scale for h, c in ppo.entropy_coefs.items()},
                              teacher=args.teacher, teacher_coef=args.teacher_coef,
                              teacher_fraction=args.teacher_fraction)
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


def _summary(i: int, rounds: int, r: RoundResult, budget: Budget) -> tuple[str, str]:
    """A round's progress and rewards, and its update's statistics: two parts of one report."""
    s = r.stats
    ret = f"{sum(r.episode_returns) / len(r.episode_returns):+.3f}" if r.episode_returns else "   n/a"
    comps = " ".join(f"{k}={v:+.3f}" for k, v in r.components.items() if v)
    heads = " ".join(f"{h}={v:.2f}" for h, v in s.head_entropy.items())
    teach = "" if math.isnan(s.teacher_agreement) else f" teacher w {s.teacher_weight:.2f} agree {s.teacher_agreement:.2f}"
    return (f"round {i}/{rounds} reward/step {r.mean_reward:+.4f} episode return {ret} | {comps} | "
            f"elapsed {format_duration(budget.elapsed)} eta {format_duration(budget.eta_s())}",
            f"pg {s.policy_loss:+.4f} vf {s.value_loss:.4f} kl {s.approx_kl:.2e} clip {s.clip_fraction:.3f} "
            f"ev {s.explained_variance:+.3f} lr {s.lr:.2e}{teach}{' KL-STOP' if s.early_stopped else ''} | H {heads}")


def _log_round(writer, i: int, r: RoundResult, seconds: float) -> None:
    """The learner's events of round ``i`` (step = round index, env 0)."""
    writer.emit(ppo_update_event(r.stats), step=i)
    writer.scalar("ppo/reward_per_step", r.mean_reward, step=i)
    writer.scalar("ppo/round_seconds", seconds, step=i)
    for name in MOMENTS:
        writer.scalar(f"ppo/{name}", getattr(r.stats, name), step=i)
    if r.episode_returns:
        writer.scalar("ppo/episode_return", sum(r.episode_returns) / len(r.episode_returns), step=i)
    for k, v in r.components.items():
        writer.scalar(f"reward/{k}", v, step=i)
    if not math.isnan(r.stats.imitation_loss):  # a run with a teacher
        writer.scalar("ppo/teacher_weight", r.stats.teacher_weight, step=i)
        writer.scalar("ppo/imitation_loss", r.stats.imitation_loss, step=i)
        writer.scalar("ppo/teacher_agreement", r.stats.teacher_agreement, step=i)


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
    tags = [check_tag(tag) for tag in args.tags or ()]
    exact = bool(args.run_name) and not args.run_name_suffix
    if exact:
        exact_run_dir(args.runs_dir, args.run_name)  # refused before any work: nothing is touched
    ckpt = load_checkpoint(args.resume) if args.resume else None
    cfgs = resumed_configs(args, ckpt) if ckpt else configs_from_args(args)
    prepare_runs_dir(args.runs_dir)
    torch.set_num_threads(args.threads)
    task, topology, host_params, slot_ids = _probe(cfgs.env)
    config = dict(cfgs.as_dict(), resumed_from=str(args.resume) if args.resume else None)
    if exact:  # made now, atomically: a run that took the name meanwhile is refused, not joined
        exact_run_dir(args.runs_dir, args.run_name, create=True)
    with exit_signals():  # SIGTERM / SIGHUP end the run as Ctrl-C does: log closed, checkpoints kept
        rw = create_run(args.runs_dir, ev.RunStarted(
            run_id=args.run_name if exact else new_run_id(args.run_name or f"ppo-{task}"), task=task,
            topology=topology, host_params=host_params,
            slot_ids=slot_ids, config_json=json.dumps(config, default=str), python_version=platform.python_version(),
            torch_version=torch.__version__, device=cfgs.env.device, num_envs=cfgs.run.envs))
        if tags:
            write_tags(rw.run_dir, tags)
        console.print(f"run directory: [bold]{escape(str(rw.run_dir))}[/]"
                      + (f" (resumed from {escape(str(args.resume))})" if ckpt else ""))
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
    progress = Progress(TextColumn("round {task.completed:.0f}/{task.total:.0f}"), BarColumn(),
                        TimeElapsedColumn(), TextColumn("eta {task.fields[eta]}"), console=console,
                        disable=not console.is_terminal)  # into a pipe or a file: the round lines alone
    with trainer, progress:
        bar = progress.add_task("ppo", total=cfgs.run.rounds, completed=trainer.rounds_done, eta="?")
        while budget.allows_another():
            t0, cpu0 = clock(), trainer.cpu_seconds()
            result = trainer.round()
            budget.record(clock() - t0)
            _log_round(rw.writer, trainer.rounds_done, result, clock() - t0)
            _log_cpu(rw.writer, trainer.rounds_done, cpu0, trainer.cpu_seconds())
            trainer.save(Path(rw.run_dir), spent + budget.elapsed)
            head, stats = _summary(trainer.rounds_done, cfgs.run.rounds, result, budget)
            progress.console.print(Text(f"{head}\n  {stats}" if console.is_terminal else f"{head} | {stats}"))
            progress.update(bar, completed=trainer.rounds_done, eta=format_duration(budget.eta_s()))
    why = "round budget" if trainer.rounds_done >= cfgs.run.rounds else "time budget"
    console.print(f"stopped after {trainer.rounds_done} rounds ({why}), {format_duration(budget.elapsed)}")
    run_dir = escape(str(rw.run_dir))
    console.print(f"policy: [bold]{run_dir}/policy.pt[/]  (use: esper train --controller "
                  f"policy:{run_dir}/policy.pt; continue: esper ppo --resume {run_dir})")


def main(argv: list[str] | None = None) -> int:
    """``python -m esper.simic.cli ...``: the same as ``esper ppo ...``."""
    from esper.cli import main as esper_main
    return esper_main(["ppo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
