"""Bad input: each a one-line message on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from telemetry_schema.codec import BatchEncoder
from telemetry_schema.runs import list_runs, summarize
from telemetry_schema.schema import KIND_KEY, VERSION_KEY, kind_schema
from tui.cli import main
from tui.source import TargetError, resolve


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


def test_missing_path(capsys, tmp_path):
    code, err = run_cli(capsys, str(tmp_path / "nope"))
    assert code == 2
    assert err == f"esper-tui: {tmp_path / 'nope'}: no such file or directory\n"


def test_garbage_file(capsys, tmp_path):
    bad = tmp_path / "garbage.arrows"
    bad.write_bytes(b"PK\x03\x04 definitely a zip file, not a log" * 10)
    code, err = run_cli(capsys, str(bad))
    assert code == 2
    assert err == f"esper-tui: {bad}: not an Esper event log (no message marker)\n"


def test_empty_directory(capsys, tmp_path):
    code, err = run_cli(capsys, str(tmp_path))
    assert code == 2
    assert "empty directory" in err


def test_unknown_schema_version(capsys, tmp_path):
    path = tmp_path / "heartbeat.rank0.arrows"
    schema = kind_schema("heartbeat").with_metadata({VERSION_KEY: b"9.0", KIND_KEY: b"heartbeat"})
    path.write_bytes(BatchEncoder(schema).schema_message)
    code, err = run_cli(capsys, str(path))
    assert code == 2
    assert "schema version 9.0 is not supported" in err and err.count("\n") == 1
    run = tmp_path / "future-run"
    (run / "events").mkdir(parents=True)
    (run / "events" / path.name).write_bytes(path.read_bytes())
    code, err = run_cli(capsys, str(run))  # the same stream inside a run directory
    assert code == 2
    assert "schema version 9.0 is not supported" in err and err.count("\n") == 1


def test_no_argument_without_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(capsys, )
    assert code == 2 and "no ./runs directory" in err


def test_no_argument_opens_newest_run(runs_dir, monkeypatch, tmp_path):
    (tmp_path / "runs").symlink_to(runs_dir)
    monkeypatch.chdir(tmp_path)
    target = resolve(None)
    assert target.kind == "run" and target.path.name == list_runs(runs_dir)[0].name


def test_process_exit_code_and_no_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "tui.cli", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().endswith("no such file or directory")


def test_resolve_kinds(run_dir, runs_dir):
    assert resolve(run_dir).kind == "run"
    assert resolve(run_dir / "events" / "gate_evaluated.rank0.arrows").kind == "log"
    assert resolve(runs_dir).kind == "runs"
    with pytest.raises(TargetError):
        resolve(runs_dir / "broken-run")  # a run directory whose only stream is garbage


def test_summaries_of_runs(runs_dir):
    rows = {s.run_id: s for s in map(summarize, list_runs(runs_dir))}
    assert rows["alpha-run"].status == "completed" and rows["alpha-run"].epochs > 0
    assert rows["beta-run"].error == "" and rows["beta-run"].events > 0
    assert "run_started.rank0.arrows: corrupt at byte 0" in rows["broken-run"].error


def test_startup_gc_pauses_collection_until_resumed_then_freezes_what_start_up_made():
    import gc

    from tui.cli import StartupGC

    assert gc.isenabled()
    collections = []
    gc.callbacks.append(lambda phase, info: collections.append(phase))
    try:
        startup = StartupGC()
        assert not gc.isenabled()
        made = [[i] for i in range(50_000)]  # would trigger dozens of collections
        assert collections == []
        startup.resume()
        assert gc.isenabled() and gc.get_freeze_count() >= len(made)
        gc.unfreeze()
        startup.resume()  # a second call does nothing
        assert gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        gc.callbacks.pop()
        gc.unfreeze()


def test_main_keeps_collection_paused_until_the_first_screen_is_painted(monkeypatch, run_dir):
    import gc

    from tui.app import EsperApp
    from tui.cli import StartupGC

    seen = {"resumes": []}
    resume = StartupGC.resume

    def watched(self):
        app = seen.get("app")
        seen["resumes"].append((gc.isenabled(), app is not None and app.is_running and app.session.loaded))
        resume(self)

    def run(self, *args, **kwargs):
        seen["app"] = self

        async def go():
            async with self.run_test(size=(100, 30)) as pilot:
                while self._on_first_screen is not None:  # until the first paint after the load
                    await pilot.pause(0.01)
                seen["frozen"] = gc.get_freeze_count()
        asyncio.run(go())

    monkeypatch.setattr(StartupGC, "resume", watched)
    monkeypatch.setattr(EsperApp, "run", run)
    assert main([str(run_dir)]) == 0
    # resumed first by the app, once its run was loaded and painted (paused until then),
    # then by main on the way out (which does nothing more)
    assert seen["resumes"][0] == (False, True) and len(seen["resumes"]) == 2
    assert seen["frozen"] > 10_000 and gc.isenabled()
