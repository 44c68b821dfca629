"""The policy's alpha-speed choice goes all the way to the blend: decoded into the Decision,
reported in controller_decision's reason, and applied by the trainer as a ramp of that length."""

import pytest
from esper_testkit import TINY_CNN, tiny_data

from esper.kasmina import CNNHost, MorphogeneticModel
from esper.leyline.actions import Op
from esper.leyline.config import SlotConfig, TrainConfig
from esper.leyline.stages import SeedStage as S
from esper.nissa.sink import Sink
from esper.tamiyo.policy.actions import ALPHA_SPEEDS, ALPHA_TARGETS, OPS, ActionSpace
from esper.tolaria.trainer import Trainer


class Script:
    """Plays one decision at epoch 1, WAIT afterwards."""

    name = "policy"

    def __init__(self, decision):
        self.decision = decision

    def decide(self, obs):
        return [self.decision] if obs.epoch == 1 else []


class Decisions(Sink):
    def __init__(self):
        self.seen = []

    def controller_decision(self, controller, decision):
        self.seen.append(decision)


def run(speed_index: int):
    model = MorphogeneticModel(CNNHost(TINY_CNN), ["block1"], SlotConfig(tempo="fast"))
    slot = model.slots["block1"]
    slot.germinate("seed1", "conv_small", 0, 0.0)
    for stage in (S.TRAINING, S.BLENDING):
        slot.enter(stage, "", 0.0, 1.0)
    while not slot.alpha.idle:
        slot.end_epoch()
    slot.enter(S.HOLDING, "", 0.0, 1.0)
    space = ActionSpace(("block1",), ("noop", "conv_small"))
    action = {h: 0 for h in space.heads} | {"op": OPS.index(Op.SET_ALPHA_TARGET),
                                             "alpha_target": ALPHA_TARGETS.index(0.5), "alpha_speed": speed_index}
    decision = space.decode(action, reason="policy")
    sink = Decisions()
    trainer = Trainer(model, tiny_data(), tiny_data(seed=1), num_classes=3,
                      cfg=TrainConfig(epochs=6), controller=Script(decision), sink=sink)
    alphas = []
    for epoch in range(1, 7):
        trainer.run_epoch(epoch)
        alphas.append(slot.alpha.alpha)  # the alpha the next epoch trains with
    return alphas, sink.seen


def test_decision_carries_the_speed_into_telemetry():
    _, seen = run(ALPHA_SPEEDS.index(3))
    d = seen[0]
    assert d.op is Op.SET_ALPHA_TARGET and d.alpha_target == 0.5 and d.alpha_steps == 3
    assert d.reason == "policy alpha_target=0.5 alpha_speed_epochs=3"


def test_alpha_speed_sets_the_length_of_the_ramp():
    ramps = {speed: run(i)[0] for i, speed in enumerate(ALPHA_SPEEDS)}
    assert ramps[1] == pytest.approx([0.5] * 6)
    assert ramps[3] == pytest.approx([1 - 0.5 / 3, 1 - 1 / 3, 0.5, 0.5, 0.5, 0.5])
    assert ramps[5] == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5, 0.5])
