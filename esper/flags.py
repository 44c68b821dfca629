"""The command line's flags: every ``esper`` command's arguments, their help and their defaults.

This module imports no torch (nor anything that does), so ``esper --help`` and ``esper train
--help`` answer at once; ``esper.cli`` parses with it and imports the training code only to run
a command. Each flag's help shows its default (``DefaultsFormatter``).
"""

from __future__ import annotations

import argparse
from types import MappingProxyType

from esper.leyline.config import GateConfig, HeuristicConfig, TrainConfig
from esper.leyline.tasks import BATCH_SIZE, DEFAULT_EPOCHS, TASK_NAMES, SyntheticConfig
from esper.simic.config import DEFAULT_BUDGET_S, DEFAULT_WORKERS, TEACHERS, EnvConfig, PPOConfig, RunConfig
from esper.simic.rewards import MODES, RewardConfig

COMMANDS = MappingProxyType({"train": "train a morphogenetic model",
            "ppo": "learn the controller with PPO over vectorised environments",
            "export": "write a run's events as CSV, Parquet or JSON Lines tables, or TensorBoard event files"})
DESCRIPTION = "Train neural networks that grow, and watch them grow."
RUN_NAME_HELP = ("the run directory's name: exactly RUNS_DIR/NAME, refused if it exists (default: "
                 "TASK-YYYYmmdd-HHMMSS)")
SUFFIX_HELP = "append -YYYYmmdd-HHMMSS to --run-name, so a name can be reused (default: off)"
TAG_HELP = "a tag on the run (repeatable: --tag a --tag b), as the viewers' tag filter shows it (default: none)"


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """A parser whose errors are one line (``CliError``), with no usage dump."""

    def error(self, message: str):
        raise CliError(message)


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends '(default: X)' to a flag's help unless the help already says its default (a
    default of None means 'decided later': such a help text says what decides it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.nargs == 0:
            return text
        return super()._get_help_string(action)


