"""Every end of a run closes its log: stop signals to a real `esper train` / `esper ppo`, a failed save."""

from __future__ import annotations

import errno
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from esper.cli import main
from esper.session import ModelSaveError, run_training
from esper.terminal import TerminalStream
from telemetry_schema import LogError, read_run
from tests.esper.test_end_to_end import small_spec

# `python -m esper ARGS` with the signal handlers of a foreground process, whatever the test
# runner inherited (a background job starts with SIGINT ignored, nohup with SIGHUP ignored)
LAUNCH = textwrap.dedent("""
    import signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    from esper.cli import main
    sys.exit(main(sys.argv[1:]))
""")
TRAIN = ["train", "--epochs", "100000", "--train-size", "64", "--val-size", "32", "--batch-size", "32"]
PPO = ["ppo", "--envs", "1", "--rounds", "100000", "--episode-length", "2", "--train-size", "64"]
HANG_GUARD_S = 300  # only a hang fails on this; nothing here measures speed


def _start(tmp_path, argv):
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, *argv, "--runs-dir", str(tmp_path), "--run-name", "sig"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # run_training's on_start, or run_ppo, prints it once the log exists
        if line.startswith("run directory:"):
            return proc, tmp_path / "sig"  # --run-name names it exactly
    pytest.fail(f"no run directory announced: {proc.communicate()[1]}")


def _wait_for(run_dir, kind, proc):
    """Until the run's log holds a ``kind`` event (the run is past its set-up)."""
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if read_run(run_dir).rows(kind):
                return
        except LogError:
            pass  # nothing flushed yet
        time.sleep(0.1)
    pytest.fail(f"no {kind} event in {run_dir}")


def _stop(proc, sig) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        proc.kill()
    return proc.returncode, err


def _drain(fd) -> bytes:
    """What the terminal shows now (read so that the run never blocks on a full terminal)."""
    out = b""
    while select.select([fd], [], [], 0)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        out += chunk
    return out


