"""Pieces tested without an app: formatting, the run model's replay moves, filters, the import rule."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from telemetry_schema.eventlog import EventLog
from telemetry_schema.rundir import read_run
from telemetry_schema.runmodel import SPEEDS, RunModel
from tui import fmt
from tui.widgets.eventlog import EventFilter, FilteredRows, filter_rows
from tui.widgets.timeline import timeline_lines

from .conftest import run_events


def test_tui_never_imports_torch_or_esper():
    code = ("import sys, tui.cli, tui.app, tui.screens.picker, tui.screens.detail; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'esper')); "
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("value,width,expected", [(0.0, 4, "    "), (1.0, 4, "████"), (0.5, 4, "██  "),
                                                  (None, 3, "   "), (2.0, 2, "██"), (float("nan"), 2, "  ")])
def test_bar(value, width, expected):
    assert fmt.bar(value, width) == expected


def test_numbers_and_durations():
    assert [fmt.si(v) for v in (999, 1_234, 2_500_000, None)] == ["999", "1.2k", "2.5M", "—"]
    assert [fmt.duration(s) for s in (5, 184, 7_500, 200_000, None)] == ["5s", "3m04s", "2h05m", "2d07h", "—"]
    assert fmt.ratio_text(0.02).plain == "0.020 <0.05" and "red" in str(fmt.ratio_text(0.02).style)
    assert fmt.ratio_text(0.2, short=True).plain == "0.200✓" and fmt.ratio_text(None).plain == "unmeasured"


def test_downsample_keeps_ends_and_drops_nan():
    x = np.arange(10_000.0)
    y = np.where(x == 5, np.nan, x)
    xs, ys = fmt.downsample(x, y, 100)
    assert len(xs) <= 102 and xs[0] == 0 and xs[-1] == 9_999 and not np.isnan(ys).any()


def test_downsample_keeps_a_spike():
    y = np.ones(100_000)
    y[61_234] = 50.0
    xs, ys = fmt.downsample(np.arange(len(y)), y, 600)
    assert len(xs) <= 600 and max(ys) == 50.0 and xs[ys.index(50.0)] == 61_234


def test_session_replay_moves(run_dir):
    tables = read_run(run_dir)
    kinds = [e["kind"] for e in run_events(tables)]
    s = RunModel()
    s.ingest(tables, 0, True, now=0.0)
    s.start_replay(0)
    assert s.target("next:panic") == kinds.index("governor_panic") + 1
    s.seek(s.target("next:panic"))
    second = kinds.index("governor_panic", s.cursor) + 1
    assert s.target("next:panic") == second
    assert s.target("prev:panic") == 0  # the cursor sits on the first panic: none before it
    assert s.missing("prev:panic") == "no earlier panic" and s.missing("next:panic") is None
    s.seek(second)
    assert s.target("prev:panic") == kinds.index("governor_panic") + 1
    assert s.target("end") == len(kinds) and s.target("start") == 0
    s.seek(len(kinds))
    assert s.missing("next:gate_failure") == "no later gate failure" and s.missing("prev:panic") is None
    assert s.missing("end") is None
    assert s.is_cheap(s.cursor + 10) and not s.is_cheap(s.cursor + 10**7)
    s.speed_index = len(SPEEDS) - 1
    s.change_speed(+1)
    assert s.speed == SPEEDS[-1]
    s.playing = True
    s.seek(len(kinds) - 3)
    assert s.play_target() == len(kinds) and not s.playing


def test_incremental_filter_matches_full_filter(run_dir):
    tables = read_run(run_dir)
    log = EventLog(tables)
    flt = EventFilter(kind="gate_evaluated", slot="r0c1")
    rows = FilteredRows()
    for limit in (100, 5_000, len(log)):
        got, count = rows.update(log, flt, limit)
        assert count == len(got) and np.array_equal(got, filter_rows(log, flt, limit))
    got, count = rows.update(log, flt, 3_000)  # replay went back
    assert np.array_equal(got, filter_rows(log, flt, 3_000))
    events = run_events(tables)
    expected = [p for p, e in enumerate(events) if e["kind"] == "gate_evaluated" and e["slot"] == "r0c1"]
    assert filter_rows(log, flt, len(log)).tolist() == expected and expected
    assert rows.update(log, EventFilter(), 42) == (None, 42)


def test_timeline_lanes(run_state):
    lines = timeline_lines(run_state, 80)
    assert [line.plain[:4] for line in lines[:4]] == ["r0c0", "r0c1", "r0c2", "gov "]
    assert all(line.cell_len <= 80 for line in lines)
    assert lines[0].plain.count("◆") == sum(m.kind == "fossilized" and m.slot == "r0c0" for m in run_state.marks)
    assert "↺" in lines[3].plain and "!" in lines[3].plain
