"""The first read of a log, started as early as possible (before Textual has even loaded).

Reading and folding a million events takes a few tenths of a second on 2 cores; a
``Prefetch`` runs it in a plain thread from the moment the target is known, so it overlaps
Textual's import, and ``esper-tui`` (``tui.cli.make_app``) then lets it finish alone for up to
``HEAD_START_S`` before the app starts, because the two slowed each other down.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from telemetry_schema.eventlog import EventLog
from telemetry_schema.runmodel import ScopedFold
from tui.source import Source, Target


@dataclass
class FirstRead:
    """What the first poll found: the events, their fold, or the error that stopped it."""

    source: Source
    log: EventLog | None = None
    fold: ScopedFold | None = None
    error: str = ""


HEAD_START_S = 1.0
"""How long ``esper-tui`` lets the first read run alone before it starts the app beside it."""


class Prefetch:
    """Polls and folds a target once, in a daemon thread; ``result()`` waits for it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._done = threading.Event()
        self._result: FirstRead | None = None
        threading.Thread(target=self._run, name="esper-tui-prefetch", daemon=True).start()

    def _run(self) -> None:
        source = None
        try:
            source = Source(self.target)
            chunk = source.poll()
            fold = ScopedFold()  # rank 0, every environment
            fold.update(chunk)
            self._result = FirstRead(source, EventLog(chunk), fold)
        except Exception as exc:  # any failure is shown, never a "loading…" that never ends
            self._result = FirstRead(source, error=one_line(exc, self.target.path))
        finally:
            self._done.set()

    def result(self, timeout: float | None = None) -> FirstRead | None:
        return self._result if self._done.wait(timeout) else None


def one_line(exc: BaseException, path) -> str:
    """An error as one line naming the log (a LogError already does)."""
    from telemetry_schema.reader import LogError

    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if isinstance(exc, LogError) else f"{path}: cannot read the log ({type(exc).__name__}: {text})"