def _run_in_a_terminal(tmp_path, argv, kind):
    """``argv`` as the controlling process of a new terminal (a pty), once its log has ``kind``."""
    master, slave = pty.openpty()
    launch = ["setsid", "--ctty", sys.executable, "-c", LAUNCH, *argv, "--runs-dir", str(tmp_path),
              "--run-name", "sig"]
    proc = subprocess.Popen(launch, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    deadline, shown = time.monotonic() + HANG_GUARD_S, b""
    while time.monotonic() < deadline and proc.poll() is None:
        shown += _drain(master)
        run_dirs = [d for d in (tmp_path / "sig",) if d.is_dir()]
        try:
            if run_dirs and read_run(run_dirs[0]).rows(kind):
                return proc, master, run_dirs[0]
        except LogError:
            pass
        time.sleep(0.1)
    pytest.fail(f"no {kind} event: {shown.decode(errors='replace')}")


def _assert_closed_interrupted(run_dir, sig):
    name = signal.Signals(sig).name
    finished = read_run(run_dir).rows("run_finished")
    assert [(r["status"], r["reason"]) for r in finished] == [("interrupted", name)]
    manifest = json.loads((run_dir / "run.json").read_text())
    assert (manifest["status"], manifest["reason"]) == ("interrupted", name)
    assert manifest["ended_at"] >= manifest["started_at"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_to_esper_train_closes_its_log(tmp_path, sig):
    proc, run_dir = _start(tmp_path, TRAIN)
    _wait_for(run_dir, "epoch_completed", proc)
    code, err = _stop(proc, sig)
    assert code == 128 + sig and "Traceback" not in err, err
    _assert_closed_interrupted(run_dir, sig)
    assert (run_dir / "model.pt").is_file()  # the weights reached are kept


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_to_esper_ppo_closes_its_log(tmp_path, sig):
    proc, run_dir = _start(tmp_path, PPO)
    _wait_for(run_dir, "ppo_update", proc)
    code, err = _stop(proc, sig)
    assert code == 128 + sig and "Traceback" not in err, err
    _assert_closed_interrupted(run_dir, sig)
    assert (run_dir / "policy.pt").is_file()


def test_a_failing_model_save_still_closes_the_log(tmp_path):
    """model.pt cannot be written (a directory is in the way): the log closes as failed."""
    def block_model_pt(run_dir):
        (run_dir / "model.pt").mkdir()

    with pytest.raises(ModelSaveError, match="could not save .*model.pt"):
        run_training(small_spec(tmp_path, epochs=1), on_start=block_model_pt)
    run_dir = next(tmp_path.iterdir())
    finished = read_run(run_dir).rows("run_finished")
    assert [r["status"] for r in finished] == ["failed"] and "model.pt" in finished[0]["reason"]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"


def test_esper_train_reports_a_failed_save_in_one_line(tmp_path, capsys, monkeypatch):
    def disk_full(obj, path, *a, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("esper.session.torch.save", disk_full)
    code = main(TRAIN[:1] + ["--epochs", "1", "--train-size", "64", "--val-size", "32",
                             "--runs-dir", str(tmp_path), "--run-name", "full"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "could not save" in err and "No space left on device" in err
    run_dir = next(tmp_path.iterdir())
    assert [r["status"] for r in read_run(run_dir).rows("run_finished")] == ["failed"]


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs util-linux setsid")
@pytest.mark.parametrize("argv,kind", [(TRAIN, "epoch_completed"), (PPO, "ppo_update")])
def test_closing_the_terminal_closes_the_log(tmp_path, argv, kind):
    """The window is closed: the kernel sends SIGHUP, and every later write to the terminal
    fails (EIO). The run still ends as interrupted, not as failed by its progress display."""
    proc, master, run_dir = _run_in_a_terminal(tmp_path, argv, kind)
    os.close(master)
    try:
        code = proc.wait(timeout=HANG_GUARD_S)
    finally:
        proc.kill()
    assert code == 128 + signal.SIGHUP
    _assert_closed_interrupted(run_dir, signal.SIGHUP)


class _GoneTerminal:
    """A stream whose terminal went away (or whose disk is full) after ``ok`` writes."""

    def __init__(self, errno_: int, ok: int = 1) -> None:
        self.errno, self.ok, self.text = errno_, ok, ""

    def write(self, text):
        if self.ok <= 0:
            raise OSError(self.errno, os.strerror(self.errno))
        self.ok -= 1
        self.text += text
        return len(text)

    def flush(self):
        if self.ok <= 0:
            raise OSError(self.errno, os.strerror(self.errno))


@pytest.mark.parametrize("code", [errno.EIO, errno.EPIPE])
def test_terminal_stream_goes_quiet_when_the_terminal_is_gone(code):
    stream = TerminalStream(_GoneTerminal(code))
    assert stream.write("seen\n") == 5 and not stream.lost
    assert stream.write("lost\n") == 5 and stream.lost  # no error: the run goes on
    stream.flush()
    stream.write("after\n")
    assert stream._stream.text == "seen\n"


def test_terminal_stream_still_raises_other_errors():
    stream = TerminalStream(_GoneTerminal(errno.ENOSPC, ok=0))
    with pytest.raises(OSError, match="No space left"):
        stream.write("x")
    assert not stream.lost


def test_a_launchers_sigterm_during_the_close_of_a_ranks_log_does_not_cut_it_short(tmp_path):
    """A rank that found its peer dead closes its log 'failed'; torchrun, seeing the same death,
    SIGTERMs it meanwhile. The close finishes: the log ends with its run_finished."""
    from types import SimpleNamespace

    from esper.distributed import RankFailure
    from esper.session import _raise_on_sigterm, close_log
    from telemetry_schema import events as ev
    from telemetry_schema.rundir import create_run

    run = create_run(tmp_path, ev.RunStarted(run_id="r", task="t", topology="cnn", host_params=1))
    closing = run.close

    def close_while_signalled(status, reason=""):
        os.kill(os.getpid(), signal.SIGTERM)  # the launcher's signal, as the close begins
        closing(status, reason)

    run.close = close_while_signalled
    previous = _raise_on_sigterm(SimpleNamespace(enabled=True))
    try:
        close_log(run, "failed", "rank 0: rank 1 failed", hold_sigterm=previous is not None)
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN  # the rank's handler is back
    except RankFailure:
        pytest.fail("the SIGTERM cut the close short")
    finally:
        signal.signal(signal.SIGTERM, previous)
    finished = read_run(tmp_path / "r").rows("run_finished")
    assert [(r["status"], r["reason"]) for r in finished] == [("failed", "rank 0: rank 1 failed")]
