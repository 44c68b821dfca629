"""1-D signal (conv1d) and flat-feature (mlp) hosts, their blueprints, slots and controller."""

import pytest
import torch

from esper.kasmina import BLUEPRINTS, Conv1dConfig, Conv1dHost, MLPConfig, MLPHost, MorphogeneticModel
from esper.kasmina.blueprints import blueprint_params, build_blueprint
from esper.kasmina.layouts import pool_channels, probe_shape
from esper.kasmina.protocol import InjectionSpec
from esper.kasmina.slot import SeedSlot
from esper.leyline.actions import Observation, Op, SlotView
from esper.leyline.config import GateConfig, SlotConfig
from esper.leyline.stages import SeedStage as S
from esper.tamiyo import HeuristicController

FEATURES = {"conv1d": lambda c: torch.randn(3, c, 11), "mlp": lambda c: torch.randn(3, c)}
CASES = [(t, n) for t in FEATURES for n in BLUEPRINTS[t]]


@pytest.mark.parametrize("topology,name", CASES)
def test_blueprint_preserves_shape_and_starts_as_identity(topology, name):
    seed = build_blueprint(topology, name, 16).eval()
    x = FEATURES[topology](16)
    out = seed(x)
    assert out.shape == x.shape
    assert torch.allclose(out, x, atol=1e-6)
    assert blueprint_params(topology, name, 16) == sum(p.numel() for p in seed.parameters())


@pytest.mark.parametrize("topology,name", [c for c in CASES if c[1] != "noop"])
def test_blueprint_branch_learns_once_its_last_layer_moves(topology, name):
    seed = build_blueprint(topology, name, 8)
    x = FEATURES[topology](8)
    opt = torch.optim.SGD(seed.parameters(), lr=0.1)
    for _ in range(2):  # the zero last layer gets a gradient first, then the branch moves
        opt.zero_grad()
        (seed(x) - x - 1.0).pow(2).mean().backward()
        opt.step()
    assert not torch.allclose(seed(x), x, atol=1e-4)


@pytest.mark.parametrize("host, x", [
    (Conv1dHost(Conv1dConfig(in_channels=2, num_classes=4)), torch.randn(5, 2, 37)),
    (MLPHost(MLPConfig(in_features=7, num_classes=4)), torch.randn(5, 7)),
])
def test_dormant_model_equals_host_and_segments_compose(host, x):
    model = MorphogeneticModel(host).eval()
    assert torch.equal(model(x), host(x)) and host(x).shape == (5, 4)
    assert [s.slot_id for s in host.injection_specs()] == ["block0", "block1", "block2"]
    for spec in host.injection_specs():
        h = host.forward_to_segment(spec.slot_id, x)
        assert h.shape[1] == spec.channels
        assert torch.allclose(host.forward_from_segment(spec.slot_id, h), host(x), atol=1e-6)


def test_conv1d_host_takes_a_signal_of_length_one_and_mlp_a_batch_of_one():
    conv = Conv1dHost(Conv1dConfig(num_classes=3)).train()
    assert conv(torch.randn(4, 1, 1)).shape == (4, 3)
    mlp = MLPHost(MLPConfig(in_features=5, num_classes=3)).train()
    assert mlp(torch.randn(1, 5)).shape == (1, 3)


def test_layouts():
    assert probe_shape("conv1d", 6) == (2, 6, 4) and probe_shape("mlp", 6) == (2, 6)
    assert probe_shape("cnn", 6) == (2, 6, 4, 4) and probe_shape("transformer", 6) == (2, 4, 6)
    x = torch.arange(24.0).view(2, 3, 4)
    assert torch.equal(pool_channels("conv1d", x), x.mean(dim=2))
    assert torch.equal(pool_channels("transformer", x), x.mean(dim=1))
    with pytest.raises(ValueError, match="expected 2-D"):
        pool_channels("mlp", x)
    with pytest.raises(ValueError, match="unknown topology"):
        probe_shape("graph", 3)


@pytest.mark.parametrize("topology", FEATURES)
@pytest.mark.parametrize("blend", ["add", "multiply", "gate"])
def test_slot_probes_and_blends_each_topology(topology, blend):
    slot = SeedSlot(InjectionSpec("s", 8, 0), topology, SlotConfig(blend=blend, tempo="fast"))
    name = "conv_light" if topology == "conv1d" else "mlp"
    slot.germinate("seed1", name, 0, 0.0)
    assert slot.record.probe_ok
    x = FEATURES[topology](8)
    slot.enter(S.TRAINING, "", 0.0, 1.0)
    assert torch.allclose(slot(x), x)
    slot.enter(S.BLENDING, "", 0.0, 1.0)
    assert slot(x).shape == x.shape
    assert GateConfig().gradient_ratio_threshold[topology] > 0


@pytest.mark.parametrize("topology, first", [("conv1d", "conv_light"), ("mlp", "lora")])
def test_heuristic_germinates_the_topologys_own_blueprints(topology, first):
    obs = Observation(6, 40, topology, [50.0, 60.0, 61.0, 61.1, 61.2, 61.2], [2.0, 1.2, 1.0, 0.99, 0.98, 0.98],
                      (SlotView("block0", S.DORMANT),), 10 ** 6, ())
    controller = HeuristicController()
    (germinate, _) = controller.decide(obs)
    assert germinate.op is Op.GERMINATE and germinate.blueprint == first
    assert controller.decide(obs)[0].blueprint in BLUEPRINTS[topology]
