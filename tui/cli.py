"""The ``esper-tui`` command: open a run, a log file or a directory of runs."""

from __future__ import annotations

import argparse
import sys

from tui.source import TargetError, resolve


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="esper-tui", description="Watch an Esper run live, or replay it.")
    p.add_argument("path", nargs="?", default=None,
                   help="run directory, .arrows log, or directory of runs (default: newest run in ./runs)")
    p.add_argument("--replay", action="store_true", help="open as a replay (cursor at the first event)")
    p.add_argument("--poll", type=float, default=0.2, help="seconds between polls of a live log")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        target = resolve(args.path)
    except TargetError as exc:
        sys.stderr.write(f"esper-tui: {exc}\n")
        return 2
    from tui.loader import Prefetch

    prefetch = Prefetch(target) if target.kind != "runs" else None  # reads while Textual loads
    from tui.app import EsperApp

    app = EsperApp(target, replay=args.replay, poll_interval=args.poll, prefetch=prefetch)
    app.run()
    if app.error:
        sys.stderr.write(f"esper-tui: {app.error}\n")
        return 1
    return app.return_code or 0


if __name__ == "__main__":
    raise SystemExit(main())
