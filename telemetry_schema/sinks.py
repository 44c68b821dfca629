"""Where a writer's streams go: one file per kind in a directory, or memory (for tests).

Each message is appended in one ``write`` call. A write that fails (a full disk, an I/O
error) is undone by truncating the stream back to the end of its last complete message,
so the log on disk always ends at a whole batch and any reader can open it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from telemetry_schema.codec import EOS


class TelemetryError(OSError):
    """The event log could not be written; the message is one line naming the file."""

    def __init__(self, errno_: int | None, message: str) -> None:
        super().__init__(message)
        self.errno = errno_


def stream_file_name(kind: str, rank: int) -> str:
    """The file of one kind's stream of one rank: ``<kind>.rank<R>.arrows``."""
    return f"{kind}.rank{rank}.arrows"


class DirectorySink:
    """Streams as files ``<directory>/<kind>.rank<R>.arrows``; refuses to overwrite one."""

    write = staticmethod(os.write)
    """How bytes reach a file (a test replaces it to fill the disk)."""

    def __init__(self, directory: str | Path, rank: int) -> None:
        self.directory = Path(directory)
        self.rank = rank
        self._fds: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = sorted(self.directory.glob(f"*.rank{rank}.arrows"))
        if existing:
            raise FileExistsError(f"{existing[0]}: already exists; a log is never overwritten")

    def path(self, kind: str) -> Path:
        return self.directory / stream_file_name(kind, self.rank)

    def has(self, kind: str) -> bool:
        return kind in self._fds

    def create(self, kind: str, schema_message: bytes) -> None:
        path = self.path(kind)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise TelemetryError(exc.errno, f"{path}: cannot create ({exc.strerror})") from None
        self._fds[kind], self._sizes[kind] = fd, 0
        self.append(kind, schema_message)

    def append(self, kind: str, data: bytes) -> None:
        fd, size = self._fds[kind], self._sizes[kind]
        try:
            written = self.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            self._undo(kind, size)
            raise TelemetryError(exc.errno, f"{self.path(kind)}: write failed ({exc.strerror or exc})") from None
        self._sizes[kind] = size + len(data)

    def _undo(self, kind: str, size: int) -> None:
        try:
            os.ftruncate(self._fds[kind], size)
        except OSError:
            pass  # nothing more can be done; a reader reports the partial message as a torn tail

    def sync(self) -> None:
        """Nothing to do: each append is one write to the file (visible to readers at once)."""

    def close(self) -> None:
        """End every stream (an end-of-stream marker where there is room) and close the files."""
        for kind, fd in self._fds.items():
            try:
                self.append(kind, EOS)
            except TelemetryError:
                pass
            os.close(fd)
        self._fds.clear()


class MemorySink:
    """Streams kept in memory, one ``bytearray`` a kind (``streams``), for tests and tools."""

    def __init__(self, rank: int = 0, fail_after: int | None = None) -> None:
        self.rank = rank
        self.streams: dict[str, bytearray] = {}
        self.fail_after = fail_after
        """Total bytes after which appends fail as a full disk would (None: never)."""
        self._total = 0

    def has(self, kind: str) -> bool:
        return kind in self.streams

    def create(self, kind: str, schema_message: bytes) -> None:
        self.streams[kind] = bytearray()
        self.append(kind, schema_message)

    def append(self, kind: str, data: bytes) -> None:
        if self.fail_after is not None and self._total + len(data) > self.fail_after:
            raise TelemetryError(errno.ENOSPC, f"<memory>/{kind}: write failed (No space left on device)")
        self.streams[kind] += data
        self._total += len(data)

    def sync(self) -> None:
        pass

    def close(self) -> None:
        for kind in self.streams:
            try:
                self.append(kind, EOS)
            except TelemetryError:
                pass
