"""GAE against a slow per-episode reference: sum of discounted TD errors inside each episode."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from esper.simic.gae import compute_gae, next_values_from


def reference_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    T, N = len(rewards), len(rewards[0])
    adv = [[0.0] * N for _ in range(T)]
    for n in range(N):
        for t in range(T):
            total, k = 0.0, 0
            while t + k < T:
                s = t + k
                boot = 0.0 if terminated[s][n] else gamma * next_values[s][n]
                delta = rewards[s][n] + boot - values[s][n]
                total += (gamma * lam) ** k * delta
                if terminated[s][n] or truncated[s][n]:
                    break
                k += 1
            adv[t][n] = total
    return adv


def test_gae_matches_reference_with_truncation_and_termination():
    g = torch.Generator().manual_seed(3)
    T, N = 9, 3
    r = torch.randn(T, N, generator=g)
    v = torch.randn(T, N, generator=g)
    nv = torch.randn(T, N, generator=g)
    term = torch.zeros(T, N, dtype=torch.bool)
    trunc = torch.zeros(T, N, dtype=torch.bool)
    term[3, 0] = True
    trunc[5, 1] = True
    term[2, 2], trunc[6, 2] = True, True
    adv, ret = compute_gae(r, v, nv, term, trunc, 0.99, 0.95)
    ref = torch.tensor(reference_gae(r.tolist(), v.tolist(), nv.tolist(), term.tolist(), trunc.tolist(),
                                     0.99, 0.95))
    torch.testing.assert_close(adv, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ret, ref + v)


def test_truncation_bootstraps_but_termination_does_not():
    r = torch.zeros(1, 2)
    v = torch.zeros(1, 2)
    nv = torch.full((1, 2), 10.0)
    term = torch.tensor([[True, False]])
    trunc = torch.tensor([[False, True]])
    adv, _ = compute_gae(r, v, nv, term, trunc, 0.5, 0.9)
    assert adv.tolist() == [[0.0, 5.0]]


def test_next_values_uses_bootstrap_at_episode_ends():
    values = torch.tensor([[1.0], [2.0], [3.0]])
    ended = torch.tensor([[False], [True], [False]])
    boot = torch.tensor([[0.0], [7.0], [0.0]])
    nv = next_values_from(values, torch.tensor([9.0]), ended, boot)
    assert nv.flatten().tolist() == [2.0, 7.0, 9.0]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 4), st.integers(0, 10 ** 6), st.floats(0.5, 1.0), st.floats(0.0, 1.0))
def test_gae_matches_reference_on_random_episode_ends(T, N, seed, gamma, lam):
    g = torch.Generator().manual_seed(seed)
    r, v, nv = (torch.randn(T, N, generator=g, dtype=torch.float64) for _ in range(3))
    flags = torch.randint(0, 4, (T, N), generator=g)
    term, trunc = flags == 1, flags == 2
    adv, _ = compute_gae(r, v, nv, term, trunc, gamma, lam)
    ref = torch.tensor(reference_gae(r.tolist(), v.tolist(), nv.tolist(), term.tolist(), trunc.tolist(),
                                     gamma, lam), dtype=torch.float64)
    torch.testing.assert_close(adv, ref)
