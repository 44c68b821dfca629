"""``esper train``: the command line, with a rich progress display (the only place that renders)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import subprocess
import sys
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from telemetry_schema.sinks import TelemetryError

from esper.leyline.config import GateConfig, HeuristicConfig, TrainConfig
from esper.nissa.sink import Sink

if TYPE_CHECKING:
    from esper.session import RunSpec

# torch is imported by the commands that need it (``esper --help`` and ``esper export`` do not)
COMMANDS = {"train": "train a morphogenetic model",
            "ppo": "learn the controller with PPO over vectorised environments",
            "export": "write a run's events as CSV, Parquet or JSON Lines tables, or TensorBoard event files"}

STAGE_STYLE = {"TRAINING": "yellow", "BLENDING": "cyan", "HOLDING": "magenta", "FOSSILIZED": "green",
               "PRUNED": "red", "EMBARGOED": "red", "GERMINATED": "blue"}


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # no usage dump: one line, exit 2
        raise CliError(message)


class ProgressSink(Sink):
    """Renders epochs, metrics and each slot's seed and stage."""

    def __init__(self, console: Console, epochs: int, slot_ids: list[str]) -> None:
        self.console = console
        self.progress = Progress(TextColumn("epoch {task.completed:>3.0f}/{task.total:.0f}"), BarColumn(),
                                 TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(), console=console)
        self.task = self.progress.add_task("train", total=epochs, metrics="")
        self.slots = {sid: ["DORMANT", "", "", ""] for sid in slot_ids}  # stage, seed, blueprint, note
        self.live: Live | None = None

    def render(self) -> Group:
        table = Table(box=None, pad_edge=False)
        for col in ("slot", "stage", "seed", "blueprint", "last event"):
            table.add_column(col)
        for sid, (stage, seed, bp, note) in self.slots.items():
            table.add_row(sid, f"[{STAGE_STYLE.get(stage, 'white')}]{stage}[/]", seed, bp, note)
        return Group(self.progress, table)

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.render())

    def epoch_completed(self, epoch, result, host_params, total_params, seconds) -> None:
        extra = f" ppl {result.perplexity:.2f}" if result.perplexity is not None else ""
        self.progress.update(self.task, completed=epoch, metrics=(
            f"loss {result.train_loss:.3f} val_loss {result.val_loss:.3f} val_acc {result.val_acc:5.2f}%"
            f"{extra} params {total_params}"))
        self._refresh()

    def seed_germinated(self, slot_id, seed_id, blueprint, params, blend, tempo, blend_epochs) -> None:
        self.slots[slot_id][1:3] = [seed_id, blueprint]
        self.console.log(f"{slot_id}: germinated {seed_id} ({blueprint}, {params} params)")

    def stage_changed(self, slot_id, seed_id, from_stage, to_stage, reason) -> None:
        self.slots[slot_id][0] = to_stage.name
        if to_stage.name in ("DORMANT",):
            self.slots[slot_id][1:3] = ["", ""]
        self._refresh()

    def gate_evaluated(self, slot_id, seed_id, result) -> None:
        mark = "pass" if result.passed else "fail " + ",".join(result.checks_failed)
        self.slots[slot_id][3] = f"{result.gate.value} {mark}"

    def counterfactual(self, slot_id, seed_id, real_acc, off_acc) -> None:
        self.slots[slot_id][3] = f"contribution {real_acc - off_acc:+.2f}pp"

    def seed_fossilized(self, slot_id, seed_id, reason, initiator, params) -> None:
        self.console.log(f"{slot_id}: [green]fossilized[/] {seed_id}: {reason}")

    def seed_pruned(self, slot_id, seed_id, reason, initiator) -> None:
        self.console.log(f"{slot_id}: [red]pruned[/] {seed_id} ({initiator}): {reason}")

    def governor_panic(self, verdict) -> None:
        self.console.log(f"[red]governor panic[/]: {verdict.reason} (loss {verdict.loss:.4g})")

    def governor_rollback(self, to_epoch, seeds_pruned, reason) -> None:
        self.console.log(f"[red]governor rollback[/] to epoch {to_epoch} ({reason})")


def command_parser() -> OneLineParser:
    """The command list alone, for ``esper --help`` (no torch)."""
    p = OneLineParser(prog="esper", description="Train neural networks that grow, and watch them grow.")
    sub = p.add_subparsers(dest="command", parser_class=OneLineParser)
    for name, text in COMMANDS.items():
        sub.add_parser(name, help=text)
    return p


