"""The ``esper-tui`` command: open a run, a log file or a directory of runs."""

from __future__ import annotations

import argparse
import gc
import sys
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # the modules that load pyarrow and Textual are imported with the collector paused
    from tui.app import EsperApp
    from tui.source import Target


POLL_RANGE_S = (0.01, 60.0)
"""Accepted ``--poll`` seconds: below, the follower would spin on the CPU; above, a live run
would look frozen."""


class UsageError(Exception):
    """A bad command line; the message is one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit status 2 (main), no usage dump
        raise UsageError(message)


def poll_seconds(text: str) -> float:
    """``--poll``'s value: a number of seconds within ``POLL_RANGE_S``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    lo, hi = POLL_RANGE_S
    if not lo <= value <= hi:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text} s is out of range: give {lo:g} to {hi:g} seconds")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="esper-tui", description="Watch an Esper run live, or replay it.")
    p.add_argument("path", nargs="?", default=None,
                   help="run directory, .arrows log, or directory of runs (default: newest run in ./runs)")
    p.add_argument("--replay", action="store_true", help="open as a replay (cursor at the first event)")
    p.add_argument("--poll", type=poll_seconds, default=0.2,
                   help=f"seconds between polls of a live log ({POLL_RANGE_S[0]:g} to {POLL_RANGE_S[1]:g})")
    return p.parse_args(argv)


class StartupGC:
    """Python's cyclic garbage collector, paused from construction until ``resume()``.

    ``esper-tui``'s imports (pyarrow, Textual), first read, app construction and first paint
    make about 100k objects that live as long as the process, and the collector's passes over
    them are a sizeable share of a small log's start-up (``bench/bench_tui.py``). ``resume`` freezes the objects made so far (the collector skips them from then on:
    ``gc.freeze``) and turns collection back on; ``esper-tui`` calls it once the first screen
    is painted. Calls after the first do nothing.
    """

    def __init__(self) -> None:
        self._enabled = gc.isenabled()
        self._paused = True
        gc.disable()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            gc.freeze()
            if self._enabled:
                gc.enable()


def make_app(target: Target, *, replay: bool = False, poll: float = 0.2,
             on_first_screen: Callable[[], None] | None = None) -> EsperApp:
    """The app for ``target``, with the run's first read started before Textual is loaded.

    Textual's start-up and the read compete for the interpreter's lock: once Textual is loaded,
    the read is let run alone for up to ``HEAD_START_S``, and the app starts with the run in
    hand (a 1M-event log's first screen came 0.1-0.4 s sooner than with both at once); a
    longer read goes on beside the app, which shows it is loading. pyarrow allocates from
    jemalloc (``telemetry_schema.arrays.choose_memory_pool``)."""
    from telemetry_schema.arrays import choose_memory_pool
    from tui.loader import HEAD_START_S, Prefetch

    choose_memory_pool()
    prefetch = Prefetch(target) if target.kind != "runs" else None
    from tui.app import EsperApp

    if prefetch is not None:
        prefetch.result(timeout=HEAD_START_S)
    return EsperApp(target, replay=replay, poll_interval=poll, prefetch=prefetch, on_first_screen=on_first_screen)


def main(argv: list[str] | None = None) -> int:
    startup = StartupGC()
    try:
        try:
            args = parse_args(argv)
        except UsageError as exc:
            sys.stderr.write(f"esper-tui: error: {exc}\n")
            return 2
        from tui.source import TargetError, resolve

        try:
            target = resolve(args.path)
        except TargetError as exc:
            sys.stderr.write(f"esper-tui: {exc}\n")
            return 2
        app = make_app(target, replay=args.replay, poll=args.poll, on_first_screen=startup.resume)
        app.run()
    finally:
        startup.resume()
    if app.error:
        sys.stderr.write(f"esper-tui: {app.error}\n")
        return 1
    return app.return_code or 0


if __name__ == "__main__":
    raise SystemExit(main())
