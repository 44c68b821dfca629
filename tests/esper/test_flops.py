"""The analytic FLOP count against torch's FlopCounterMode, per module and per pass."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from esper.kasmina import CNNConfig, CNNHost, MorphogeneticModel, TransformerConfig, TransformerHost
from esper.kasmina.blueprints import blueprint_names
from esper.kasmina.flops import FlopCount, count_module_flops, model_flops
from esper.leyline.config import SlotConfig
from esper.leyline.stages import SeedStage as S

aten = torch.ops.aten


def _cpu_sdpa(q, k, v, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(q, k, v)


def _cpu_sdpa_backward(grad_out, q, k, v, *args, out_shape=None, **kwargs):
    return sdpa_backward_flop_count(grad_out, q, k, v)


# torch registers its attention formulas for the CUDA kernels only; the CPU kernel gets the same ones
CPU_ATTENTION = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
                 aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward}


def torch_count(model, x, backward=True):
    """(forward FLOPs, training FLOPs) of one pass on x, by torch's counter."""
    model.eval()
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as fwd:
        out = model(x)
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as bwd:
        out.float().sum().backward()
    model.zero_grad(set_to_none=True)
    return fwd.get_total_flops(), fwd.get_total_flops() + bwd.get_total_flops()


def cnn(**kw):
    return MorphogeneticModel(CNNHost(CNNConfig(**kw)), slot_cfg=SlotConfig(isolate_blending=False))


def put(model, slot_id, blueprint, stage):
    slot = model.slots[slot_id]
    slot.germinate(f"s_{slot_id}", blueprint, 0, 0.0)
    for st in (S.TRAINING, S.BLENDING, S.HOLDING, S.FOSSILIZED):
        if slot.stage is stage:
            break
        slot.enter(st, "test", 0.0, 1.0)
    for p in slot.seed.parameters():  # a seed whose output reaches the loss
        torch.nn.init.normal_(p, std=0.1)
    return slot


@pytest.mark.parametrize("kw", [{}, {"base": 16}, {"base": 4, "blocks": 4, "pool_blocks": 1}])
def test_host_alone_matches_torch(kw):
    model = cnn(**kw)
    x = torch.randn(2, 3, 16, 16)
    mf = model_flops(model, x[:1])
    fwd, train = torch_count(model, x)
    assert mf.seeds == {}
    assert (2 * mf.total.forward, 2 * mf.total.training) == (fwd, train)
    assert mf.total.backward < 2 * mf.total.forward  # the first conv needs no input gradient


GROUPED = {"depthwise"}  # torch's counter charges a grouped conv's weight gradient `groups` times


@pytest.mark.parametrize("stage", [S.TRAINING, S.BLENDING, S.FOSSILIZED])
@pytest.mark.parametrize("blueprint", [b for b in blueprint_names("cnn") if b not in GROUPED])
def test_cnn_seeds_match_torch_in_each_stage(blueprint, stage):
    model = cnn()
    put(model, "block1", blueprint, stage)
    x = torch.randn(3, 3, 16, 16)
    mf = model_flops(model, x[:1])
    assert (3 * mf.total.forward, 3 * mf.total.training) == torch_count(model, x)


def test_seed_share_is_what_the_seed_adds_and_detached_input_skips_its_gradient():
    host_only = model_flops(cnn(), torch.randn(1, 3, 16, 16)).total
    model = cnn()
    slot = put(model, "block2", "conv_heavy", S.TRAINING)
    mf = model_flops(model, torch.randn(1, 3, 16, 16))
    assert mf.host == host_only and set(mf.seeds) == {"block2"}
    c = 32  # block2 channels at 4x4: conv 3x3 c->2c, 2c->2c, 2c->c
    fwd = 2 * 16 * 9 * (c * 2 * c + 2 * c * 2 * c + 2 * c * c)
    assert mf.seeds["block2"].forward == fwd
    first = 2 * 16 * 9 * c * 2 * c  # TRAINING reads host.detach(): no input gradient for the first conv
    assert mf.seeds["block2"].backward == 2 * fwd - first
    slot.enter(S.BLENDING, "test", 0.0, 1.0)  # co-adapting (isolate_blending=False): input gradient too
    assert model_flops(model, torch.randn(1, 3, 16, 16)).seeds["block2"].backward == 2 * fwd
    assert mf.without("block2") == host_only


def test_germinated_and_alpha_zero_seeds_cost_nothing():
    model = cnn()
    put(model, "block1", "conv_light", S.GERMINATED)
    assert model_flops(model, torch.randn(1, 3, 16, 16)).seeds == {}
    slot = model.slots["block1"]
    slot.enter(S.TRAINING, "t", 0.0, 1.0)
    slot.enter(S.BLENDING, "t", 0.0, 1.0)
    slot.forced_alpha = 0.0
    assert model_flops(model, torch.randn(1, 3, 16, 16)).seeds == {}


def test_depthwise_forward_matches_and_weight_gradient_differs_by_torchs_known_factor():
    model = cnn()
    put(model, "block1", "depthwise", S.FOSSILIZED)
    x = torch.randn(2, 3, 16, 16)
    mf = model_flops(model, x[:1])
    fwd, train = torch_count(model, x)
    assert 2 * mf.total.forward == fwd
    c = 16  # block1 (after its max-pool): depthwise 3x3 over 16 channels at 4x4, groups = 16
    dw_weight_grad = 2 * 16 * c * 9
    assert train - 2 * mf.total.training == 2 * (c - 1) * dw_weight_grad


@pytest.mark.parametrize("blueprint", blueprint_names("transformer"))
def test_transformer_with_each_seed_matches_torch(blueprint):
    host = TransformerHost(TransformerConfig(width=32, heads=4, layers=2, block_size=16))
    model = MorphogeneticModel(host)
    put(model, "layer0", blueprint, S.BLENDING)
    idx = torch.randint(0, 256, (2, 16))
    mf = model_flops(model, idx[:1])
    assert (2 * mf.total.forward, 2 * mf.total.training) == torch_count(model, idx)
    attention = 2 * 4 * 16 * 16 * (8 + 8)  # per layer: heads * T * T * (d + d_v) * 2
    assert mf.host.forward > 2 * attention  # both host layers' attention is counted


def test_count_leaves_parameters_buffers_gradients_and_mode_alone():
    model = cnn()
    put(model, "block0", "conv_light", S.BLENDING)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_module_flops(model, torch.randn(1, 3, 16, 16))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_flop_count_adds():
    assert FlopCount(1, 2) + FlopCount(3, 4) == FlopCount(4, 6)
    assert FlopCount(5, 7).training == 12
