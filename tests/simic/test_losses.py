"""PPO loss terms against slow element-by-element references on fixed tensors."""

import itertools
import math

import pytest
import torch

from esper.simic import losses as L
from esper.simic.schedule import lr_factor

NEW = torch.tensor([-0.5, -1.2, -0.1, -2.0, -0.7])
OLD = torch.tensor([-0.7, -1.0, -0.6, -1.9, -0.7])
ADV = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0])


def test_clipped_surrogate_matches_loop():
    eps, total = 0.2, 0.0
    for n, o, a in zip(NEW.tolist(), OLD.tolist(), ADV.tolist()):
        r = math.exp(n - o)
        total += max(-a * r, -a * min(max(r, 1 - eps), 1 + eps))
    assert L.clipped_surrogate(NEW, OLD, ADV, eps).item() == pytest.approx(total / 5, rel=1e-6)


def test_per_head_surrogate_ignores_irrelevant_heads():
    new = torch.stack([NEW, NEW * 0.5], 1)  # (B, 2)
    old = torch.stack([OLD, OLD], 1)
    rel = torch.tensor([[1, 0], [1, 1], [1, 0], [1, 1], [1, 0]], dtype=torch.bool)
    expected = 0.0
    for b in range(5):
        for h in range(2):
            if rel[b, h]:
                r = math.exp(new[b, h].item() - old[b, h].item())
                a = ADV[b].item()
                expected += max(-a * r, -a * min(max(r, 0.8), 1.2))
    got = L.per_head_surrogate(new, old, rel, ADV, 0.2).item()
    assert got == pytest.approx(expected / 5, rel=1e-6)


def test_clipped_value_loss_matches_loop():
    new_v = torch.tensor([1.0, 0.0, 2.5])
    old_v = torch.tensor([0.5, 0.4, 2.0])
    ret = torch.tensor([2.0, -1.0, 2.2])
    total = 0.0
    for nv, ov, r in zip(new_v.tolist(), old_v.tolist(), ret.tolist()):
        clipped = ov + min(max(nv - ov, -0.2), 0.2)
        total += max((nv - r) ** 2, (clipped - r) ** 2)
    assert L.clipped_value_loss(new_v, old_v, ret, 0.2).item() == pytest.approx(0.5 * total / 3)
    assert L.clipped_value_loss(new_v, old_v, ret, None).item() == pytest.approx(
        0.5 * sum((a - b) ** 2 for a, b in zip(new_v.tolist(), ret.tolist())) / 3)


def test_entropy_bonus_weights_relevant_heads_per_coefficient():
    ent = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    rel = torch.tensor([[1, 0], [1, 1]], dtype=torch.bool)
    coefs = torch.tensor([0.1, 0.5])
    # head 0: mean(1, 3) = 2 -> 0.2 ; head 1: mean(0, 4) = 2 -> 1.0
    assert L.entropy_bonus(ent, rel, coefs).item() == pytest.approx(1.2)


def test_approx_kl_and_clip_fraction():
    kl = sum(math.exp(n - o) - 1 - (n - o) for n, o in zip(NEW.tolist(), OLD.tolist())) / 5
    assert L.approx_kl(NEW, OLD).item() == pytest.approx(kl, rel=1e-6)
    ratios = [math.exp(n - o) for n, o in zip(NEW.tolist(), OLD.tolist())]
    assert L.clip_fraction(NEW, OLD, 0.2).item() == pytest.approx(sum(abs(r - 1) > 0.2 for r in ratios) / 5)
    assert L.approx_kl(OLD, OLD).item() == 0.0


def test_explained_variance():
    ret = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert L.explained_variance(ret, ret) == pytest.approx(1.0)
    assert L.explained_variance(torch.zeros(4), ret) == pytest.approx(0.0)
    v = torch.tensor([1.5, 1.5, 3.5, 3.5])
    var_r = 1.25
    var_e = torch.tensor([-0.5, 0.5, -0.5, 0.5]).var(unbiased=False).item()
    assert L.explained_variance(v, ret) == pytest.approx(1 - var_e / var_r)
    assert math.isnan(L.explained_variance(ret, torch.ones(4)))


def test_pooled_explained_variance_is_that_of_the_rounds_together():
    g = torch.Generator().manual_seed(0)
    ret = torch.randn(5, 32, generator=g, dtype=torch.float64) + torch.arange(5.0, dtype=torch.float64)[:, None]
    v = ret + 0.5 * torch.randn(5, 32, generator=g, dtype=torch.float64) + 0.3  # a biased, noisy critic
    err = ret - v
    rounds = [(float(r.mean()), float(r.var(unbiased=False)), float(e.mean()), float(e.var(unbiased=False)))
              for r, e in zip(ret, err)]
    pooled = L.pooled_explained_variance(rounds)
    assert pooled == pytest.approx(L.explained_variance(v.reshape(-1), ret.reshape(-1)), abs=1e-12)
    # each round alone sees only its own spread (about 1), not the spread between rounds
    per_round = sum(L.explained_variance(v[i], ret[i]) for i in range(5)) / 5
    assert pooled > 0.9 and per_round < pooled - 0.1
    assert math.isnan(L.pooled_explained_variance([])) and math.isnan(L.pooled_explained_variance([(1, 0, 0, 0)] * 2))


def test_normalize_advantages():
    out = L.normalize_advantages(torch.tensor([1.0, 2.0, 3.0]))
    assert out.tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)


def test_lr_schedule_values():
    f = [lr_factor(u, 10, 2, 0.1) for u in range(11)]
    assert f[0] == pytest.approx(0.5) and f[1] == pytest.approx(1.0)
    assert f[2] == pytest.approx(1.0)  # cosine starts at the top
    assert f[9] == pytest.approx(0.1) and f[10] == pytest.approx(0.1)
    mid = 2 + 3.5  # halfway through the cosine span of 7 updates
    assert lr_factor(int(mid), 10, 2, 0.1) < 1.0
    assert lr_factor(5, 10, 2, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 7)))
    assert all(a >= b for a, b in itertools.pairwise(f[2:]))
    assert lr_factor(0, 1, 0, 0.1) == 1.0
