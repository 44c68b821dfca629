"""exit_signals(): SIGTERM, SIGHUP and SIGINT sent to a real process close its run as interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from telemetry_schema import read_run
from telemetry_schema.endings import RunInterrupted, ending, exit_signals

# A run that emits one scalar per line it reads on stdin ("emit" -> "ok <n>"), inside
# exit_signals(); argv: runs_dir, then optional flags: ignore-hup, resignal (send itself a
# second SIGTERM while closing, before the close).
CHILD = textwrap.dedent("""
    import os, signal, sys
    from telemetry_schema import events as ev
    from telemetry_schema.endings import RunInterrupted, ending, exit_signals
    from telemetry_schema.rundir import create_run
    from telemetry_schema.writer import WriterConfig

    # a foreground process's handlers, whatever the test runner inherited (nohup, a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN if "ignore-hup" in sys.argv else signal.SIG_DFL)
    try:
        with exit_signals():
            rw = create_run(sys.argv[1], ev.RunStarted(run_id="sig", task="t", topology="cnn", host_params=1),
                            config=WriterConfig(heartbeat_s=0))
            try:
                n = 0
                print("ready", flush=True)
                for line in sys.stdin:
                    rw.writer.scalar("loss", float(n)); n += 1
                    print(f"ok {n}", flush=True)
            except BaseException as exc:
                if "resignal" in sys.argv:
                    os.kill(os.getpid(), signal.SIGTERM)
                    sum(range(100_000))  # the handler runs here: it must not raise a second time
                rw.close(*ending(type(exc), exc))
                raise
    except RunInterrupted as exc:
        sys.exit(exc.exit_code)
    sys.exit(0)
""")


def _start(tmp_path, *flags):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "runs"), *flags],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _emit(proc, n: int) -> None:
    for i in range(1, n + 1):
        proc.stdin.write("emit\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == f"ok {i}"


def _finish(proc) -> int:
    try:
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode


def _closed_as(tmp_path) -> tuple[list[dict], dict, int]:
    run = tmp_path / "runs" / "sig"
    log = read_run(run)
    return log.rows("run_finished"), json.loads((run / "run.json").read_text()), len(log.rows("scalar"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_closes_the_run_as_interrupted(tmp_path, sig):
    proc = _start(tmp_path)
    _emit(proc, 3)
    proc.send_signal(sig)
    assert _finish(proc) == 128 + sig
    finished, manifest, scalars = _closed_as(tmp_path)
    assert [(r["status"], r["reason"]) for r in finished] == [("interrupted", signal.Signals(sig).name)]
    assert manifest["status"] == "interrupted" and manifest["reason"] == signal.Signals(sig).name
    assert scalars == 3


def test_a_second_signal_does_not_cut_short_the_close(tmp_path):
    proc = _start(tmp_path, "resignal")
    _emit(proc, 2)
    proc.send_signal(signal.SIGTERM)
    assert _finish(proc) == 128 + signal.SIGTERM
    finished, manifest, _ = _closed_as(tmp_path)
    assert [r["status"] for r in finished] == ["interrupted"] and manifest["status"] == "interrupted"


def test_an_ignored_sighup_stays_ignored(tmp_path):
    """nohup: SIGHUP was set to SIG_IGN before the run; it must not stop the run."""
    proc = _start(tmp_path, "ignore-hup")
    _emit(proc, 1)
    proc.send_signal(signal.SIGHUP)
    proc.stdin.write("emit\nemit\n")
    proc.stdin.flush()
    assert [proc.stdout.readline().strip() for _ in range(2)] == ["ok 2", "ok 3"]  # still running
    proc.send_signal(signal.SIGTERM)
    assert _finish(proc) == 128 + signal.SIGTERM
    finished, _, scalars = _closed_as(tmp_path)
    assert [r["reason"] for r in finished] == ["SIGTERM"] and scalars == 3


def test_previous_handlers_come_back_after_the_block():
    seen = []

    def mine(signum, frame):
        seen.append(signum)

    old = signal.signal(signal.SIGTERM, mine)
    try:
        with pytest.raises(RunInterrupted) as info:
            with exit_signals():
                assert signal.getsignal(signal.SIGTERM) is not mine
                os.kill(os.getpid(), signal.SIGTERM)
                sum(range(100_000))  # the Python-level handler runs between bytecodes
        assert info.value.reason == "SIGTERM" and info.value.exit_code == 143
        assert signal.getsignal(signal.SIGTERM) is mine
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(100_000))
        assert seen == [signal.SIGTERM]  # the restored handler is the one that runs now
    finally:
        signal.signal(signal.SIGTERM, old)


def test_off_the_main_thread_it_does_nothing():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    errors, inside = [], []

    def body():
        try:
            with exit_signals():
                inside.append({s: signal.getsignal(s) for s in before})
        except BaseException as exc:  # signal.signal off the main thread raises ValueError
            errors.append(exc)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert errors == [] and inside == [before]


def test_ending_names_the_status_and_reason():
    assert ending(None, None) == ("completed", "")
    exc = RunInterrupted(signal.SIGHUP)
    assert ending(type(exc), exc) == ("interrupted", "SIGHUP")
    assert ending(KeyboardInterrupt, KeyboardInterrupt()) == ("interrupted", "KeyboardInterrupt")
    assert ending(OSError, OSError("disk full")) == ("failed", "OSError: disk full")
    assert isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Exception)
