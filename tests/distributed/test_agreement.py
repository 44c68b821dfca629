"""Rank 0 decides every lifecycle outcome: a gate or governor lapse on one rank only is applied
everywhere when it is rank 0's and nowhere when it is another rank's.

Two CPU processes on gloo run ``esper train`` (3 epochs; the heuristic germinates a seed into
block2 at epoch 2 or 3). A worker script patches one rank before it starts, so that rank's gate
inputs or governor disagree with the other's; the logs and final weights of both ranks are then
compared event for event.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest

from esper.leyline.actions import Decision, Op
from esper.leyline.gates import GateId, GateResult
from esper.leyline.stages import SeedStage
from esper.tolaria.agreement import EpochOutcome, GateRecorder, GateReplay, RankDivergence
from esper.tolaria.governor import GovernorVerdict
from telemetry_schema.eventlog import EventLog
from telemetry_schema.fold import fold_tables
from telemetry_schema.rundir import read_run
from tests.distributed.test_collectives import free_port
from tests.distributed.test_ddp_train import SMALL, _env, _finished, _run_dir

WORKER = textwrap.dedent("""
    import os, sys
    rank, patch, patched = int(os.environ["RANK"]), os.environ["T_PATCH"], int(os.environ["T_PATCH_RANK"])
    if rank == patched and patch == "lapse":
        # G1 fails here, with a check code naming this rank; and this rank's governor would roll
        # back on its 2nd verdict (epoch 2). Only a rank that decides can act on either.
        from esper.kasmina import gates
        from esper.leyline.gates import GateId, GateResult
        from esper.tolaria.governor import Governor, GovernorVerdict
        real_g1, real_assess, calls = gates.GATES[GateId.G1], Governor.assess, []
        def failing_g1(slot, ctx, cfg):
            r = real_g1(slot, ctx, cfg)
            return GateResult(r.gate, r.target, r.checks_passed, r.checks_failed + (f"injected_on_rank{rank}",))
        def assess(self, loss):
            calls.append(loss)
            if len(calls) == 2:
                return GovernorVerdict("injected", loss, None, 0.0, 0.0, 1, True)
            return real_assess(self, loss)
        gates.GATES[GateId.G1], Governor.assess = failing_g1, assess
    elif rank == patched and patch == "nan":
        # this rank alone poisons the first training loss of epoch 2 (the gradients all-reduce it)
        from esper.tolaria.trainer import Trainer
        Trainer._corrupt = lambda self, epoch: (lambda i, loss: loss * float("nan") if i == 0 else loss) \\
            if epoch == 2 else None
    from esper.cli import main
    sys.exit(main(sys.argv[1:]))
