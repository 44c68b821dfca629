"""``esper train``: the command line, with a rich progress display (the only place that renders)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import subprocess
import sys
import time
from types import MappingProxyType
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from telemetry_schema.endings import RunInterrupted, interrupted_exit_code
from telemetry_schema.rundir import exact_run_dir
from telemetry_schema.sinks import TelemetryError
from telemetry_schema.tags import TagError, check_tag

from esper.flags import COMMANDS, CliError, OneLineParser, command_parser, make_parser  # noqa: F401 (API)
from esper.leyline.config import GateConfig, HeuristicConfig, TrainConfig
from esper.leyline.tasks import default_epochs
from esper.progress import RunBoard, format_duration
from esper.terminal import TerminalStream

if TYPE_CHECKING:
    from esper.session import RunSpec

__all__ = ["COMMANDS", "CliError", "OneLineParser", "command_parser", "make_parser", "main", "make_console",
           "spec_from_args", "parse_heuristic", "parse_overrides", "parse_init_seeds", "train"]

# torch is imported by the commands that need it when they run (``--help`` imports none)
STAGE_STYLE = MappingProxyType({"TRAINING": "yellow", "BLENDING": "cyan", "HOLDING": "magenta",
                                "FOSSILIZED": "green", "PRUNED": "red", "EMBARGOED": "red", "GERMINATED": "blue"})


class LiveProgress(RunBoard):
    """The terminal's display: a progress bar (epoch N/M, metrics, elapsed, ETA) over a table of
    each slot's stage, seed and last event, redrawn in place; lifecycle moments print above it."""

    def __init__(self, console: Console, epochs: int, slot_ids: list[str], **kw) -> None:
        super().__init__(epochs, slot_ids, **kw)
        self.console = console
        self.progress = Progress(TextColumn("epoch {task.completed:>3.0f}/{task.total:.0f}"), BarColumn(),
                                 TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(),
                                 TextColumn("eta {task.fields[eta]}"), console=console)
        self.task = self.progress.add_task("train", total=epochs, metrics="", eta="?")
        self.live: Live | None = None

    def render(self) -> Group:
        table = Table(box=None, pad_edge=False)
        for col in ("slot", "stage", "seed", "blueprint", "last event"):
            table.add_column(col)
        for sid, (stage, seed, bp, note) in self.slots.items():
            table.add_row(sid, Text(stage, style=STAGE_STYLE.get(stage, "white")), Text(seed), Text(bp), Text(note))
        return Group(self.progress, table)

    def changed(self) -> None:
        if self.live is not None:
            self.live.update(self.render())

    def epoch_done(self) -> None:
        self.progress.update(self.task, completed=self.epoch, metrics=self.metrics,
                             eta=format_duration(self.eta.remaining()))
        self.changed()

    def note(self, text: str, style: str = "") -> None:
        self.console.print(Text(text, style=style))


class PlainProgress(RunBoard):
    """Output into a pipe or a file: one line per epoch, and one per lifecycle moment (indented)."""

    def __init__(self, out, epochs: int, slot_ids: list[str], **kw) -> None:
        super().__init__(epochs, slot_ids, **kw)
        self.out = out

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def epoch_done(self) -> None:
        self._line(self.epoch_line())

    def note(self, text: str, style: str = "") -> None:
        self._line("  " + text)


def make_console(stream=None) -> Console:
    """The console of a command: no source locations on its log lines, and, when the output is
    not a terminal, no wrapping (a line of a log file is a line of output)."""
    console = Console(file=TerminalStream(stream or sys.stdout), log_path=False)
    console.soft_wrap = not console.is_terminal
    return console


def progress_display(console: Console, epochs: int, slot_ids: list[str]) -> RunBoard:
    if console.is_terminal:
        return LiveProgress(console, epochs, slot_ids)
    return PlainProgress(console.file, epochs, slot_ids)


def check_run_args(args: argparse.Namespace) -> tuple[str, ...]:
    """The flags that name and tag a run (``esper train`` and ``esper ppo``): a run named exactly
    must not exist yet; the tags (returned) must be valid. Raises CliError; touches nothing."""
    try:
        tags = tuple(check_tag(t) for t in args.tags or ())
        if args.run_name is not None and not args.run_name_suffix:
            exact_run_dir(args.runs_dir, args.run_name)
    except (TagError, ValueError) as exc:
        raise CliError(str(exc)) from None
    return tags


def spec_from_args(args: argparse.Namespace) -> tuple[RunSpec, str]:
    from esper.leyline.tasks import SyntheticConfig
    from esper.runtime.tasks import TaskOptions
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
                   run_name=args.run_name, run_name_exact=not args.run_name_suffix,
                   tags=check_run_args(args), fault=fault, train=train,
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
    started = time.monotonic()  # the summary's time is the whole command's, set-up and saving included
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
    progress = progress_display(console, spec.train.epochs, list(probe.order))

    def on_start(run_dir) -> None:
        progress.eta.restart()
        console.print(f"run directory: [bold]{escape(str(run_dir))}[/]")
        console.print(f"watch it: [bold]esper-tui {escape(str(run_dir))}[/]  or  "
                      f"[bold]esper-dashboard --logdir {escape(str(spec.runs_dir))}[/]")

    try:
        if rank != 0:  # one progress display per run: rank 0's
            outcome = run_training(spec)
        elif isinstance(progress, LiveProgress):
            with Live(progress.render(), console=console, refresh_per_second=4) as live:
                progress.live = live
                outcome = run_training(spec, progress, on_start)
        else:
            outcome = run_training(spec, progress, on_start)
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
    console.print(f"{outcome.status}: {s.epochs} epochs in {format_duration(time.monotonic() - started)} "
                  f"(training {format_duration(s.seconds)}), final val_acc {final}, "
                  f"seeds germinated {s.germinated}, fossilized {s.fossilized}, pruned {s.pruned}, "
                  f"governor rollbacks {s.rollbacks}; {s.params} parameters, {s.flops / 1e9:.1f} GFLOP")
    console.print(f"log: {escape(str(outcome.run_dir / 'events'))}")
    return code


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = make_console()  # a closed terminal stops output, not the run
    words = sys.argv[1:] if argv is None else list(argv)
    try:
        if words[:1] == ["export"]:
            from esper.export import run_export
            return run_export(words[1:])
        if words[:1] not in (["train"], ["ppo"]):
            command_parser().parse_args(words)  # --help, or a one-line error for an unknown command
            raise CliError("usage: esper train|ppo|export [...] (try: esper --help)")
        args = make_parser().parse_args(words)
        if args.command == "ppo":
            check_run_args(args)
            from esper.simic.cli import run_ppo
            try:
                return run_ppo(args, console)
            except ValueError as exc:
                raise CliError(str(exc)) from None
        return train(args, console, argv)
    except CliError as exc:
        sys.stderr.write(f"esper: error: {exc}\n")
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP as RunInterrupted, outside a run
        sys.stderr.write("esper: interrupted\n")
        return exc.exit_code if isinstance(exc, RunInterrupted) else 130
