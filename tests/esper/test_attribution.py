"""force_alpha and counterfactual contribution."""

import pytest
import torch

from esper.leyline.stages import SeedStage
from esper.tolaria.attribution import counterfactual_contribution, force_alpha
from esper.tolaria.runners import evaluate

from esper_testkit import tiny_data, tiny_model

CPU = torch.device("cpu")


def _blended_model():
    model = tiny_model(["block1"])
    slot = model.slots["block1"]
    slot.germinate("seed1", "conv_small", 0, 0.0)
    for stage in (SeedStage.TRAINING, SeedStage.BLENDING, SeedStage.HOLDING):
        slot.enter(stage, "test", 0.0, 1.0)
    slot.alpha.alpha = 1.0
    torch.nn.init.normal_(slot.seed.body.weight, std=2.0)  # a seed that changes predictions
    return model, slot


def test_contribution_is_real_minus_slot_off():
    model, slot = _blended_model()
    loader = tiny_data(seed=3)
    real = evaluate(model, loader, CPU, 3)[1]
    slot.seed, saved = None, slot.seed
    host_only = evaluate(model, loader, CPU, 3)[1]
    slot.seed = saved
    r, off, c = counterfactual_contribution(model, slot, loader, CPU, 3)
    assert (r, off) == (pytest.approx(real), pytest.approx(host_only))
    assert c == pytest.approx(real - host_only) and c != 0.0
    assert slot.forced_alpha is None


def test_force_alpha_restores_even_on_error():
    model, slot = _blended_model()
    with force_alpha(slot, 0.0):
        assert slot.forced_alpha == 0.0
        with force_alpha(slot, 0.5):
            assert slot.forced_alpha == 0.5
        assert slot.forced_alpha == 0.0
    assert slot.forced_alpha is None
    with pytest.raises(RuntimeError):
        with force_alpha(slot, 0.0):
            raise RuntimeError("boom")
    assert slot.forced_alpha is None and slot.alpha.alpha == 1.0


def test_forced_alpha_zero_gives_host_output():
    model, slot = _blended_model()
    x = torch.randn(4, 3, 8, 8)
    model.eval()
    with force_alpha(slot, 0.0):
        off = model(x)
    assert torch.allclose(off, model.host(x))
    assert not torch.allclose(model(x), off)


def test_no_seed_means_zero_contribution():
    model = tiny_model(["block1"])
    r, off, c = counterfactual_contribution(model, model.slots["block1"], tiny_data(), CPU, 3, real_acc=42.0)
    assert (r, off, c) == (42.0, 42.0, 0.0)


def test_paired_se_is_the_standard_error_of_per_sample_differences():
    from esper.tolaria.attribution import paired_se
    real = torch.tensor([1, 1, 0, 1, 0, 1], dtype=torch.bool)
    off = torch.tensor([1, 0, 0, 0, 1, 1], dtype=torch.bool)
    d = [0, 1, 0, 1, -1, 0]
    mean = sum(d) / 6
    sd = (sum((x - mean) ** 2 for x in d) / 5) ** 0.5
    assert paired_se(real, off) == pytest.approx(100 * sd / 6 ** 0.5)
    assert paired_se(real, real) == 0.0


def test_attribution_with_per_sample_hits_matches_the_plain_contribution():
    from esper.tolaria.attribution import attribute
    model, slot = _blended_model()
    loader = tiny_data(seed=3)
    real = evaluate(model, loader, CPU, 3, keep_correct=True)
    a = attribute(model, slot, loader, CPU, 3, real.acc, real.correct)
    r, off, c = counterfactual_contribution(model, slot, loader, CPU, 3)
    assert (a.real_acc, a.off_acc) == (pytest.approx(r), pytest.approx(off))
    assert a.contribution == pytest.approx(c) and a.se > 0
    assert real.correct.dtype == torch.bool and real.correct.numel() == real.samples == 96
