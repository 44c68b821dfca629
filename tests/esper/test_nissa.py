"""Nissa: the EventSink turns core objects into telemetry_schema events verbatim."""

from telemetry_schema import EventWriter, read_run

from esper.kasmina.alpha import AlphaController
from esper.leyline.actions import Decision, Op
from esper.leyline.gates import GateId, GateResult
from esper.leyline.stages import SeedStage
from esper.nissa import EventSink, MultiSink, Sink
from esper.tolaria.governor import GovernorVerdict


class Count(Sink):
    def __init__(self):
        self.n = 0

    def stage_changed(self, *a):
        self.n += 1


def test_event_sink_writes_events_verbatim(tmp_path):
    path = tmp_path / "events"
    writer = EventWriter(path)
    counter = Count()
    sink = MultiSink(EventSink(writer), counter)
    sink.set_position(4, 40)
    sink.stage_changed("block1", "seed1", SeedStage.TRAINING, SeedStage.BLENDING, "G2 passed")
    sink.gate_evaluated("block1", "seed1", GateResult(GateId.G2, SeedStage.BLENDING, ("a_1",),
                                                      ("seed_gradient_low_0.02",)))
    alpha = AlphaController()
    alpha.retarget(1.0, 3)
    alpha.step()
    sink.alpha_changed("block1", "seed1", alpha)
    sink.governor_panic(GovernorVerdict("nan", float("nan"), None, 1.0, 0.1, 1, True))
    sink.controller_decision("heuristic", Decision(Op.PRUNE, "block1", reason="why", seed_id="seed1"))
    writer.close("completed")
    assert counter.n == 1
    log = read_run(tmp_path)
    by = {kind: log.rows(kind)[0] for kind in log.kinds}
    st = by["stage_changed"]
    assert (st["slot"], st["seed"], st["epoch"], st["step"]) == ("block1", "seed1", 4, 40)
    assert st["from_stage"] == "TRAINING" and st["to_stage"] == "BLENDING"
    gate = by["gate_evaluated"]
    assert gate["gate"] == "G2" and gate["passed"] is False
    assert gate["checks_failed"] == ["seed_gradient_low_0.02"] and gate["checks_passed"] == ["a_1"]
    assert by["alpha"]["mode"] == "up" and abs(by["alpha"]["value"] - 1 / 3) < 1e-9
    assert by["governor_panic"]["reason"] == "nan"
    d = by["controller_decision"]
    assert d["op"] == "PRUNE" and d["slot"] == "block1"
    assert by["run_finished"]["status"] == "completed"
