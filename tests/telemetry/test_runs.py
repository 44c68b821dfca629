"""Run-list rows: ``summarize`` (read and fold a run) and ``summary_of`` (the same row from a fold a
viewer already holds) agree, corrupt streams included."""

from __future__ import annotations

import shutil

from telemetry_schema.fold import Fold
from telemetry_schema.reader import RunFollower
from telemetry_schema.runs import summarize, summary_of
from telemetry_schema.synth import SynthConfig, generate

NOW = 2_000_000_000.0


def corrupt_middle(path) -> None:
    """Flip bytes in the middle of a stream: a complete message that fails its checksum."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    path.write_bytes(bytes(data))


def followed_row(run_dir):
    """The row a viewer following the run (polls folded as they come) makes. A flush whose
    batches are not all on disk is held back; once a stream is found corrupt the viewer takes
    what it has (the missing batch may be in that stream, and never comes)."""
    follower = RunFollower(run_dir)
    fold = Fold()
    for _ in range(2):
        fold.update(follower.poll(final=bool(follower.corrupt)))
    return summary_of(run_dir, fold.state, NOW, follower.corrupt)


def test_summary_of_a_followed_run_equals_summarize(tmp_path):
    run_dir = generate(tmp_path, SynthConfig(events=3_000, seed=2, run_id="done"))
    read, followed = summarize(run_dir, NOW), followed_row(run_dir)
    assert read == followed
    assert read.status == "completed" and read.events > 3_000 and read.epochs > 0 and read.error == ""


def test_summary_of_names_corrupt_streams_as_summarize_does(tmp_path):
    src = generate(tmp_path, SynthConfig(events=3_000, seed=2, run_id="done"))
    run_dir = tmp_path / "bad"
    shutil.copytree(src, run_dir)
    corrupt_middle(run_dir / "events" / "batch_metrics.rank0.arrows")
    # the writer's summary file cannot know of damage done on disk since: read the log
    read, followed = summarize(run_dir, NOW, read_log=True), followed_row(run_dir)
    assert read == followed
    assert "batch_metrics.rank0.arrows: corrupt at byte" in read.error
    assert 0 < read.events < summarize(src, NOW, read_log=True).events  # the rest, and this one's start


def test_summarize_of_an_unreadable_run_is_an_error_row(tmp_path):
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "events.arrows").write_bytes(b"this is not an arrow stream")
    row = summarize(run_dir, NOW)
    assert row.status == "error" and "not a readable format 1 log" in row.error and row.events == 0
