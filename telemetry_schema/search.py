"""Event search: one query language for both viewers, run over each kind's table at once.

A query is terms separated by spaces; an event matches when every term does:

    text          case-insensitive substring of the kind, slot, seed or any text field
    /regex/       a regular expression (case-insensitive) over the same
    FIELD:VALUE   a field containing VALUE: kind:stage, slot:r0c1, gate:G2, passed:false
                  (any envelope or payload field; text compares as a case-insensitive
                  substring, numbers and booleans exactly)
    FIELD=VALUE   a field equal to VALUE: kind=log, slot=r0c1, epoch=12
    FIELD>N       a numeric payload or envelope field above N (also <, >=, <=), e.g. loss>10

A term that names a field no kind has, or compares a field that is not a number, is an error
(``QueryError``, one line), never a silent "no match".
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_schema.arrays import floats, rows_equal, to_numpy
from telemetry_schema.eventlog import EventLog
from telemetry_schema.events import KINDS
from telemetry_schema.schema import kind_schema

_TERM = re.compile(r"^(?P<field>[a-z_][a-z0-9_]*)(?P<op>:|=|>=|<=|>|<)(?P<value>.*)$")


class QueryError(ValueError):
    """A query that cannot be run; the message is one line."""


@dataclass(frozen=True)
class Term:
    field: str | None  # None: any text field (and the kind)
    op: str            # 'sub', 're', ':', '=', '>', '<', '>=', '<='
    value: str


def parse(query: str) -> list[Term]:
    """The terms of ``query`` (an empty query has none and matches everything)."""
    terms = []
    for word in query.split():
        if len(word) >= 2 and word.startswith("/") and word.endswith("/"):
            try:
                re.compile(word[1:-1])
                # Arrow's engine (RE2) runs the search and refuses some of Python's syntax
                pc.match_substring_regex(pa.array([""]), word[1:-1], ignore_case=True)
            except re.error as exc:
                raise QueryError(f"bad regular expression {word!r}: {exc}") from None
            except pa.ArrowInvalid as exc:
                reason = (str(exc).splitlines() or ["not supported"])[0]
                raise QueryError(f"bad regular expression {word!r}: {reason}") from None
            terms.append(Term(None, "re", word[1:-1]))
            continue
        m = _TERM.match(word)
        if m and m["value"]:
            terms.append(Term(m["field"], m["op"], m["value"]))
        else:
            terms.append(Term(None, "sub", word))
    return terms


def _texty(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or (pa.types.is_list(t) and pa.types.is_string(t.value_type))


def _hit(values: pa.ChunkedArray, term: Term) -> np.ndarray:
    """Rows of a text (or list of text) column where ``term`` matches."""
    if pa.types.is_list(values.type):
        flat, parents = pc.list_flatten(values), to_numpy(pc.list_parent_indices(values))
        out = np.zeros(len(values), bool)
        out[parents[_hit(pa.chunked_array([flat]) if not isinstance(flat, pa.ChunkedArray) else flat, term)]] = True
        return out
    if term.op == "re":
        hit = pc.match_substring_regex(values, term.value, ignore_case=True)
    else:
        hit = pc.match_substring(values, term.value, ignore_case=True)
    return to_numpy(pc.and_kleene(pc.is_valid(hit), hit))  # a null string: no match


def _field_hit(kind: str, table: pa.Table, term: Term) -> np.ndarray | None:
    """Rows of one kind matching a field term; None when the kind has no such field."""
    if term.field == "kind":
        hit = term.value == kind if term.op == "=" else term.value.lower() in kind.lower()
        return np.full(table.num_rows, hit and term.op in (":", "="))
    if term.field not in table.column_names:
        return None
    col = table.column(term.field)
    t = col.type
    if term.op in (":", "="):
        if pa.types.is_string(t) and term.op == "=":
            return _equal_rows(col, term.value)
        if _texty(t):
            return _hit(col, Term(None, "sub", term.value))
        if pa.types.is_boolean(t):
            want = term.value.lower() in ("true", "1", "yes")
            hit = col if want else pc.invert(col)
            return to_numpy(pc.and_kleene(pc.is_valid(hit), hit))
        return _compare(col, "==", term)
    return _compare(col, term.op, term)


def _equal_rows(col: pa.ChunkedArray, value: str) -> np.ndarray:
    mask = np.zeros(len(col), bool)
    mask[rows_equal(col, value)] = True
    return mask


def _compare(col: pa.ChunkedArray, op: str, term: Term) -> np.ndarray:
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise QueryError(f"{term.field}{term.op}{term.value}: {term.field} is not a number")
    try:
        bound = float(term.value)
    except ValueError:
        raise QueryError(f"{term.field}{term.op}{term.value}: {term.value!r} is not a number") from None
    values = floats(col)
    with np.errstate(invalid="ignore"):
        return {"==": values == bound, ">": values > bound, "<": values < bound,
                ">=": values >= bound, "<=": values <= bound}[op]


def _kind_hits(kind: str, table: pa.Table, terms: list[Term]) -> np.ndarray | None:
    """Rows of one kind matching every term (None: the kind cannot match at all)."""
    mask = np.ones(table.num_rows, bool)
    for term in terms:
        if term.field is None:
            hit = np.full(table.num_rows, _kind_matches(kind, term))
            for f in table.schema:
                if _texty(f.type):
                    hit |= _hit(table.column(f.name), term)
        else:
            hit = _field_hit(kind, table, term)
            if hit is None:
                return None
        mask &= hit
        if not mask.any():
            return None
    return mask


def _kind_matches(kind: str, term: Term) -> bool:
    if term.op == "re":
        return re.search(term.value, kind, re.IGNORECASE) is not None
    return term.value.lower() in kind.lower()


@functools.cache
def catalogue_fields() -> frozenset[str]:
    """Every field some kind of event has (envelope and payload), and ``kind``: a query may
    name a field of a kind the log holds no event of yet (it then matches nothing)."""
    return frozenset({"kind"}.union(*(kind_schema(k).names for k in KINDS)))


def search(log: EventLog, query: str, *, rank: int | None = None, env: int | None = None,
           start: int = 0, stop: int | None = None) -> np.ndarray:
    """Positions (ascending) in [start, stop) of the events that match ``query`` and, when
    given, come from ``rank`` and ``env`` (kinds about the whole run match any env)."""
    terms = parse(query)
    stop = len(log) if stop is None else stop
    known = catalogue_fields() | {f for k in log.kinds for f in log.tables.table(k).column_names}
    for term in terms:
        if term.field is not None and term.field not in known:
            raise QueryError(f"{term.field}{term.op}{term.value}: no event has a field {term.field!r}")
    found = []
    for kind in log.kinds:
        pos = log.positions(kind)
        a, b = np.searchsorted(pos, [start, stop])
        if b <= a:
            continue
        table = log.tables.tables[kind].slice(int(a), int(b - a))
        mask = _kind_hits(kind, table, terms) if terms else np.ones(table.num_rows, bool)
        if mask is None:
            continue
        if rank is not None:
            mask &= to_numpy(table.column("rank")) == rank
        if env is not None and "env" in table.column_names:
            mask &= to_numpy(table.column("env")) == env
        found.append(pos[a:b][mask])
    if not found:
        return np.zeros(0, np.int64)
    return np.sort(np.concatenate(found))


def count_by_kind(log: EventLog, positions: np.ndarray) -> dict[str, int]:
    """How many of ``positions`` are events of each kind."""
    kind_of, _ = log.order()
    counts = np.bincount(kind_of[positions], minlength=len(log.kinds)) if len(positions) else []
    return {k: int(c) for k, c in zip(log.kinds, counts) if c}

