"""Arrow <-> numpy for the fold's columns, without pyarrow's pandas bridge.

pyarrow converts through its pandas layer (``Array.to_numpy``, ``pa.array``, ``pa.scalar``, a
Python value given to a compute function), and that layer imports pandas on first use: 0.2 to
0.4 s of one core, the largest single cost of a viewer's first screen of a small log. The
functions here take numeric and boolean arrays through DLPack and raw buffers instead, and
compare strings through their dictionary encoding; anything else falls back to pyarrow's own
conversion (which is correct, only slower to start).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def to_numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The values as a numpy array, as ``to_numpy(zero_copy_only=False)`` gives them.

    Integers and floats without nulls are zero-copy views (read-only) of a single chunk;
    floats with nulls give NaN there; booleans without nulls are unpacked; timestamps are
    ``datetime64``. Other types (strings, nested, integers with nulls) go through pyarrow.
    """
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 1:
            return to_numpy(values.chunk(0))
        if values.num_chunks == 0:
            return _empty(values.type)
        return np.concatenate([to_numpy(c) for c in values.chunks])
    t = values.type
    if len(values) == 0:
        return _empty(t)
    if pa.types.is_timestamp(t) and values.null_count == 0:
        return to_numpy(values.view(pa.int64())).view(f"datetime64[{t.unit}]")
    if pa.types.is_boolean(t) and values.null_count == 0:
        bits = np.frombuffer(values.buffers()[1], np.uint8)
        return np.unpackbits(bits, count=values.offset + len(values), bitorder="little")[values.offset:].astype(bool)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        if values.null_count == 0:
            return np.from_dlpack(values)
        if pa.types.is_floating(t):
            return np.from_dlpack(pc.coalesce(values, from_numpy(np.full(len(values), np.nan, values.type.to_pandas_dtype()))))
    return values.to_numpy(zero_copy_only=False)


_EMPTY = {pa.bool_(): np.bool_, pa.float64(): np.float64, pa.float32(): np.float32, pa.int64(): np.int64,
          pa.int32(): np.int32, pa.int16(): np.int16, pa.int8(): np.int8}


def _empty(t: pa.DataType) -> np.ndarray:
    """No values of ``t`` (pyarrow's conversion of an empty array goes through pandas)."""
    if pa.types.is_timestamp(t):
        return np.zeros(0, f"datetime64[{t.unit}]")
    return np.zeros(0, _EMPTY.get(t, object))


def floats(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The values as float64, nulls as NaN."""
    if values.null_count == 0:
        return to_numpy(values).astype(np.float64)
    return to_numpy(pc.cast(values, pa.float64()))


def from_numpy(array: np.ndarray) -> pa.Array:
    """A 1-D numpy array of numbers or booleans as an Arrow array without nulls (zero-copy
    for numbers)."""
    array = np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        bits = np.packbits(array, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(array), [None, pa.py_buffer(bits)])
    return pa.Array.from_buffers(pa.from_numpy_dtype(array.dtype), len(array), [None, pa.py_buffer(array)])


def rows_equal(column: pa.Array | pa.ChunkedArray, value: str) -> np.ndarray:
    """The indices of the rows of a string column equal to ``value`` (ascending)."""
    enc = pc.dictionary_encode(column)
    enc = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
    names = enc.dictionary.to_pylist()
    if value not in names:
        return np.zeros(0, np.int64)
    return np.flatnonzero(codes(enc) == names.index(value))


def codes(encoded: pa.DictionaryArray) -> np.ndarray:
    """The dictionary indices of each row, -1 for a null."""
    indices = encoded.indices
    if indices.null_count:
        indices = pc.coalesce(indices, from_numpy(np.full(len(indices), -1, indices.type.to_pandas_dtype())))
    return to_numpy(indices)


def take_rows(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """The rows (ascending indices) of a table; a no-op when every row is taken.

    Taken batch by batch: ``Table.take`` concatenates every chunk of every column first, which
    costs the whole table for a kind that has ten rows in it.
    """
    if len(rows) == table.num_rows:
        return table
    batches = table.to_batches()
    if len(batches) == 1:
        return table.take(from_numpy(rows))
    ends = np.cumsum([b.num_rows for b in batches])
    cuts = np.searchsorted(rows, ends)
    parts, lo, start = [], 0, 0
    for batch, end, hi in zip(batches, ends, cuts):
        if hi > lo:
            parts.append(batch.take(from_numpy(rows[lo:hi] - start)))
        lo, start = hi, end
    return pa.Table.from_batches(parts, schema=table.schema)


def choose_memory_pool(environ: Mapping[str, str] = os.environ) -> str:
    """Make pyarrow's default allocator jemalloc (the system's where the build has none), and
    say which; a viewer calls this once, first thing. ``ARROW_DEFAULT_MEMORY_POOL``, when set,
    is the user's choice and is left alone.

    pyarrow's default, mimalloc, hands out transparent huge pages; on a kernel that compacts
    memory for them on demand (``defrag=madvise``, a common default) first touching a fresh
    log's decoded columns cost up to 0.6 s of kernel time, depending on how fragmented the
    machine's memory was, where jemalloc's plain pages cost a steady 0.15 s (1M events read
    and folded; ``bench/bench_tui.py``).
    """
    if environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return pa.default_memory_pool().backend_name
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        pool = pa.system_memory_pool()
    pa.set_memory_pool(pool)
    return pool.backend_name
