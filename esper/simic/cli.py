"""``esper ppo``: train the learned controller on K vectorised morphogenetic environments.

The lead wires it into ``esper/cli.py`` with ``add_ppo_arguments(subparser)`` and
``run_ppo(args)``. Rendering (rich) lives here only; the library modules never print.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from esper.kasmina.model import MorphogeneticModel
from esper.runtime.synthetic import SyntheticConfig
from esper.runtime.tasks import TaskOptions, build_task
from esper.session import prepare_runs_dir
from esper.simic.collect import Learner, RoundResult
from esper.simic.env import EnvConfig
from esper.simic.ppo import PPO, PPOConfig
from esper.simic.rewards import RewardConfig
from esper.simic.telemetry import EnvEventSink, ppo_update_event
from esper.simic.vec_env import VecMorphEnv
from esper.tamiyo.policy.features import FeatureConfig
from esper.tamiyo.policy.network import NetworkConfig, PolicyNetwork
from telemetry_schema import events as ev
from telemetry_schema.endings import ending, exit_signals, interrupted_exit_code
from telemetry_schema.rundir import create_run, new_run_id


def add_ppo_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Flags of ``esper ppo`` (the defaults finish in a few minutes on 2 CPU cores)."""
    p.add_argument("--task", default="synthetic-images", help="task of every environment")
    p.add_argument("--envs", type=int, default=4, help="vectorised environments stepping in lockstep")
    p.add_argument("--rounds", type=int, default=3, help="rounds (one PPO update each)")
    p.add_argument("--episode-length", type=int, default=20, help="RL steps (host epochs) per episode")
    p.add_argument("--reward-mode", choices=("shaped", "sparse"), default="shaped")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--run-name", default=None)
    p.add_argument("--gates", choices=("strict", "permissive"), default="permissive")
    p.add_argument("--lr", type=float, default=PPOConfig.lr, help="policy learning rate")
    p.add_argument("--train-size", type=int, default=EnvConfig.synthetic_train,
                   help="training samples of the synthetic task")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest for small hosts)")
    p.add_argument("--data-dir", default=None, help="data directory (cifar10)")
    return p