def command_parser() -> OneLineParser:
    """The command list alone, for ``esper --help``."""
    p = OneLineParser(prog="esper", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", parser_class=OneLineParser, metavar="{train,ppo,export}")
    for name, text in COMMANDS.items():
        sub.add_parser(name, help=text)
    return p


def make_parser() -> OneLineParser:
    """``esper train`` and ``esper ppo`` (``esper export`` parses with ``export_parser``)."""
    p = OneLineParser(prog="esper", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", parser_class=OneLineParser)
    add_train_arguments(sub.add_parser("train", help=COMMANDS["train"], description=_sentence("train"),
                                       formatter_class=DefaultsFormatter))
    add_ppo_arguments(sub.add_parser("ppo", help=COMMANDS["ppo"], description=_sentence("ppo"),
                                     formatter_class=DefaultsFormatter))
    return p


def _sentence(command: str) -> str:
    text = COMMANDS[command]
    return text[0].upper() + text[1:] + "."


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Where a run goes and how it is named and tagged: the same for ``esper train`` and ``esper ppo``."""
    p.add_argument("--runs-dir", default="runs", help="parent directory of run directories")
    p.add_argument("--run-name", default=None, metavar="NAME", help=RUN_NAME_HELP)
    p.add_argument("--run-name-suffix", action="store_true", help=SUFFIX_HELP)
    p.add_argument("--tag", dest="tags", action="append", default=None, metavar="TAG", help=TAG_HELP)


def add_train_arguments(t: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Flags of ``esper train``."""
    epochs = ", ".join(f"{task} {n}" for task, n in DEFAULT_EPOCHS.items())
    t.add_argument("--task", default="synthetic-images", help=f"one of {', '.join(TASK_NAMES)}")
    t.add_argument("--epochs", type=int, default=None,
                   help=f"epochs to train (default {TrainConfig.epochs}; {epochs})")
    t.add_argument("--controller", default="heuristic", metavar="heuristic|none|policy:PATH",
                   help="who decides: the heuristic, nobody, or a policy trained by `esper ppo`")
    t.add_argument("--slots", default="all", help="'all', a count N (the last N), or slot ids a,b")
    t.add_argument("--seed", type=int, default=0, help="seed of the weights, the data order and the synthetic data")
    t.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model trains")
    add_run_arguments(t)
    t.add_argument("--gates", choices=("strict", "permissive"), default=GateConfig.mode,
                   help="quality gates: strict adds G2's improvement check and G5's 1.0pp bar")
    t.add_argument("--inject-fault", default=None, metavar="nan@EPOCH|spike@EPOCH",
                   help="nan: poison the first training loss of EPOCH (weights go NaN, the governor rolls "
                        "back at once); spike: multiply the val loss x100 for 3 epochs from EPOCH (3 "
                        "statistical anomalies, then a rollback; needs EPOCH > 10 for the loss history). "
                        "A fault that cannot fire is refused (default: no fault)")
    t.add_argument("--data-dir", default=None, help="data directory (cifar10; default: none)")
    t.add_argument("--npz-kind", choices=("auto", "image", "signal", "features"), default="auto",
                   help="npz:PATH tasks: what x holds; auto: 4-D and square 3-D image, other 3-D signal, "
                        "2-D features")
    t.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="training and validation batch size")
    t.add_argument("--train-size", type=int, default=None,
                   help=f"synthetic-images: training samples (default {SyntheticConfig.train_size})")
    t.add_argument("--val-size", type=int, default=None,
                   help=f"synthetic-images: validation samples (default {SyntheticConfig.val_size})")
    t.add_argument("--gate", default=None, metavar="KEY=VALUE,...",
                   help="override quality-gate thresholds (GateConfig), e.g. min_training_epochs=1 "
                        "(default: none)")
    t.add_argument("--heuristic", default=None, metavar="KEY=VALUE,...",
                   help="override heuristic controller thresholds, e.g. min_epoch=1,plateau_window=1 "
                        "(default: none)")
    t.add_argument("--host-width", type=int, default=None, metavar="N",
                   help="host width: the CNN's first-block channels (default 8) or the transformer's "
                        "embedding width (default 64)")
    t.add_argument("--host-depth", type=int, default=None, metavar="N",
                   help="host depth: the CNN's conv blocks (default 3) or the transformer's layers (default 2)")
    t.add_argument("--init-seeds", default=None, metavar="SLOT=BLUEPRINT,...",
                   help="seeds built and fossilized before epoch 1 (a grown architecture trained from the "
                        "start), e.g. block1=conv_light,block2=conv_heavy (default: none)")
    t.add_argument("--max-params", type=int, default=None, metavar="N",
                   help="growth budget: the heuristic grows no seed that takes host + seeds past N "
                        "parameters (default: no limit)")
    t.add_argument("--max-flops-ratio", type=float, default=None, metavar="X",
                   help="growth budget: ... nor past X times the host's forward FLOPs per sample "
                        f"(default {HeuristicConfig.max_flops_ratio})")
    t.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="data-parallel training on N local processes (re-launches under "
                        "torch.distributed.run; default: 1, no re-launch)")
    t.add_argument("--on-telemetry-error", choices=("stop", "continue"), default="stop",
                   help="when the log cannot be written (a full disk): stop training with an error, or "
                        "continue training without a log")
    t.add_argument("--dist-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="distributed runs: how long a collective waits for a dead or stuck rank")
    return t


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
    p.add_argument("--reward-mode", choices=MODES, default=RewardConfig.mode,
                   help="paired: gains over a host-only shadow; shaped and sparse: the earlier components")
    p.add_argument("--critic-features", action=argparse.BooleanOptionalAction, default=env.critic_features,
                   help="give the critic (never the actor) the episode's reward so far and the gap to the shadow")
    p.add_argument("--seed", type=int, default=0, help="seed of the policy, its sampling and the environments")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the hosts train")
    add_run_arguments(p)
    p.add_argument("--gates", choices=("strict", "permissive"), default=env.gates,
                   help="gate mode of every environment's lifecycle")
    p.add_argument("--lr", type=float, default=PPOConfig.lr, help="policy learning rate")
    p.add_argument("--entropy-scale", type=float, default=1.0,
                   help="multiplies every head's entropy coefficient (more exploration above 1)")
    p.add_argument("--teacher", choices=TEACHERS, default=PPOConfig.teacher,
                   help="heuristic: the policy also imitates the heuristic's choice in the states it reaches, "
                        "with a weight that decays to 0 (kickstarting); none: PPO alone")
    p.add_argument("--teacher-coef", type=float, default=PPOConfig.teacher_coef,
                   help="weight of the imitation loss at the first update")
    p.add_argument("--teacher-fraction", type=float, default=PPOConfig.teacher_fraction,
                   help="fraction of --rounds over which the imitation weight decays to 0")
    p.add_argument("--train-size", type=int, default=env.synthetic_train,
                   help="training samples per epoch of the synthetic task")
    p.add_argument("--val-size", type=int, default=env.synthetic_val, help="validation samples of the synthetic task")
    p.add_argument("--workers", type=int, default=None,
                   help=f"processes the environments are split over (default: the CPU cores, at most "
                        f"{DEFAULT_WORKERS} and one per environment); the run steps the same with any number")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest for small hosts)")
    p.add_argument("--data-dir", default=None, help="data directory (cifar10; default: none)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR|learner.pt",
                   help="continue the learner of an earlier run (its configuration; --rounds/--time-budget "
                        "may extend it; default: a new learner)")
    return p


def export_parser() -> OneLineParser:
    """``esper export``."""
    from telemetry_schema.export import FORMATS  # pyarrow: only when exporting or asking how
    p = OneLineParser(prog="esper export", description=_sentence("export"), formatter_class=DefaultsFormatter)
    p.add_argument("run", metavar="RUN", help="the run directory (format 1 or 2; every rank of a distributed run)")
    p.add_argument("dir", metavar="DIR", nargs="?", default=None,
                   help="with --tensorboard: the directory to write the event files to")
    p.add_argument("--format", choices=tuple(FORMATS), default=None,
                   help="table format (default: csv): one file per event kind")
    p.add_argument("--kinds", default=None, metavar="K1,K2",
                   help="only these event kinds (default: every kind that has events)")
    p.add_argument("--out", default=None, metavar="DIR", help="where the tables go (default: RUN/export/FORMAT/)")
    p.add_argument("--tensorboard", action="store_true",
                   help="write TensorBoard event files to DIR instead of tables (needs the tensorboard package)")
    p.add_argument("--force", action="store_true", help="replace files a previous export wrote")
    return p
