"""``esper train``: the command line, with a rich progress display (the only place that renders)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import subprocess
import sys
from types import MappingProxyType
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from telemetry_schema.endings import RunInterrupted, interrupted_exit_code
from telemetry_schema.sinks import TelemetryError

from esper.leyline.config import GateConfig, HeuristicConfig, TrainConfig
from esper.nissa.sink import Sink
from esper.terminal import TerminalStream

if TYPE_CHECKING:
    from esper.session import RunSpec

# torch is imported by the commands that need it (``esper --help`` and ``esper export`` do not)
COMMANDS = MappingProxyType({"train": "train a morphogenetic model",
            "ppo": "learn the controller with PPO over vectorised environments",
            "export": "write a run's events as CSV, Parquet or JSON Lines tables, or TensorBoard event files"})

STAGE_STYLE = MappingProxyType({"TRAINING": "yellow", "BLENDING": "cyan", "HOLDING": "magenta",
                                "FOSSILIZED": "green", "PRUNED": "red", "EMBARGOED": "red", "GERMINATED": "blue"})


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

    def epoch_completed(self, epoch, result, host_params, total_params, seconds, compute=None) -> None:
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

    def counterfactual(self, slot_id, seed_id, real_acc, off_acc, se=None) -> None:
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
    t.add_argument("--epochs", type=int, default=None,
                   help=f"epochs to train (default {TrainConfig.epochs}; pydoc-text 15)")
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
                        "statistical anomalies, then a rollback; needs EPOCH > 10 for the loss history). "
                        "A fault that cannot fire is refused")
    t.add_argument("--data-dir", default=None, help="data directory (cifar10)")
    t.add_argument("--npz-kind", choices=("auto", "image", "signal", "features"), default="auto",
                   help="npz:PATH tasks: what x holds; auto: 4-D and square 3-D image, other 3-D signal, "
                        "2-D features")
    t.add_argument("--batch-size", type=int, default=TaskOptions.batch_size)
    t.add_argument("--train-size", type=int, default=None, help="synthetic-images: training samples")
    t.add_argument("--val-size", type=int, default=None, help="synthetic-images: validation samples")
    t.add_argument("--gate", default=None, metavar="KEY=VALUE,...",
                   help="override quality-gate thresholds (GateConfig), e.g. min_training_epochs=1")
    t.add_argument("--heuristic", default=None, metavar="KEY=VALUE,...",
                   help="override heuristic controller thresholds, e.g. min_epoch=1,plateau_window=1")
    t.add_argument("--host-width", type=int, default=None, metavar="N",
                   help="host width: the CNN's first-block channels (default 8) or the transformer's "
                        "embedding width (default 64)")
    t.add_argument("--host-depth", type=int, default=None, metavar="N",
                   help="host depth: the CNN's conv blocks (default 3) or the transformer's layers (default 2)")
    t.add_argument("--init-seeds", default=None, metavar="SLOT=BLUEPRINT,...",
                   help="seeds built and fossilized before epoch 1 (a grown architecture trained from the "
                        "start), e.g. block1=conv_light,block2=conv_heavy")
    t.add_argument("--max-params", type=int, default=None, metavar="N",
                   help="growth budget: the heuristic grows no seed that takes host + seeds past N parameters")
    t.add_argument("--max-flops-ratio", type=float, default=None, metavar="X",
                   help="growth budget: ... nor past X times the host's forward FLOPs per sample")
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
    from esper.runtime.tasks import TaskOptions, default_epochs
    from esper.session import RunSpec
    from esper.tolaria.trainer import FaultSpec
    if args.epochs is None:
        args.epochs = default_epochs(args.task, TrainConfig.epochs)
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
    if not args.dist_timeout > 0:  # NaN too
        raise CliError("--dist-timeout must be > 0")
    if args.batch_size < 1:
        raise CliError("--batch-size must be >= 1")
    gates = parse_overrides(dataclasses.replace(GateConfig(), mode=args.gates), args.gate, "--gate")
    train = TrainConfig(epochs=args.epochs, seed=args.seed, device=args.device, gates=gates)
    if fault is not None:
        try:
            fault.check(train.epochs, train.governor)  # warnings are logged when the run starts
        except ValueError as exc:
            raise CliError(str(exc)) from None
    synthetic = SyntheticConfig()
    if args.train_size is not None:
        synthetic = dataclasses.replace(synthetic, train_size=args.train_size)
    if args.val_size is not None:
        synthetic = dataclasses.replace(synthetic, val_size=args.val_size)
    spec = RunSpec(task=args.task, controller=args.controller, runs_dir=args.runs_dir,
                   run_name=args.run_name, fault=fault, train=train,
                   heuristic=heuristic_from_args(args), dist_timeout_s=args.dist_timeout,
                   telemetry_errors=args.on_telemetry_error, init_seeds=parse_init_seeds(args.init_seeds),
                   task_options=TaskOptions(data_dir=args.data_dir, batch_size=args.batch_size,
                                            synthetic=synthetic, npz_kind=args.npz_kind,
                                            host_width=args.host_width, host_depth=args.host_depth))
    return spec, args.slots


def heuristic_from_args(args: argparse.Namespace) -> HeuristicConfig:
    """--heuristic KEY=VALUE,... and the budget flags (which win over the same keys in --heuristic)."""
    cfg = parse_heuristic(args.heuristic)
    for flag, key in (("max_params", "max_params"), ("max_flops_ratio", "max_flops_ratio")):
        value = getattr(args, flag)
        if value is not None:
            if value <= 0:
                raise CliError(f"--{flag.replace('_', '-')} must be > 0")
            cfg = dataclasses.replace(cfg, **{key: value})
    return cfg


def parse_init_seeds(text: str | None) -> list[tuple[str, str]]:
    """'block1=conv_light,block2=conv_heavy' -> [('block1', 'conv_light'), ('block2', 'conv_heavy')]."""
    pairs = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        slot, sep, blueprint = (part.strip() for part in item.partition("="))
        if not sep or not slot or not blueprint:
            raise CliError(f"--init-seeds {item!r}: expected SLOT=BLUEPRINT")
        if slot in dict(pairs):
            raise CliError(f"--init-seeds: slot {slot} given twice")
        pairs.append((slot, blueprint))
    return pairs


def check_init_seeds(pairs: list[tuple[str, str]], model) -> None:
    """Each initial seed names an enabled slot of the model and a blueprint of its topology."""
    from esper.kasmina.blueprints import blueprint_names
    known = blueprint_names(model.topology)
    for slot, blueprint in pairs:
        if slot not in model.slots:
            raise CliError(f"--init-seeds {slot}={blueprint}: no slot {slot} (enabled: {', '.join(model.order)})")
        if blueprint not in known:
            raise CliError(f"--init-seeds {slot}={blueprint}: unknown blueprint; {model.topology} "
                           f"blueprints are {', '.join(known)}")


CHOICES = MappingProxyType({"trigger": ("plateau", "early"), "blueprint_order": ("rotation", "cheapest"),
                            "slot_preference": ("last", "first"), "mode": ("strict", "permissive")})
"""The allowed values of the word fields of the configs that --heuristic and --gate override."""


def parse_heuristic(text: str | None, cfg: HeuristicConfig | None = None) -> HeuristicConfig:
    """'min_epoch=1,trigger=early,blueprints=conv_light+attention' -> ``cfg`` (default HeuristicConfig)
    with those fields replaced: numbers, a choice for the word fields, '+'-joined blueprint lists."""
    return parse_overrides(cfg or HeuristicConfig(), text, "--heuristic")


def parse_overrides(cfg, text: str | None, flag: str):
    """A config dataclass with 'KEY=VALUE,...' applied (numbers, words, '+'-joined lists)."""
    if not text:
        return cfg
    fields = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key not in fields or isinstance(getattr(cfg, key), (dict, bool)):
            raise CliError(f"{flag} {item!r}: expected KEY=VALUE with KEY a number, word or list field of "
                           f"{type(cfg).__name__}")
        changes[key] = _override_value(key, value, getattr(cfg, key), f"{flag} {item!r}")
    return dataclasses.replace(cfg, **changes)


def _override_value(key: str, value: str, default, where: str):
    if isinstance(default, tuple):
        return tuple(v for v in value.split("+") if v)
    if isinstance(default, str):
        if value not in CHOICES.get(key, (value,)):
            raise CliError(f"{where}: {key} is one of {', '.join(CHOICES[key])}")
        return value
    try:
        return type(default)(value)
    except ValueError:
        raise CliError(f"{where}: {value!r} is not a {type(default).__name__}") from None


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
    from esper.session import ModelSaveError, build_model, make_controller, prepare_runs_dir, run_training
    spec, slots_text = spec_from_args(args)
    if args.nproc is not None:
        if args.nproc < 1:
            raise CliError("--nproc must be >= 1")
        if args.nproc > 1 and not launched_by_torchrun():
            return relaunch(args, list(sys.argv[1:] if argv is None else argv))
    rank = int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0
    try:
        task, probe = build_model(spec, slots_text)
        make_controller(spec, task.topology)  # a bad policy.pt is refused before the run starts
        prepare_runs_dir(spec.runs_dir)  # last: input refused above leaves no runs directory behind
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise CliError(str(exc).strip("'\"")) from None
    check_init_seeds(spec.init_seeds, probe)
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
    except ModelSaveError as exc:  # the log is closed as failed; the weights are lost
        sys.stderr.write(f"esper: error: {exc}\n")
        return 1
    except RankFailure as exc:
        sys.stderr.write(f"esper: rank {rank}: distributed run failed: {exc}\n")
        return 3
    code = interrupted_exit_code(outcome.reason) if outcome.status == "interrupted" else 0
    if rank != 0:
        return code
    console.line()
    s = outcome.summary
    final = f"{s.final.val_acc:.2f}%" if s.final else "n/a"
    console.print(f"{outcome.status}: {s.epochs} epochs in {s.seconds:.1f}s, final val_acc {final}, "
                  f"seeds germinated {s.germinated}, fossilized {s.fossilized}, pruned {s.pruned}, "
                  f"governor rollbacks {s.rollbacks}; {s.params} parameters, {s.flops / 1e9:.1f} GFLOP")
    console.print(f"log: {outcome.run_dir / 'events'}")
    return code


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console(file=TerminalStream(sys.stdout))  # a closed terminal stops output, not the run
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
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP as RunInterrupted, outside a run
        sys.stderr.write("esper: interrupted\n")
        return exc.exit_code if isinstance(exc, RunInterrupted) else 130
