"""Bad input: each a one-line message on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest

from telemetry_schema.schema import SCHEMA, VERSION_KEY
from tui.cli import main
from tui.source import TargetError, list_runs, resolve, summarize


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
    assert "not an Arrow IPC stream" in err and err.count("\n") == 1


def test_empty_directory(capsys, tmp_path):
    code, err = run_cli(capsys, str(tmp_path))
    assert code == 2
    assert "empty directory" in err


def test_unknown_schema_version(capsys, tmp_path):
    path = tmp_path / "future.arrows"
    schema = SCHEMA.with_metadata({VERSION_KEY: b"9.0"})
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, schema) as w:
        w.write_table(schema.empty_table())
    code, err = run_cli(capsys, str(path))
    assert code == 2
    assert "schema version 9.0 is not supported" in err


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
    assert resolve(run_dir / "events.arrows").kind == "log"
    assert resolve(runs_dir).kind == "runs"
    with pytest.raises(TargetError):
        resolve(runs_dir / "broken-run")  # a run directory whose only stream is garbage


def test_summaries_of_runs(runs_dir):
    rows = {s.run_id: s for s in map(summarize, list_runs(runs_dir))}
    assert rows["alpha-run"].status == "completed" and rows["alpha-run"].epochs > 0
    assert rows["beta-run"].error == "" and rows["beta-run"].events > 0
    assert "not an Arrow IPC stream" in rows["broken-run"].error


def test_paused_gc_pauses_collection_then_freezes_what_start_up_made(monkeypatch):
    import gc

    from tui.cli import paused_gc

    assert gc.isenabled()
    collections = []
    gc.callbacks.append(lambda phase, info: collections.append(phase))
    try:
        with paused_gc():
            assert not gc.isenabled()
            made = [[i] for i in range(50_000)]  # would trigger dozens of collections
            assert collections == []
        assert gc.isenabled() and gc.get_freeze_count() >= len(made)
    finally:
        gc.callbacks.pop()
        gc.unfreeze()


def test_main_starts_the_app_with_collection_paused_and_runs_it_with_collection_on(monkeypatch, run_dir):
    import gc

    from tui.app import EsperApp

    seen = {}

    def fake_run(self, *args, **kwargs):
        seen["enabled"], seen["frozen"] = gc.isenabled(), gc.get_freeze_count()

    made = EsperApp.__init__

    def init(self, *args, **kwargs):
        seen["enabled_at_init"] = gc.isenabled()
        made(self, *args, **kwargs)

    monkeypatch.setattr(EsperApp, "run", fake_run)
    monkeypatch.setattr(EsperApp, "__init__", init)
    assert main([str(run_dir)]) == 0
    assert seen["enabled_at_init"] is False
    assert seen["enabled"] is True and seen["frozen"] > 10_000
