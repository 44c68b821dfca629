"""``esper export``: a run's events out, as tables or as TensorBoard event files.

    esper export RUN [--format csv|parquet|jsonl] [--kinds K1,K2] [--out DIR] [--force]
    esper export --tensorboard RUN DIR [--force]

Imports no torch for tables (``telemetry_schema.export`` does the work); ``--tensorboard``
writes through torch's SummaryWriter (``esper.tensorboard_export``).
"""

from __future__ import annotations

import sys

from esper.flags import CliError, export_parser
from telemetry_schema.export import ExportError, export_run, parse_kinds


def run_export(argv: list[str]) -> int:
    """Parse ``esper export`` arguments and export; raises CliError for bad input."""
    args = export_parser().parse_args(argv)
    try:
        if args.tensorboard:
            return _tensorboard(args)
        return _tables(args)
    except ExportError as exc:
        raise CliError(str(exc)) from None


def _tables(args) -> int:
    if args.dir is not None:
        raise CliError(f"unexpected argument {args.dir!r} (tables go to --out DIR; TensorBoard files: --tensorboard RUN DIR)")
    fmt = args.format or "csv"
    kinds = parse_kinds(args.kinds) if args.kinds is not None else None
    done = export_run(args.run, fmt, args.out, kinds, args.force)
    _warn(done.warnings)
    width = max(len(p.name) for p in done.files.values())
    for kind, path in done.files.items():
        sys.stdout.write(f"  {path.name:<{width}}  {done.rows[kind]:>9,} events\n")
    sys.stdout.write(f"wrote {len(done.files)} {fmt} tables ({sum(done.rows.values()):,} events) to {done.out}\n")
    return 0


def _tensorboard(args) -> int:
    if args.dir is None:
        raise CliError("--tensorboard needs a directory to write to: esper export --tensorboard RUN DIR")
    for flag, value in (("--format", args.format), ("--kinds", args.kinds), ("--out", args.out)):
        if value is not None:
            raise CliError(f"{flag} does not apply to --tensorboard (it writes every scalar series to DIR)")
    from esper.tensorboard_export import export_tensorboard, require_tensorboard

    require_tensorboard()
    done = export_tensorboard(args.run, args.dir, args.force)
    _warn(done.warnings)
    tags = sum(len(points) for points in done.scalars.values())
    dirs = len(done.scalars)
    sys.stdout.write(f"wrote {tags} scalar series ({done.points:,} points) in {dirs} "
                     f"director{'y' if dirs == 1 else 'ies'} under {done.out}; view: tensorboard --logdir {done.out}\n")
    return 0


def _warn(lines: list[str]) -> None:
    for line in lines:
        sys.stderr.write(f"esper: warning: {line}\n")
