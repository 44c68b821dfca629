"""A log that cannot be written (a full disk): training stops with one line, or goes on without
a log when asked; either way the log on disk ends at its last complete batch."""

from __future__ import annotations

import errno
import os

import pytest

from esper.cli import main
from esper.session import run_training
from telemetry_schema import TelemetryError, read_run
from telemetry_schema.rundir import read_manifest
from telemetry_schema.sinks import DirectorySink
from tests.esper.test_end_to_end import small_spec


@pytest.fixture
def disk_fills_up(monkeypatch):
    """The disk is full once the run has started: every write to a log but the run_started
    stream fails part-way, as a real full disk's does (whenever the writer happens to flush)."""

    def write(fd, data):
        if not os.readlink(f"/proc/self/fd/{fd}").endswith("run_started.rank0.arrows"):
            os.write(fd, data[: len(data) // 3])
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    monkeypatch.setattr(DirectorySink, "write", staticmethod(write))


def test_a_full_disk_stops_training_and_leaves_a_readable_log(tmp_path, disk_fills_up):
    with pytest.raises(TelemetryError, match="No space left on device"):
        run_training(small_spec(tmp_path, epochs=40))
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    log = read_run(run_dir)
    assert log.corrupt == [] and log.torn_bytes == 0  # every stream ends at a whole batch
    assert log.kinds == ["run_started"]
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "failed" and "No space left" in manifest["reason"]


def test_asked_to_continue_training_goes_on_without_its_log(tmp_path, disk_fills_up):
    out = run_training(small_spec(tmp_path, epochs=12, telemetry_errors="continue"))
    assert out.status == "completed" and out.summary.epochs == 12
    assert (out.run_dir / "model.pt").is_file()
    log = read_run(out.run_dir)
    assert log.corrupt == [] and log.torn_bytes == 0 and log.kinds == ["run_started"]
    assert "the log stops early" in read_manifest(out.run_dir)["reason"]


def test_the_command_line_says_so_in_one_line(tmp_path, disk_fills_up, capsys):
    rc = main(["train", "--epochs", "30", "--train-size", "256", "--val-size", "128",
               "--runs-dir", str(tmp_path), "--run-name", "full"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert "the log could not be written, training stopped" in line and "No space left" in line