def make_parser() -> OneLineParser:
    from esper.runtime.tasks import TASK_NAMES, TaskOptions
    p = OneLineParser(prog="esper", description="Train neural networks that grow, and watch them grow.")
    sub = p.add_subparsers(dest="command", parser_class=OneLineParser)
    t = sub.add_parser("train", help=COMMANDS["train"])
    t.add_argument("--task", default="synthetic-images", help=f"one of {', '.join(TASK_NAMES)}")
    t.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    t.add_argument("--controller", default="heuristic", metavar="heuristic|none|policy:PATH",
                   help="who decides: the heuristic, nobody, or a policy trained by `esper ppo`")
    t.add_argument("--slots", default="all", help="'all', a count N (the last N), or slot ids a,b")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    t.add_argument("--runs-dir", default="runs")
    t.add_argument("--run-name", default=None)
    t.add_argument("--gates", choices=("strict", "permissive"), default=GateConfig.mode)
    t.add_argument("--inject-fault", default=None, metavar="nan@EPOCH|spike@EPOCH",
                   help="nan: poison the first training loss of EPOCH (weights go NaN, the governor rolls "
                        "back at once); spike: multiply the val loss x100 for 3 epochs from EPOCH (3 "
                        "statistical anomalies, then a rollback; needs EPOCH > 10 for the loss history)")
    t.add_argument("--data-dir", default=None, help="data directory (cifar10)")
    t.add_argument("--npz-kind", choices=("auto", "image", "signal", "features"), default="auto",
                   help="npz:PATH tasks: what x holds; auto: 4-D and square 3-D image, other 3-D signal, "
                        "2-D features")
    t.add_argument("--batch-size", type=int, default=TaskOptions.batch_size)
    t.add_argument("--train-size", type=int, default=None, help="synthetic-images: training samples")
    t.add_argument("--val-size", type=int, default=None, help="synthetic-images: validation samples")
    t.add_argument("--heuristic", default=None, metavar="KEY=VALUE,...",
                   help="override heuristic controller thresholds, e.g. min_epoch=1,plateau_window=1")
    t.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="data-parallel training on N local processes (re-launches under torch.distributed.run)")
    t.add_argument("--on-telemetry-error", choices=("stop", "continue"), default="stop",
                   help="when the log cannot be written (a full disk): stop training with an error, or "
                        "continue training without a log (default: stop)")
    t.add_argument("--dist-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="distributed runs: how long a collective waits for a dead or stuck rank")
    from esper.simic.cli import add_ppo_arguments
    add_ppo_arguments(sub.add_parser("ppo", help=COMMANDS["ppo"]))
    return p


def spec_from_args(args: argparse.Namespace) -> tuple[RunSpec, str]:
    from esper.runtime.synthetic import SyntheticConfig
    from esper.runtime.tasks import TaskOptions
    from esper.session import RunSpec
    from esper.tolaria.trainer import FaultSpec
    if args.epochs < 1:
        raise CliError("--epochs must be >= 1")
    if args.controller not in ("heuristic", "none") and not args.controller.startswith("policy:"):
        raise CliError(f"--controller {args.controller!r}: expected heuristic, none or policy:PATH")
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise CliError("--device cuda: no CUDA device is available")
    try:
        fault = FaultSpec.parse(args.inject_fault) if args.inject_fault else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.dist_timeout <= 0:
        raise CliError("--dist-timeout must be > 0")
    if args.batch_size < 1:
        raise CliError("--batch-size must be >= 1")
    train = TrainConfig(epochs=args.epochs, seed=args.seed, device=args.device,
                        gates=dataclasses.replace(GateConfig(), mode=args.gates))
    synthetic = SyntheticConfig()
    if args.train_size is not None:
        synthetic = dataclasses.replace(synthetic, train_size=args.train_size)
    if args.val_size is not None:
        synthetic = dataclasses.replace(synthetic, val_size=args.val_size)
    spec = RunSpec(task=args.task, controller=args.controller, runs_dir=args.runs_dir,
                   run_name=args.run_name, fault=fault, train=train,
                   heuristic=parse_heuristic(args.heuristic), dist_timeout_s=args.dist_timeout,
                   telemetry_errors=args.on_telemetry_error,
                   task_options=TaskOptions(data_dir=args.data_dir, batch_size=args.batch_size,
                                            synthetic=synthetic, npz_kind=args.npz_kind))
    return spec, args.slots


def parse_heuristic(text: str | None) -> HeuristicConfig:
    """'min_epoch=1,plateau_pp=100' -> HeuristicConfig with those fields replaced (numbers only)."""
    cfg = HeuristicConfig()
    if not text:
        return cfg
    fields = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        default = getattr(cfg, key, None)
        if not sep or key not in fields or not isinstance(default, (int, float)) or isinstance(default, bool):
            raise CliError(f"--heuristic {item!r}: expected KEY=NUMBER with KEY a numeric field of HeuristicConfig")
        try:
            changes[key] = type(default)(value)
        except ValueError:
            raise CliError(f"--heuristic {item!r}: {value!r} is not a {type(default).__name__}") from None
    return dataclasses.replace(cfg, **changes)


def strip_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def relaunch(args: argparse.Namespace, argv: list[str]) -> int:
    """``esper train --nproc N ...`` -> ``python -m torch.distributed.run --standalone
    --nproc-per-node N -m esper train ...`` (the same arguments minus --nproc)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
           "-m", "esper", *strip_nproc(argv)]
    sys.stderr.write(f"esper: launching {args.nproc} ranks: {' '.join(cmd[1:])}\n")
    return subprocess.call(cmd)


def train(args: argparse.Namespace, console: Console, argv: list[str] | None = None) -> int:
    from esper.distributed import RankFailure, launched_by_torchrun
    from esper.session import build_model, run_training
    spec, slots_text = spec_from_args(args)
    if args.nproc is not None:
        if args.nproc < 1:
            raise CliError("--nproc must be >= 1")
        if args.nproc > 1 and not launched_by_torchrun():
            return relaunch(args, list(sys.argv[1:] if argv is None else argv))
    rank = int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0
    try:
        _, probe = build_model(spec, slots_text)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise CliError(str(exc).strip("'\"")) from None
    spec = dataclasses.replace(spec, slots=list(probe.order))
    progress = ProgressSink(console, spec.train.epochs, list(probe.order))

    def on_start(run_dir) -> None:
        console.print(f"run directory: [bold]{run_dir}[/]")
        console.print(f"watch it: [bold]esper-tui {run_dir}[/]  or  "
                      f"[bold]esper-dashboard --logdir {spec.runs_dir}[/]")

    try:
        if rank == 0:
            with Live(progress.render(), console=console, refresh_per_second=4) as live:
                progress.live = live
                outcome = run_training(spec, progress, on_start)
        else:  # one progress display per run: rank 0's
            outcome = run_training(spec)
    except (ValueError, FileNotFoundError) as exc:
        raise CliError(f"run failed: {exc}") from None
    except TelemetryError as exc:
        raise CliError(f"the log could not be written, training stopped: {exc} "
                       f"(it ends at its last complete batch; --on-telemetry-error continue trains on "
                       f"without a log)") from None
    except RankFailure as exc:
        sys.stderr.write(f"esper: rank {rank}: distributed run failed: {exc}\n")
        return 3
    if rank != 0:
        return 130 if outcome.status == "interrupted" else 0
    console.line()
    s = outcome.summary
    final = f"{s.final.val_acc:.2f}%" if s.final else "n/a"
    console.print(f"{outcome.status}: {s.epochs} epochs in {s.seconds:.1f}s, final val_acc {final}, "
                  f"seeds germinated {s.germinated}, fossilized {s.fossilized}, pruned {s.pruned}, "
                  f"governor rollbacks {s.rollbacks}")
    console.print(f"log: {outcome.run_dir / 'events'}")
    return 130 if outcome.status == "interrupted" else 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console(stderr=False)
    words = sys.argv[1:] if argv is None else list(argv)
    try:
        if words[:1] == ["export"]:
            from esper.export import run_export
            return run_export(words[1:])
        if words[:1] not in (["train"], ["ppo"]):
            command_parser().parse_args(words)  # --help, or a one-line error for an unknown command
            raise CliError("usage: esper train|ppo|export [...] (try: esper --help)")
        args = make_parser().parse_args(argv)
        if args.command == "ppo":
            from esper.simic.cli import run_ppo
            try:
                return run_ppo(args, console)
            except ValueError as exc:
                raise CliError(str(exc)) from None
        if args.command != "train":
            raise CliError("usage: esper train|ppo|export [...] (try: esper --help)")
        return train(args, console, argv)
    except CliError as exc:
        sys.stderr.write(f"esper: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("esper: interrupted\n")
        return 130
