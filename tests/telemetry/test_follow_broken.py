"""A follower does not hold back the flushes of a rank one of whose streams is corrupt or
refused: the rows they wait for will never come."""

from __future__ import annotations

from telemetry_schema import events as ev
from telemetry_schema.reader import RunFollower
from telemetry_schema.sinks import MemorySink
from telemetry_schema.writer import EventWriter, WriterConfig


class FixedClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate_and_stage(tmp_path):
    """A run directory's events folder and one flush of a gate and a stage change (rank 0)."""
    sink = MemorySink()
    clock = FixedClock()
    w = EventWriter(sink, config=WriterConfig(heartbeat_s=0, flush_interval=3600), clock=clock,
                    wall_clock=clock, background=False)
    w.emit(ev.GateEvaluated(gate="G2", target_stage="BLENDING", passed=True), slot="s0")
    w.emit(ev.StageChanged(from_stage="TRAINING", to_stage="BLENDING"), slot="s0")
    w.flush()
    events = tmp_path / "run" / "events"
    events.mkdir(parents=True)
    (events / "gate_evaluated.rank0.arrows").write_bytes(sink.streams["gate_evaluated"])
    return events, sink


def test_a_flush_missing_a_corrupt_streams_rows_is_shown_at_once(tmp_path):
    events, sink = gate_and_stage(tmp_path)
    (events / "stage_changed.rank0.arrows").write_bytes(b"garbage where the stage change was")
    follower = RunFollower(tmp_path / "run", clock=FixedClock(), hold_s=5.0)
    got = follower.poll()  # no time passes: not held for hold_s
    assert [r["gate"] for r in got.rows("gate_evaluated")] == ["G2"] and follower.pending == 0
    assert len(follower.corrupt) == 1 and "stage_changed.rank0.arrows: corrupt at byte 0" in follower.corrupt[0]


def test_a_flush_missing_a_refused_streams_rows_is_shown_at_once(tmp_path):
    events, sink = gate_and_stage(tmp_path)
    outside = tmp_path / "elsewhere.arrows"
    outside.write_bytes(sink.streams["stage_changed"])
    (events / "stage_changed.rank0.arrows").symlink_to(outside)  # a link out of the run: refused
    follower = RunFollower(tmp_path / "run", clock=FixedClock(), hold_s=5.0)
    assert follower.poll().num_rows == 1 and follower.pending == 0
    assert "leads outside the run directory" in follower.corrupt[0]


def test_a_whole_run_still_waits_for_a_flush_not_all_on_disk(tmp_path):
    events, sink = gate_and_stage(tmp_path)  # the stage change is simply not written yet
    clock = FixedClock()
    follower = RunFollower(tmp_path / "run", clock=clock, hold_s=5.0)
    assert follower.poll().num_rows == 0 and follower.pending == 1 and follower.corrupt == []
    clock.now += 5.0
    assert follower.poll().num_rows == 1
