"""esper.log: a run directory from any loop, torch-free, closed on every exit; TensorBoard's API."""

from __future__ import annotations

import inspect
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from telemetry_schema import read_run

import esper.log
from esper.log import Run, SummaryWriter


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def finished(run_dir: Path) -> tuple[str, str]:
    (row,) = read_run(run_dir).rows("run_finished")
    return row["status"], row["reason"]


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_logging_never_imports_torch(tmp_path):
    code = (
        "import sys, esper, esper.log\n"
        "from esper.log import Run, SummaryWriter\n"
        "with esper.log.Run('t', runs_dir='runs', config={'lr': 0.1}) as run:\n"
        "    run.scalar('loss', 1.0, step=1)\n"
        "with SummaryWriter('runs/tb') as w:\n"
        "    w.add_scalar('x', 2.0, 3)\n"
        "assert esper.log is sys.modules['esper.log']\n"
        "print('torch' in sys.modules)\n")
    out = run_python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_run_writes_a_run_directory_with_config_scalars_and_end(tmp_path):
    with Run("baseline", runs_dir=tmp_path, config={"lr": 3e-4, "layers": [2, 3]}) as run:
        run.config(batch=64)
        run.scalar("train/loss", 2.5, step=0)
        run.scalar("train/loss", np.float32(1.5), step=10, epoch=1)
        run.scalar("val/acc", 0.75)  # at the last step and epoch given
        run.scalars({"a": 1, "b": np.int64(2)}, step=11)
    run_dir = run.dir
    assert run_dir.parent == tmp_path and run_dir.name.startswith("baseline-")
    log = read_run(run_dir)
    (started,) = log.rows("run_started")
    assert json.loads(started["config_json"]) == {"lr": 3e-4, "layers": [2, 3], "batch": 64}
    assert started["task"] == "baseline" and started["run_id"] == run_dir.name
    got = [(r["name"], r["value"], r["step"], r["epoch"]) for r in log.rows("scalar")]
    assert got == [("train/loss", 2.5, 0, 0), ("train/loss", 1.5, 10, 1), ("val/acc", 0.75, 10, 1),
                   ("a", 1.0, 11, 1), ("b", 2.0, 11, 1)]
    assert finished(run_dir) == ("completed", "")
    m = manifest(run_dir)
    assert m["status"] == "completed" and m["config"]["batch"] == 64 and m["events"] >= 7


def test_config_after_start_goes_to_run_json_and_a_message(tmp_path):
    with Run("late", runs_dir=tmp_path) as run:
        run.scalar("x", 1.0)
        run.config({"seed": 7})
    assert json.loads(read_run(run.dir).rows("run_started")[0]["config_json"]) == {}
    assert manifest(run.dir)["config"] == {"seed": 7}
    texts = [r["text"] for r in read_run(run.dir).rows("log")]
    assert texts == ['config {"seed": 7}']


@pytest.mark.parametrize("exc, status, reason", [
    (RuntimeError("boom"), "failed", "RuntimeError: boom"),
    (KeyboardInterrupt(), "interrupted", "KeyboardInterrupt"),
])
def test_exceptions_close_the_run_and_propagate(tmp_path, exc, status, reason):
    with pytest.raises(type(exc)):
        with Run("x", runs_dir=tmp_path) as run:
            run.scalar("loss", 1.0)
            raise exc
    assert finished(run.dir) == (status, reason)
    assert manifest(run.dir)["status"] == status


def test_an_unused_run_still_leaves_a_closed_directory(tmp_path):
    with Run("empty", runs_dir=tmp_path) as run:
        pass
    assert finished(run.dir) == ("completed", "")
    assert run.closed
    with pytest.raises(ValueError, match="closed"):
        run.scalar("x", 1.0)


@pytest.mark.parametrize("tail, status, reason", [
    ("raise RuntimeError('boom')", "failed", "RuntimeError: boom"),
    ("raise KeyboardInterrupt", "interrupted", "KeyboardInterrupt"),
    ("pass", "completed", "closed at exit"),
])
def test_a_run_left_open_is_closed_at_interpreter_exit(tmp_path, tail, status, reason):
    out = run_python("import esper.log\nrun = esper.log.Run('open', runs_dir='runs')\n"
                     f"run.scalar('x', 1.0)\n{tail}\n", tmp_path)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert finished(run_dir) == (status, reason), out.stderr
    assert manifest(run_dir)["status"] == status


