"""Blueprints: shape-preserving, identity at germination, causal attention; hosts and slots."""

import pytest
import torch

from esper.kasmina import BLUEPRINTS, CNNHost, MorphogeneticModel, TransformerConfig, TransformerHost
from esper.kasmina.blueprints import CausalSelfAttention, blueprint_params, build_blueprint

CASES = [("cnn", n) for n in BLUEPRINTS["cnn"]] + [("transformer", n) for n in BLUEPRINTS["transformer"]]


@pytest.mark.parametrize("topology,name", CASES)
def test_blueprint_preserves_shape_and_starts_as_identity(topology, name):
    seed = build_blueprint(topology, name, 16).eval()
    x = torch.randn(2, 16, 6, 6) if topology == "cnn" else torch.randn(2, 5, 16)
    out = seed(x)
    assert out.shape == x.shape
    assert torch.allclose(out, x, atol=1e-6)  # zero-initialised: germination changes nothing
    assert blueprint_params(topology, name, 16) == sum(p.numel() for p in seed.parameters())


def test_unknown_blueprint_raises():
    with pytest.raises(KeyError):
        build_blueprint("cnn", "lora", 8)


def test_attention_seed_is_causal():
    attn = CausalSelfAttention(16, 4)
    torch.nn.init.normal_(attn.proj.weight)  # make the branch non-zero
    x = torch.randn(1, 8, 16)
    y = x.clone()
    y[:, 5:] = torch.randn(1, 3, 16)  # change only the future
    assert torch.allclose(attn(x)[:, :5], attn(y)[:, :5], atol=1e-6)
    assert not torch.allclose(attn(x)[:, 5:], attn(y)[:, 5:])


def test_transformer_host_is_causal_and_slots_keep_outputs():
    host = TransformerHost(TransformerConfig(width=16, heads=2, layers=2, block_size=8))
    model = MorphogeneticModel(host).eval()
    idx = torch.randint(0, 256, (1, 8))
    idx2 = idx.clone()
    idx2[0, 6:] = (idx2[0, 6:] + 1) % 256
    assert torch.allclose(model(idx)[:, :6], model(idx2)[:, :6], atol=1e-5)
    assert torch.allclose(model(idx), host(idx))
    assert model(idx).shape == (1, 8, 256)


def test_cnn_preset_is_capacity_starved_and_dormant_model_equals_host():
    host = CNNHost()
    assert 6000 <= sum(p.numel() for p in host.parameters()) <= 6800  # the ~6.4k CIFAR preset
    model = MorphogeneticModel(host).eval()
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(model(x), host(x))
    assert [s.slot_id for s in host.injection_specs()] == ["block0", "block1", "block2"]
    with pytest.raises(ValueError):
        MorphogeneticModel(CNNHost(), ["nope"])
