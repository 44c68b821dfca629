"""Events by kind: what a reader returns and what the fold takes.

``KindTables`` maps each kind to a flat table of its events (envelope columns, then payload
fields), in stream order; ranks merged by wall time. It also carries what the read found
wrong: corrupt or refused streams, and bytes of torn tails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from telemetry_schema.events import KINDS
from telemetry_schema.schema import empty


@dataclass
class KindTables:
    tables: dict[str, pa.Table] = field(default_factory=dict)
    corrupt: list[str] = field(default_factory=list)
    """One line per stream found corrupt or refused."""
    torn_bytes: int = 0
    """Bytes at the ends of streams that do not form a whole message (yet)."""

    def table(self, kind: str) -> pa.Table:
        """``kind``'s events (an empty table of its schema when there are none)."""
        if kind not in KINDS:
            raise KeyError(f"unknown event kind {kind!r}")
        got = self.tables.get(kind)
        return got if got is not None else empty(kind)

    def rows(self, kind: str) -> list[dict]:
        """``kind``'s events as dicts of envelope and payload fields, in order."""
        return self.table(kind).to_pylist()

    @property
    def kinds(self) -> list[str]:
        """Kinds with at least one event, sorted."""
        return sorted(k for k, t in self.tables.items() if t.num_rows)

    @property
    def num_rows(self) -> int:
        return sum(t.num_rows for t in self.tables.values())

    def __len__(self) -> int:
        return self.num_rows

    def extended(self, new: "KindTables") -> "KindTables":
        """These events followed by ``new`` (tables concatenated per kind, no copy)."""
        tables = dict(self.tables)
        for kind, table in new.tables.items():
            have = tables.get(kind)
            tables[kind] = table if have is None else pa.concat_tables([have, table])
        return KindTables(tables, self.corrupt + [c for c in new.corrupt if c not in self.corrupt],
                          new.torn_bytes)