# A loop that logs one scalar per line read on stdin ("ok <n>" back), the run opened with
# `with Run` or with a SummaryWriter left open (no `with`, no close); argv: the form.
SIGNALLED = textwrap.dedent("""
    import signal, sys
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a foreground process's handlers
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    import esper.log

    def loop(log):
        print("ready", flush=True)
        for n, line in enumerate(sys.stdin):
            log(float(n))
            print(f"ok {n}", flush=True)

    if sys.argv[1] == "with":
        with esper.log.Run("sig", runs_dir="runs") as run:
            loop(lambda v: run.scalar("loss", v))
    else:
        writer = esper.log.SummaryWriter("runs/sig-tb")
        loop(lambda v: writer.add_scalar("loss", v))
""")


@pytest.mark.parametrize("form", ["with", "open"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_stop_signals_close_the_run_as_interrupted(tmp_path, form, signum):
    proc = subprocess.Popen([sys.executable, "-c", SIGNALLED, form], cwd=tmp_path, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        for i in range(3):
            proc.stdin.write("x\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == f"ok {i}"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "RunInterrupted" in err
    (run_dir,) = (tmp_path / "runs").iterdir()
    name = signal.Signals(signum).name
    assert finished(run_dir) == ("interrupted", name)
    assert manifest(run_dir)["status"] == "interrupted"
    assert [r["value"] for r in read_run(run_dir).rows("scalar")] == [0.0, 1.0, 2.0]


def test_signal_handlers_are_restored_when_runs_close(tmp_path):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with Run("outer", runs_dir=tmp_path) as outer:
        outer.scalar("x", 1.0)
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        with SummaryWriter(tmp_path / "inner") as inner:
            inner.add_scalar("y", 2.0)
    assert {s: signal.getsignal(s) for s in before} == before


def test_heartbeats_are_written_at_the_configured_interval(tmp_path):
    with Run("beat", runs_dir=tmp_path, heartbeat_s=0.01) as run:
        run.scalar("x", 1.0)
        deadline = time.monotonic() + 60  # a liveness wait, not a speed threshold
        while run._rw.writer.events_emitted < 3 and time.monotonic() < deadline:
            run.flush()
            time.sleep(0.05)
    log = read_run(run.dir)
    assert log.rows("run_started")[0]["heartbeat_s"] == 0.01
    assert log.rows("heartbeat"), "no heartbeat was written"


def test_runs_started_in_the_same_second_get_distinct_directories(tmp_path):
    runs = [Run("same", runs_dir=tmp_path) for _ in range(3)]
    for r in runs:
        r.start()
    ids = [r.run_id for r in runs]
    for r in runs:
        r.close()
    assert len(set(ids)) == 3 and all(i.startswith("same-") for i in ids)


def test_tensors_and_numpy_values_are_read_without_importing_torch_here(tmp_path):
    torch = pytest.importorskip("torch")
    with Run("values", runs_dir=tmp_path) as run:
        run.scalar("t", torch.tensor(1.25), step=torch.tensor(4))
        run.scalar("t1", torch.ones(1, 1) * 2)
        run.scalar("n", np.array(3.5))
        run.scalar("nan", float("nan"))
    got = {r["name"]: (r["value"], r["step"]) for r in read_run(run.dir).rows("scalar")}
    assert got["t"] == (1.25, 4) and got["t1"] == (2.0, 4) and got["n"] == (3.5, 4)
    assert np.isnan(got["nan"][0])


@pytest.mark.parametrize("value, error, text", [
    ("1.5", TypeError, "expected a number, got str"),
    (None, TypeError, "expected a number, got NoneType"),
    ([1.0], TypeError, "expected a number, got list"),
    (1 + 2j, TypeError, "expected a number, got complex"),
    (np.array([1.0, 2.0]), ValueError, "expected a single number, got ndarray"),
    (np.array(["a"]), TypeError, "expected a number, got str"),
])
def test_bad_values_are_refused_with_one_line(tmp_path, value, error, text):
    with Run("bad", runs_dir=tmp_path) as run:
        with pytest.raises(error, match=text) as info:
            run.scalar("loss", value)
        assert "\n" not in str(info.value) and "'loss'" in str(info.value)
        with pytest.raises(TypeError, match="non-empty string"):
            run.scalar("", 1.0)
        with pytest.raises(ValueError, match="integer"):
            run.scalar("x", 1.0, step=1.5)
        with pytest.raises(TypeError, match="scalar 'bad'"):
            run.scalars({"ok": 1.0, "bad": "x"}, 0)
    assert read_run(run.dir).rows("scalar") == []  # nothing half-written


def test_bad_run_names_and_reused_directories_are_refused(tmp_path):
    with pytest.raises(ValueError, match="invalid run id"):
        Run(run_dir=tmp_path / "..")
    with SummaryWriter(tmp_path / "exp") as w:
        w.add_scalar("x", 1.0)
    with pytest.raises(FileExistsError, match="already holds a run"):
        SummaryWriter(tmp_path / "exp")


# -- the SummaryWriter --------------------------------------------------------------------

def test_summary_writer_logs_like_tensorboard(tmp_path):
    with SummaryWriter(log_dir=tmp_path / "tb-run") as writer:
        assert writer.get_logdir() == str(tmp_path / "tb-run")
        for i in range(3):
            writer.add_scalar("Loss/train", 1.0 / (i + 1), i)
        writer.add_scalars("run_14h", {"xsinx": 0.5, "xcosx": -0.5}, 3)
        writer.add_text("note", "hello", 3)
        writer.add_hparams({"lr": 0.1, "bsize": 32, "opt": "adam"}, {"hparam/accuracy": 0.9}, global_step=3)
        writer.flush()
    log = read_run(tmp_path / "tb-run")
    got = [(r["name"], r["value"], r["step"]) for r in log.rows("scalar")]
    assert got == [("Loss/train", 1.0, 0), ("Loss/train", 0.5, 1), ("Loss/train", 1 / 3, 2),
                   ("run_14h/xsinx", 0.5, 3), ("run_14h/xcosx", -0.5, 3), ("hparam/accuracy", 0.9, 3)]
    assert [r["text"] for r in log.rows("log")] == [
        "note: hello", 'config {"bsize": 32, "lr": 0.1, "opt": "adam"}']
    m = manifest(tmp_path / "tb-run")
    assert m["config"] == {"lr": 0.1, "bsize": 32, "opt": "adam"}
    assert m["hparam_metrics"] == {"hparam/accuracy": 0.9} and m["status"] == "completed"


def test_summary_writer_close_and_exception(tmp_path):
    w = SummaryWriter(tmp_path / "closed")
    w.add_scalar("x", 1)
    w.close()
    assert finished(tmp_path / "closed") == ("completed", "")
    with pytest.raises(ZeroDivisionError):
        with SummaryWriter(tmp_path / "crashed") as w:
            w.add_scalar("x", 1 / 0)
    assert finished(tmp_path / "crashed")[0] == "failed"


def test_summary_writer_default_directory_and_unsupported_methods(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with SummaryWriter(comment="_lr0.1") as w:
        with pytest.raises(AttributeError, match="no add_histogram: it logs scalars"):
            w.add_histogram("w", [1, 2])
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("run_lr0.1-")
    with pytest.raises(TypeError, match="dictionaries"), SummaryWriter(tmp_path / "h") as w:
        w.add_hparams({"lr": 0.1}, [("acc", 1.0)])
    with pytest.raises(TypeError, match="hparam 'opt'"), SummaryWriter(tmp_path / "h2") as w:
        w.add_hparams({"opt": object()}, {})


def test_signatures_match_tensorboard():
    tb = pytest.importorskip("torch.utils.tensorboard", exc_type=ImportError)
    for name in ("__init__", "add_scalar", "add_scalars", "add_hparams", "flush", "close"):
        theirs = list(inspect.signature(getattr(tb.SummaryWriter, name)).parameters.values())
        ours = list(inspect.signature(getattr(SummaryWriter, name)).parameters.values())
        assert [p.name for p in ours] == [p.name for p in theirs], name
        assert [p.default for p in ours] == [p.default for p in theirs], name


def test_the_dashboard_lists_a_logged_run_live_and_finished(tmp_path):
    from dashboard.data import RunStore

    with Run("viewed", runs_dir=tmp_path, config={"lr": 0.1}) as run:
        for i in range(5):
            run.scalar("train/loss", 1.0 - i / 10, step=i)
        run.flush()
        (live,) = RunStore(tmp_path).summaries()
        assert (live.run_id, live.status, live.task) == (run.run_id, "running", "viewed")
    (row,) = RunStore(tmp_path).summaries()
    assert (row.run_id, row.status, row.error) == (run.run_id, "completed", "")


async def test_the_tui_opens_a_logged_run(tmp_path):
    from textual.widgets import Static
    from tui.app import EsperApp
    from tui.source import resolve
    from tui.widgets.header import RunHeader

    with Run("in-tui", runs_dir=tmp_path) as run:
        for i in range(20):
            run.scalar("train/loss", 1.0 / (i + 1), step=i)
    app = EsperApp(resolve(run.dir))
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(200):
            if app.session.loaded:
                break
            await pilot.pause(0.05)
        assert app.session.loaded
        await pilot.pause(0.2)
        header: Static = app.query_one(RunHeader)
        text = str(header.render())
        assert run.run_id in text and "completed" in text