def configs_from_args(args: argparse.Namespace) -> tuple[EnvConfig, RewardConfig, PPOConfig]:
    for flag in ("envs", "rounds", "episode_length", "train_size", "threads"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    env = EnvConfig(task=args.task, episode_length=args.episode_length, seed=args.seed, device=args.device,
                    synthetic_train=args.train_size, gates=args.gates, data_dir=args.data_dir)
    ppo = dataclasses.replace(PPOConfig(), lr=args.lr)
    return env, RewardConfig(mode=args.reward_mode, gamma=ppo.gamma), ppo


def _probe(env: EnvConfig):
    """(topology, host params, slot ids) of the task's host, without training it."""
    opts = TaskOptions(batch_size=env.batch_size, seed=env.seed, data_dir=env.data_dir,
                       synthetic=SyntheticConfig(train_size=env.synthetic_train, val_size=env.synthetic_val))
    task = build_task(env.task, opts)
    model = MorphogeneticModel(task.host, list(env.slots) if env.slots else None)
    return task.name, task.topology, model.host_param_count(), list(model.order)


def _summary(i: int, r: RoundResult) -> str:
    s = r.stats
    ret = f"{sum(r.episode_returns) / len(r.episode_returns):+.2f}" if r.episode_returns else "  n/a"
    comps = " ".join(f"{k}={v:+.3f}" for k, v in r.components.items() if v)
    heads = " ".join(f"{h}={v:.2f}" for h, v in s.head_entropy.items())
    return (f"round {i}: reward/step {r.mean_reward:+.3f} episode return {ret} | {comps}\n"
            f"  pg {s.policy_loss:+.4f} vf {s.value_loss:.4f} kl {s.approx_kl:.2e} clip {s.clip_fraction:.3f} "
            f"ev {s.explained_variance:+.3f} lr {s.lr:.2e}{' KL-STOP' if s.early_stopped else ''} | H {heads}")


def _log_round(writer, i: int, r: RoundResult) -> None:
    """The learner's events of round ``i`` (step = round index, env 0)."""
    writer.emit(ppo_update_event(r.stats), step=i)
    writer.scalar("ppo/reward_per_step", r.mean_reward, step=i)
    if r.episode_returns:
        writer.scalar("ppo/episode_return", sum(r.episode_returns) / len(r.episode_returns), step=i)
    for k, v in r.components.items():
        writer.scalar(f"reward/{k}", v, step=i)


def run_ppo(args: argparse.Namespace, console: Console | None = None) -> int:
    """Train a policy; writes ``<runs_dir>/<run_id>/events/`` and ``policy.pt``. Returns the
    exit status (0, or 128 + the signal's number when Ctrl-C, SIGTERM or SIGHUP interrupted it:
    the log is closed as 'interrupted' and the last round's policy.pt kept); raises ValueError for
    bad flags. Any other failure closes the log as 'failed' and is re-raised."""
    console = console or Console()
    env_cfg, reward_cfg, ppo_cfg = configs_from_args(args)
    prepare_runs_dir(args.runs_dir)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    task, topology, host_params, slot_ids = _probe(env_cfg)
    config = {"env": dataclasses.asdict(env_cfg), "reward": dataclasses.asdict(reward_cfg),
              "ppo": dataclasses.asdict(ppo_cfg), "rounds": args.rounds, "envs": args.envs}
    started = ev.RunStarted(
        run_id=new_run_id(args.run_name or f"ppo-{task}"), task=task, topology=topology, host_params=host_params,
        slot_ids=slot_ids, config_json=json.dumps(config, default=str), python_version=platform.python_version(),
        torch_version=torch.__version__, device=args.device, num_envs=args.envs)
    with exit_signals():
        rw = create_run(args.runs_dir, started)
        try:
            console.print(f"run directory: [bold]{rw.run_dir}[/]")
            status, reason = _train_policy(args, rw, console, task, topology, env_cfg, reward_cfg, ppo_cfg)
        except BaseException as exc:
            rw.close(*ending(type(exc), exc))
            raise
        rw.close(status, reason)
    return interrupted_exit_code(reason) if status == "interrupted" else 0


def _train_policy(args, rw, console: Console, task: str, topology: str, env_cfg: EnvConfig,
                  reward_cfg: RewardConfig, ppo_cfg: PPOConfig) -> tuple[str, str]:
    """The PPO rounds, saving ``policy.pt`` after each: (status, reason) for the log."""
    env = VecMorphEnv(args.envs, env_cfg, reward_cfg, FeatureConfig(), lambda i: EnvEventSink(rw.writer, i))
    net = PolicyNetwork(env.obs_dim, env.space, NetworkConfig())
    learner = Learner(env, PPO(net, ppo_cfg, total_updates=args.rounds), torch.Generator().manual_seed(args.seed))
    ckpt = Path(rw.run_dir) / "policy.pt"
    extra = {"task": task, "topology": topology, "features": dataclasses.asdict(FeatureConfig()), "rounds": 0}
    try:
        with Progress(TextColumn("round {task.completed:.0f}/{task.total:.0f}"), BarColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            bar = progress.add_task("ppo", total=args.rounds)
            for i in range(1, args.rounds + 1):
                result = learner.round(env_cfg.episode_length)
                _log_round(rw.writer, i, result)
                net.save(ckpt, dict(extra, rounds=i))
                progress.console.print(_summary(i, result))
                progress.update(bar, completed=i)
    except KeyboardInterrupt as exc:  # Ctrl-C, or a stop signal as RunInterrupted
        return ending(type(exc), exc)
    console.print(f"policy: [bold]{ckpt}[/]  (use: esper train --controller policy:{ckpt})")
    return "completed", ""


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m esper.simic.cli``) until ``esper ppo`` is wired in."""
    parser = add_ppo_arguments(argparse.ArgumentParser(prog="esper ppo"))
    return run_ppo(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
