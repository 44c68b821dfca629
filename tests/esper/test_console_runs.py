"""What ``esper train`` and ``esper ppo`` print into a pipe, and the run directory they make:
exactly ``--run-name``, refused when taken, with a timestamp on request, tagged with ``--tag``."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import pytest

from esper.cli import main, make_console
from esper.flags import make_parser
from telemetry_schema import read_run
from telemetry_schema.rundir import read_manifest
from telemetry_schema.tags import read_tags

TINY = ["--epochs", "3", "--train-size", "128", "--val-size", "64", "--batch-size", "32",
        "--heuristic", "min_epoch=1,plateau_window=1"]
EPOCH_LINE = re.compile(r"^epoch (\d+)/3 loss [\d.]+ val_loss [\d.]+ val_acc [\d.]+% params \d+ \| seeds .+, "
                        r"fossilized \d+, pruned \d+ \| elapsed \d+:\d\d:\d\d eta (\d+:\d\d:\d\d|\?)$")


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory):
    """A tiny ``esper train`` with stdout a pipe, under a runs directory whose path is longer than 80 columns."""
    runs = tmp_path_factory.mktemp("runs") / ("a-long-directory-name-" * 4) / "runs"
    proc = subprocess.run([sys.executable, "-m", "esper", "train", *TINY, "--runs-dir", str(runs),
                           "--run-name", "exact", "--tag", "baseline", "--tag", "lr 1e-3"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return runs, proc.stdout.splitlines()


def test_piped_output_has_one_plain_line_per_epoch(piped_run):
    _, lines = piped_run
    epochs = [m for m in map(EPOCH_LINE.match, lines) if m]
    assert [int(m.group(1)) for m in epochs] == [1, 2, 3]
    assert len([ln for ln in lines if ln.startswith("epoch")]) == 3
    assert epochs[-1].group(2) == "0:00:00"  # nothing left after the last epoch


def test_piped_output_has_no_source_locations_nor_wrapped_lines(piped_run):
    runs, lines = piped_run
    assert not [ln for ln in lines if re.search(r"\.py:\d+", ln)]
    assert f"run directory: {runs / 'exact'}" in lines  # the long path on one line
    assert f"log: {runs / 'exact' / 'events'}" in lines
    assert not [ln for ln in lines if ln and not ln.startswith(("epoch ", "  ", "run directory:", "watch it:",
                                                                  "completed:", "log:"))]


def test_the_summary_gives_the_whole_commands_time_and_the_training_time(piped_run):
    _, lines = piped_run
    summary = [ln for ln in lines if ln.startswith("completed:")]
    assert len(summary) == 1
    m = re.match(r"completed: 3 epochs in (\d+):(\d\d):(\d\d) \(training (\d+):(\d\d):(\d\d)\), final val_acc",
                 summary[0])
    assert m, summary[0]
    whole, training = (int(h) * 3600 + int(mi) * 60 + int(s) for h, mi, s in (m.groups()[:3], m.groups()[3:]))
    assert whole >= training


def test_run_name_is_the_run_directory_and_tags_are_written(piped_run):
    runs, _ = piped_run
    assert sorted(p.name for p in runs.iterdir()) == ["exact"]
    assert read_manifest(runs / "exact")["run_id"] == "exact"
    assert read_run(runs / "exact").rows("run_finished")[0]["status"] == "completed"
    assert read_tags(runs / "exact") == ["baseline", "lr 1e-3"]


def test_a_taken_run_name_is_refused_in_one_line_and_nothing_is_touched(piped_run, capsys):
    runs, _ = piped_run
    before = {p: p.stat().st_mtime_ns for p in (runs / "exact").rglob("*")}
    assert main(["train", *TINY, "--runs-dir", str(runs), "--run-name", "exact"]) == 2
    err = capsys.readouterr().err
    assert err == (f"esper: error: {runs / 'exact'} exists already: choose another --run-name, or add "
                   f"--run-name-suffix for exact-YYYYmmdd-HHMMSS\n")
    assert {p: p.stat().st_mtime_ns for p in (runs / "exact").rglob("*")} == before


@pytest.mark.parametrize("argv, message", [
    (["--run-name", "a/b"], "--run-name 'a/b': use 1-128 letters"),
    (["--run-name", "my run"], "--run-name 'my run': use 1-128 letters"),
    (["--tag", "x" * 41], "bad tag 'xxxx"),
    (["--tag", "[red]"], "bad tag '[red]'"),
])
@pytest.mark.parametrize("command", ["train", "ppo"])
def test_bad_names_and_tags_are_refused_before_anything_is_made(tmp_path, capsys, command, argv, message):
    assert main([command, "--runs-dir", str(tmp_path / "runs"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("esper: error: " + message) and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_a_taken_ppo_run_name_is_refused(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    assert main(["ppo", "--runs-dir", str(tmp_path), "--run-name", "p"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"] and not list((tmp_path / "p").iterdir())


def test_run_name_suffix_adds_the_timestamp(tmp_path):
    from esper.cli import spec_from_args
    from esper.session import run_training
    (tmp_path / "again").mkdir()
    spec, _ = spec_from_args(make_parser().parse_args(
        ["train", "--epochs", "1", "--train-size", "64", "--val-size", "32", "--runs-dir", str(tmp_path),
         "--run-name", "again", "--run-name-suffix"]))
    outcome = run_training(spec)
    assert re.fullmatch(r"again-\d{8}-\d{6}", outcome.run_dir.name)
    assert read_tags(outcome.run_dir) == []


def test_without_a_run_name_the_id_is_the_task_and_a_timestamp(tmp_path):
    from esper.cli import spec_from_args
    spec, _ = spec_from_args(make_parser().parse_args(["train", "--runs-dir", str(tmp_path)]))
    assert spec.run_name is None and spec.tags == ()


PPO_TINY = ["--envs", "2", "--rounds", "2", "--rollout-steps", "3", "--episode-length", "3", "--train-size", "256",
            "--val-size", "128", "--workers", "1"]


def test_ppo_into_a_pipe_prints_one_line_per_round_and_makes_the_named_tagged_run(tmp_path):
    from esper.simic.cli import run_ppo
    out = io.StringIO()
    args = make_parser().parse_args(["ppo", *PPO_TINY, "--runs-dir", str(tmp_path), "--run-name", "pp",
                                     "--tag", "ppo-smoke"])
    assert run_ppo(args, make_console(out)) == 0
    lines = out.getvalue().splitlines()
    rounds = [ln for ln in lines if ln.startswith("round ")]
    assert [ln.split()[1] for ln in rounds] == ["1/2", "2/2"]
    assert all(re.search(r"elapsed \d+:\d\d:\d\d eta \d+:\d\d:\d\d \| pg ", ln) for ln in rounds), rounds
    assert not [ln for ln in lines if ln.startswith(" ") or re.search(r"\.py:\d+", ln)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pp"]
    assert read_tags(tmp_path / "pp") == ["ppo-smoke"]
    assert json.loads((tmp_path / "pp" / "run.json").read_text())["run_id"] == "pp"


def test_a_run_that_finds_its_exact_name_taken_at_start_writes_nothing(tmp_path):
    """The command line checked the name, then something took it before the run began."""
    from esper.session import RunSpec, run_training
    from telemetry_schema.rundir import RunExists
    (tmp_path / "taken").mkdir()
    with pytest.raises(RunExists, match="taken exists already"):
        run_training(RunSpec(runs_dir=str(tmp_path), run_name="taken", run_name_exact=True))
    assert list((tmp_path / "taken").iterdir()) == []
