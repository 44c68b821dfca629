"""Arrow <-> numpy without pyarrow's pandas bridge: same values as pyarrow's own conversion."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from telemetry_schema.arrays import choose_memory_pool, codes, floats, from_numpy, rows_equal, to_numpy

ARRAYS = {
    "int64": pa.array([3, 1, 4, 1, 5], pa.int64()),
    "int16": pa.array([-2, 7, 0], pa.int16()),
    "float32": pa.array([0.5, -1.25, 3.0], pa.float32()),
    "float with nulls": pa.array([1.5, None, -2.0, None], pa.float64()),
    "bool": pa.array([True, False, True, True, False, False, False, False, True, False]),
    "string": pa.array(["a", None, "b"]),
    "int with nulls": pa.array([1, None, 3], pa.int32()),
    "timestamp": pa.array([1_700_000_000_000_000, 1_700_000_001_500_000], pa.timestamp("us", tz="UTC")),
}


@pytest.mark.parametrize("name", ARRAYS)
@pytest.mark.parametrize("offset", [0, 1])
def test_to_numpy_gives_what_pyarrow_gives(name, offset):
    arr = ARRAYS[name].slice(offset)
    ours, theirs = to_numpy(arr), arr.to_numpy(zero_copy_only=False)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def test_to_numpy_of_chunked_arrays_concatenates_the_chunks():
    col = pa.chunked_array([pa.array([1.0, None]), pa.array([], pa.float64()), pa.array([3.0])])
    np.testing.assert_array_equal(to_numpy(col), [1.0, np.nan, 3.0])
    assert to_numpy(pa.chunked_array([], pa.int64())).dtype == np.int64
    assert len(to_numpy(pa.chunked_array([], pa.int64()))) == 0


def test_floats_turns_nulls_into_nan():
    np.testing.assert_array_equal(floats(pa.array([1, None, 3], pa.int64())), [1.0, np.nan, 3.0])
    assert floats(pa.array([2, 4], pa.int32())).dtype == np.float64


def test_from_numpy_round_trips_numbers_and_masks():
    for values in (np.arange(5, dtype=np.int64), np.array([0.5, -1.0]), np.array([True, False, True])):
        arr = from_numpy(values)
        assert arr.null_count == 0 and arr.to_pylist() == values.tolist()
    assert from_numpy(np.arange(10)[::3]).to_pylist() == [0, 3, 6, 9]  # not contiguous


def test_rows_equal_and_codes_handle_nulls_and_absent_values():
    col = pa.chunked_array([pa.array(["x", None, "y"]), pa.array(["x", "z"])])
    assert rows_equal(col, "x").tolist() == [0, 3]
    assert rows_equal(col, "nope").tolist() == []
    enc = pc.dictionary_encode(col).combine_chunks()
    got = codes(enc)
    assert got[1] == -1 and (got[[0, 3]] == got[0]).all() and len(set(got.tolist())) == 4


def test_reading_and_folding_a_log_does_not_import_pandas(tmp_path):
    """pyarrow's pandas bridge would import pandas (0.2-0.4 s) on the viewers' first read."""
    pytest.importorskip("pandas")  # otherwise there is nothing to avoid
    from telemetry_schema.synth import SynthConfig, generate

    run = generate(tmp_path, SynthConfig(events=5_000, seed=3, run_id="r"))  # (the writer may import it)
    code = (
        "import sys\n"
        f"run = {str(run)!r}\n"
        "from telemetry_schema.eventlog import EventLog\n"
        "from telemetry_schema.reader import RunFollower\n"
        "from telemetry_schema.replay import Replay\n"
        "from telemetry_schema.search import search\n"
        "log = EventLog(RunFollower(run).poll())\n"
        "replay = Replay(log)\n"
        "replay.seek(100); replay.next('gate_failure')\n"
        "hits = search(log, 'G2 passed:false')\n"
        "state = replay.seek(len(log))\n"
        "print(state.events, len(state.gates), state.started_wall is not None, 'pandas' in sys.modules, len(hits))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) > 4_000 and int(out[1]) > 0 and out[2] == "True" and int(out[4]) > 0
    assert out[3] == "False"


def test_a_chunked_array_of_no_chunks_converts_without_importing_pandas():
    """A search over a list column whose lists are all empty flattens to no chunks at all."""
    pytest.importorskip("pandas")
    code = (
        "import sys, pyarrow as pa\n"
        "from telemetry_schema.arrays import to_numpy\n"
        "got = [to_numpy(pa.chunked_array([], t)) for t in (pa.bool_(), pa.int64(), pa.float64())]\n"
        "print([(str(a.dtype), len(a)) for a in got], 'pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[('bool', 0), ('int64', 0), ('float64', 0)] False"


def test_choose_memory_pool_prefers_jemalloc_and_leaves_a_users_choice_alone():
    before = pa.default_memory_pool()
    try:
        pa.set_memory_pool(pa.system_memory_pool())
        assert choose_memory_pool({"ARROW_DEFAULT_MEMORY_POOL": "system"}) == "system"
        assert pa.default_memory_pool().backend_name == "system"
        chosen = choose_memory_pool({})
        assert chosen == pa.default_memory_pool().backend_name
        try:
            pa.jemalloc_memory_pool()
        except NotImplementedError:
            assert chosen == "system"
        else:
            assert chosen == "jemalloc"
        assert pa.allocate_buffer(1 << 20).size == 1 << 20  # allocates from it
    finally:
        pa.set_memory_pool(before)