""")

LIFECYCLE_KINDS = ("gate_evaluated", "stage_changed", "controller_decision", "seed_germinated",
                   "seed_pruned", "seed_fossilized", "governor_panic", "governor_rollback")


def _run(tmp_path, patch: str, patched_rank: int):
    """Both ranks of a 3-epoch run, ``patch`` applied on ``patched_rank``; returns the event table."""
    script, runs, port = tmp_path / "worker.py", tmp_path / "runs", free_port()
    script.write_text(WORKER)
    procs = []
    for rank in range(2):
        env = dict(_env(), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), T_PATCH=patch, T_PATCH_RANK=str(patched_rank))
        cmd = [sys.executable, str(script), "train", "--epochs", "3", "--runs-dir", str(runs),
               "--run-name", patch, "--dist-timeout", "30", *SMALL]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outs = [p.communicate(timeout=150) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, (out[-2000:], err[-3000:])
    run_dir = _run_dir(runs)
    table = read_run(run_dir)
    assert _finished(table) == {0: {"status": "completed", "reason": ""}, 1: {"status": "completed", "reason": ""}}
    return run_dir, table


def _lifecycle(table, rank: int) -> list[str]:
    """Every lifecycle event of ``rank`` in order, as JSON (so a NaN loss equals itself)."""
    log = EventLog(table)
    events = [log.event(i) for i in range(len(log))]
    envelope = ("seq", "wall_time", "rank", "env", "epoch", "step", "slot", "seed")
    return [json.dumps([kind, r["epoch"], r.get("slot"), r.get("seed"),
                        {k: v for k, v in r.items() if k not in envelope}], sort_keys=True)
            for kind, r in events if kind in LIFECYCLE_KINDS and r["rank"] == rank]


def _of(events: list[str], kind: str) -> list:
    return [e for e in map(json.loads, events) if e[0] == kind]


def _assert_ranks_identical(run_dir, table) -> list[str]:
    import torch

    events = _lifecycle(table, 0)
    assert events == _lifecycle(table, 1)
    assert fold_tables(table).ranks.divergence is None
    a, b = torch.load(run_dir / "model.pt"), torch.load(run_dir / "model.rank1.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return events


@pytest.mark.parametrize("patched_rank", [0, 1])
def test_each_rank_applies_rank0_gate_results_and_governor_verdicts(tmp_path, patched_rank):
    run_dir, table = _run(tmp_path, "lapse", patched_rank)
    events = _assert_ranks_identical(run_dir, table)
    g1 = [e[4] for e in _of(events, "gate_evaluated") if e[4]["gate"] == "G1"]
    moves = [(e[1], e[2], e[4]["to_stage"]) for e in _of(events, "stage_changed")]
    panics = [(e[1], e[4]["reason"]) for e in _of(events, "governor_panic")]
    rollbacks = [e[1] for e in _of(events, "governor_rollback")]
    assert g1, events  # the heuristic germinated and tried G1 (the patch had something to act on)
    if patched_rank == 0:  # rank 0's lapses are everyone's
        assert panics == [(2, "injected")] and rollbacks == [2]
        assert all(not r["passed"] and "injected_on_rank0" in r["checks_failed"] for r in g1)
        assert [stage for _, slot, stage in moves if slot == "block2"] == ["GERMINATED"]
    else:  # rank 1 never assesses nor evaluates a gate: its lapses are nobody's
        assert panics == [] and rollbacks == []
        assert g1[0]["passed"] and not any("injected" in c for r in g1 for c in r["checks_failed"])
        assert [stage for _, slot, stage in moves if slot == "block2"][:2] == ["GERMINATED", "TRAINING"]


def test_a_nan_loss_on_one_rank_rolls_back_every_rank(tmp_path):
    run_dir, table = _run(tmp_path, "nan", 1)
    events = _assert_ranks_identical(run_dir, table)
    assert [(e[1], e[4]["reason"]) for e in _of(events, "governor_panic")] == [(2, "nan")]
    assert [(e[1], e[4]["to_epoch"]) for e in _of(events, "governor_rollback")] == [(2, 0)]
    val = {(r["rank"], r["epoch"]): r["val_loss"] for r in table.rows("epoch_completed")}
    assert math.isnan(val[0, 2]) and math.isnan(val[1, 2])  # rank 0 saw rank 1's NaN too
    assert math.isfinite(val[0, 3]) and val[0, 3] == val[1, 3]  # both recovered from the same snapshot


# -- the outcome rank 0 broadcasts, without processes ---------------------------------------------

def test_epoch_outcome_survives_the_json_round_trip():
    outcome = EpochOutcome(
        GovernorVerdict("nan", float("nan"), None, 1.5, 0.1, 1, True),
        (Decision(Op.GERMINATE, "block2", "conv_small", "plateau"),
         Decision(Op.SET_ALPHA_TARGET, "block1", reason="r", alpha_target=0.7, seed_id="seed1")),
        (GateResult(GateId.G0, SeedStage.GERMINATED, ("seed_id_set",), ()),
         GateResult(GateId.G1, SeedStage.TRAINING, ("shape_preserved",), ("stage_training",))),
        "block1:BLENDING:seed1|block2:GERMINATED:seed2|params=10",
    )
    back = EpochOutcome.from_json(json.loads(json.dumps(outcome.to_json())))
    assert back.decisions == outcome.decisions and back.gates == outcome.gates
    assert back.fingerprint == outcome.fingerprint and repr(back.verdict) == repr(outcome.verdict)
    assert EpochOutcome.from_json(json.loads(json.dumps(
        EpochOutcome(None, (), (), "x").to_json()))) == EpochOutcome(None, (), (), "x")


def test_gate_replay_hands_back_rank0_results_and_refuses_a_mismatch():
    g0 = GateResult(GateId.G0, SeedStage.GERMINATED, ("seed_id_set",), ())
    g4 = GateResult(GateId.G4, SeedStage.FOSSILIZED, (), ("holding_epochs_1<3",))
    g5 = GateResult(GateId.G5, SeedStage.FOSSILIZED, ("contribution_ok_2.00pp",), ())
    never = lambda: pytest.fail("a replaying rank evaluated a gate")  # noqa: E731
    replay = GateReplay([g0, g4, g5])
    assert replay((GateId.G0,), never) == [g0]
    assert replay((GateId.G4, GateId.G5), never) == [g4, g5]
    replay.finish()
    with pytest.raises(RankDivergence):
        GateReplay([g0])((GateId.G1,), never)
    with pytest.raises(RankDivergence):
        GateReplay([g0, g4]).finish()  # rank 0 evaluated gates this rank never reached
    recorder = GateRecorder()
    assert recorder((GateId.G4, GateId.G5), lambda: [g4, g5]) == [g4, g5] and recorder.results == [g4, g5]
