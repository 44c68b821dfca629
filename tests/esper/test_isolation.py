"""ste_forward and the blend operators: compile with fullgraph and have the documented gradients."""

import pytest
import torch

from esper.kasmina.isolation import blend_add, blend_gate, blend_multiply, blend_with_isolation, ste_forward


def _pair():
    host = torch.randn(2, 4, 3, 3, requires_grad=True)
    seed = torch.randn(2, 4, 3, 3, requires_grad=True)
    return host, seed


def test_ste_forward_compiles_fullgraph_and_equals_host():
    torch._dynamo.reset()
    compiled = torch.compile(ste_forward, fullgraph=True, backend="aot_eager")
    host, seed = _pair()
    out = compiled(host, seed)
    assert torch.equal(out, host.detach() + (seed.detach() - seed.detach()))
    assert torch.allclose(out, host)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    assert torch.allclose(host.grad, w)  # host gradient unchanged by the seed
    assert torch.allclose(seed.grad, w)  # the seed is trained as if its output were used


def test_blend_with_isolation_compiles_fullgraph_with_documented_gradients():
    torch._dynamo.reset()
    compiled = torch.compile(blend_with_isolation, fullgraph=True, backend="aot_eager")
    host, seed = _pair()
    alpha = torch.tensor(0.3)
    out = compiled(host, seed, alpha)
    ref = host + 0.3 * (seed - host)
    assert torch.allclose(out, ref)
    out.sum().backward()
    assert torch.allclose(host.grad, torch.full_like(host, 0.7))  # (1 - alpha) on the direct path
    assert torch.allclose(seed.grad, torch.full_like(seed, 0.3))  # alpha through the seed path


def _host_layer_grad(slot, x, w):
    """Gradient of a host conv before ``slot`` when the loss is sum(slot(conv(x)) * w)."""
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    out = conv(x) if slot is None else slot(conv(x))
    (out * w).sum().backward()
    return conv.weight.grad


@pytest.mark.parametrize("stage,isolate", [("TRAINING", True), ("BLENDING", True), ("BLENDING", False)])
def test_isolated_seed_input_sends_no_gradient_into_host(stage, isolate):
    from esper.kasmina.protocol import InjectionSpec
    from esper.kasmina.slot import SeedSlot
    from esper.leyline.config import SlotConfig
    from esper.leyline.stages import SeedStage as S

    slot = SeedSlot(InjectionSpec("s", 4, 0), "cnn", SlotConfig(tempo="fast", isolate_blending=isolate))
    slot.germinate("seed1", "conv_light", 0, 0.0)
    slot.enter(S.TRAINING, "t", 0.0, 1.0)
    if stage == "BLENDING":
        slot.enter(S.BLENDING, "t", 0.0, 1.0)
    for p in slot.seed.parameters():  # a seed whose output is not zero
        torch.nn.init.normal_(p, std=0.5)
    x, w = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    alone = _host_layer_grad(None, x, w)  # the host without any seed
    with_seed = _host_layer_grad(slot, x, w)
    keep = 1.0 if stage == "TRAINING" else 1.0 - slot.alpha.alpha  # STE: untouched; blend: direct path
    assert 0 < keep <= 1
    if isolate:
        assert torch.allclose(with_seed, keep * alone, atol=1e-6)
    else:
        assert not torch.allclose(with_seed, keep * alone, atol=1e-3)  # co-adapting: the seed path adds
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in slot.seed_parameters())


@pytest.mark.parametrize("op", ["add", "multiply", "gate"])
def test_blend_operators_are_identity_at_alpha_zero(op):
    host, seed = _pair()
    gate = torch.rand(2, 1, 1, 1)
    out = {"add": lambda: blend_add(host, seed, 0.0),
           "multiply": lambda: blend_multiply(host, seed, 0.0, host),
           "gate": lambda: blend_gate(host, seed, 0.0, gate)}[op]()
    assert torch.allclose(out, host)


def test_blend_operators_match_formulas():
    host, seed = _pair()
    x = torch.randn_like(host)
    gate = torch.rand(2, 1, 1, 1)
    assert torch.allclose(blend_add(host, seed, torch.tensor(0.25)), host + 0.25 * (seed - host))
    assert torch.allclose(blend_multiply(host, seed, 0.5, x), host * (1 + 0.5 * torch.tanh(seed - x)))
    assert torch.allclose(blend_gate(host, seed, 0.8, gate),
                          host + torch.clamp(0.8 * gate, 0, 1) * (seed - host))
