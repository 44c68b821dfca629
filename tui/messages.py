"""Small messages the follow and seek workers post to the app (they own no shared state)."""

from __future__ import annotations

from textual.message import Message

from telemetry_schema.eventlog import EventLog
from telemetry_schema.runmodel import ScopedFold, ScopedReplay
from telemetry_schema.tables import KindTables


class Loaded(Message):
    """The first poll: every event already in the log, folded off the UI thread."""

    def __init__(self, log: EventLog, fold: ScopedFold, torn_bytes: int, ended: bool, manifest: dict,
                 corrupt: list[str]) -> None:
        super().__init__()
        self.log, self.fold, self.torn_bytes, self.ended = log, fold, torn_bytes, ended
        self.manifest, self.corrupt = manifest, corrupt


class EventsArrived(Message):
    """New events from a later poll (small: what was flushed since the last poll)."""

    def __init__(self, chunk: KindTables, torn_bytes: int, ended: bool, corrupt: list[str]) -> None:
        super().__init__()
        self.chunk, self.torn_bytes, self.ended, self.corrupt = chunk, torn_bytes, ended, corrupt


class SourceFailed(Message):
    """The log cannot be read; ``text`` is one line naming the file."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ReplayReady(Message):
    """A replay folded to a far cursor in a worker; ``request`` tells stale results apart."""

    def __init__(self, replay: ScopedReplay, request: int) -> None:
        super().__init__()
        self.replay, self.request = replay, request


class Refolded(Message):
    """The log folded again for another rank / environment; ``request`` tells stale results apart."""

    def __init__(self, fold: ScopedFold, replay: ScopedReplay | None, request: int) -> None:
        super().__init__()
        self.fold, self.replay, self.request = fold, replay, request
