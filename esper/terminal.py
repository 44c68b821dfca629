"""Command-line output that survives the loss of its terminal.

Closing the terminal window sends SIGHUP (the run closes its log as 'interrupted', see
``telemetry_schema.endings``), and from then on every write to the terminal fails with EIO
(EPIPE when the reader of a pipe went away). Without care the progress display's next write
replaces the interruption by an ``OSError``: the run would be logged as failed, and the exit
status would be a traceback's. ``TerminalStream`` makes such output a silent no-op instead.
"""

from __future__ import annotations

import errno
import os
from typing import TextIO

LOST_TERMINAL_ERRNOS = frozenset({errno.EIO, errno.EPIPE})
"""errno values meaning the other end of the output is gone for good."""


def is_lost_terminal(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in LOST_TERMINAL_ERRNOS


class TerminalStream:
    """A text stream (give it to ``rich.console.Console(file=...)``) whose writes stop, without
    an error, once the terminal behind it is gone; every other attribute is the stream's own."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.lost = False
        """True once a write or flush found the terminal gone."""

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self._lose(exc)
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream.flush()
            except OSError as exc:
                self._lose(exc)

    def _lose(self, exc: OSError) -> None:
        """Stop writing; point the stream's descriptor at /dev/null so that the interpreter's
        own last flush of it at exit does not fail as well."""
        if not is_lost_terminal(exc):
            raise exc
        self.lost = True
        try:
            fd = self._stream.fileno()
        except (OSError, ValueError, AttributeError):
            return  # not a file descriptor (a StringIO, say): nothing is flushed at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
