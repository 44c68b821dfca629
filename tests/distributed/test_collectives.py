"""Agreement and failure detection over a real gloo process group of 2 CPU processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap


SCRIPT = textwrap.dedent("""
    import os, sys, json, time
    import torch
    from esper.distributed import init_from_env, agree, all_equal, mean_scalar, shutdown, RankFailure
    ctx = init_from_env("cpu", timeout_s=float(os.environ["T_TIMEOUT"]))
    mode = os.environ["T_MODE"]
    if mode == "agree":
        got = agree(ctx, {"op": "GERMINATE", "slot": f"r{ctx.rank}", "n": [1, 2]})
        eq = all_equal(ctx, torch.tensor([1.0, 2.0]))
        ne = all_equal(ctx, torch.tensor([float(ctx.rank)]))
        m = mean_scalar(ctx, float(ctx.rank))
        sys.stdout.write(json.dumps({"rank": ctx.rank, "got": got, "eq": eq, "ne": ne, "mean": m}) + "\\n")
    elif mode == "die":
        agree(ctx, 1)
        if ctx.rank == 1:
            os._exit(9)  # a rank that dies without a word
        t0 = time.monotonic()
        try:
            for _ in range(100):
                agree(ctx, 2)
        except RankFailure as exc:
            sys.stdout.write(json.dumps({"failed_after": time.monotonic() - t0, "msg": str(exc)}) + "\\n")
            shutdown()  # as run_training does: a group left with a dead peer aborts the exit
            sys.exit(3)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp_path, mode: str, timeout: float = 30.0):
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT)
    port = free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), T_MODE=mode, T_TIMEOUT=str(timeout))
        procs.append(subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def test_agree_broadcasts_rank0_decision_and_checks_equality(tmp_path):
    import json

    outs = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in launch(tmp_path, "agree")]
    for out in outs:
        assert out["got"] == {"op": "GERMINATE", "slot": "r0", "n": [1, 2]}
        assert out["eq"] is True and out["ne"] is False and out["mean"] == 0.5


def test_dead_rank_fails_the_survivor_within_the_timeout(tmp_path):
    import json

    procs = launch(tmp_path, "die", timeout=5.0)
    out, err = procs[0].communicate(timeout=90)
    procs[1].communicate(timeout=30)
    assert procs[0].returncode == 3, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert "failed" in result["msg"]  # a RankFailure, not a hang (communicate's timeout guards that)
