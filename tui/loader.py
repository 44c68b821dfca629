"""The first read of a log, started as early as possible (before Textual has even loaded).

Reading and folding a million events takes about 0.3 s alone on 2 cores; a ``Prefetch`` runs it
in a plain thread from the moment the target is known, so it overlaps Textual's import, and
``esper-tui`` (``tui.cli.make_app``) then lets it finish alone for up to ``HEAD_START_S`` before
the app starts, because the two slowed each other down.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pyarrow as pa

from telemetry_schema.reader import LogError
from tui.scope import ScopedFold
from tui.source import Source, Target


@dataclass
class FirstRead:
    """What the first poll found: the events, their fold, or the error that stopped it."""

    source: Source | None
    table: pa.Table | None = None
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
            table = source.poll()
            fold = ScopedFold()  # rank 0, every environment
            fold.update(table)
            self._result = FirstRead(source, table, fold)
        except LogError as exc:
            self._result = FirstRead(source, error=str(exc))
        except Exception as exc:  # any other failure is shown too: never an endless "loading…"
            self._result = FirstRead(source, error=f"cannot show {self.target.path}: {type(exc).__name__}: {exc}")
        finally:
            self._done.set()

    def result(self, timeout: float | None = None) -> FirstRead | None:
        return self._result if self._done.wait(timeout) else None
