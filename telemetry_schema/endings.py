"""How a run ends when its process is told to stop: stop signals become an exception.

Python turns SIGINT (Ctrl-C) into ``KeyboardInterrupt``, so ``with`` blocks and ``finally``
clauses around a run close its log. SIGTERM (``kill``, systemd, ``docker stop``) and SIGHUP
(closing the terminal) instead end the process on the spot by default: no ``run_finished``,
run.json left at ``running``. Inside ``exit_signals()`` they raise ``RunInterrupted`` in the
main thread, so the same code that handles Ctrl-C closes the log as ``interrupted``.

    with exit_signals():
        with create_run(runs_dir, started) as rw:
            train(rw)            # SIGTERM here -> RunInterrupted -> run_finished 'interrupted'

Standard library only (no torch, no esper): the trainer, ``esper ppo`` and tools share it.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

STOP_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
"""The signals that ask a run to stop: Ctrl-C, ``kill``/systemd/docker, a closed terminal."""


class RunInterrupted(KeyboardInterrupt):
    """The process was asked to stop by a signal (``signum``).

    A subclass of ``KeyboardInterrupt`` (so of ``BaseException``, never ``Exception``): every
    place that already treats Ctrl-C as "the user stopped the run" -- ``except
    KeyboardInterrupt`` in the trainer and the command lines, the writer's exit status
    (``interrupted``), exit status 130 -- handles SIGTERM and SIGHUP the same way without
    knowing about signals, and ``except Exception`` blocks cannot swallow a stop request.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum

    @property
    def reason(self) -> str:
        """The ``run_finished`` reason: the signal's name, e.g. 'SIGTERM'."""
        return signal_name(self.signum)

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by this signal: 128 + its number."""
        return 128 + self.signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def ending(exc_type: type[BaseException] | None, exc: BaseException | None) -> tuple[str, str]:
    """(status, reason) of a run leaving a block with this exception (None: it completed).

    ``RunInterrupted`` -> ('interrupted', 'SIGTERM'), a plain KeyboardInterrupt ->
    ('interrupted', 'KeyboardInterrupt'), anything else -> ('failed', 'Type: message').
    """
    if exc_type is None:
        return "completed", ""
    if isinstance(exc, RunInterrupted):
        return "interrupted", exc.reason
    if issubclass(exc_type, KeyboardInterrupt):
        return "interrupted", "KeyboardInterrupt"
    return "failed", f"{exc_type.__name__}: {exc}"


@contextmanager
def exit_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Inside the block, each of ``signals`` raises ``RunInterrupted`` in the main thread.

    - Once per block: after the first signal raised, further ones are ignored until the block
      ends, so a second Ctrl-C or ``kill`` cannot cut short the log's close that the first
      began (SIGKILL still ends the process).
    - A signal whose handler is SIG_IGN is left ignored: ``nohup`` (SIGHUP) and background
      jobs (SIGINT) asked for that.
    - The previous handlers are restored when the block ends, however it ends.
    - Off the main thread (where Python cannot install handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum, frame):
        nonlocal fired
        if fired:
            return
        fired = True
        raise RunInterrupted(signum)

    previous: dict[int, object] = {}
    try:
        for signum in signals:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, handler)
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)
