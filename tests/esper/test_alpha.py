"""Alpha curves and the alpha controller."""

import math

import pytest

from esper.kasmina.alpha import CURVES, AlphaController, AlphaMode, curve_sigmoid


@pytest.mark.parametrize("name", sorted(CURVES))
def test_curves_run_from_zero_to_one_monotonically(name):
    f = CURVES[name]
    assert f(0.0) == pytest.approx(0.0, abs=1e-9)
    assert f(1.0) == pytest.approx(1.0, abs=1e-9)
    values = [f(i / 20) for i in range(21)]
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("k", [6, 12, 24])
def test_sigmoid_steepness_rescaled(k):
    logistic = lambda t: 1 / (1 + math.exp(-k * (t - 0.5)))  # noqa: E731
    lo, hi = logistic(0.0), logistic(1.0)
    for t in (0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0):
        assert curve_sigmoid(t, k) == pytest.approx((logistic(t) - lo) / (hi - lo), abs=1e-12)
    assert curve_sigmoid(0.0, k) == pytest.approx(0.0, abs=1e-12)
    assert curve_sigmoid(1.0, k) == pytest.approx(1.0, abs=1e-12)


def test_sigmoid_steepness_orders_the_curves():
    early = [curve_sigmoid(0.25, k) for k in (6, 12, 24)]
    assert early[0] > early[1] > early[2] > 0  # steeper: slower start ...
    late = [curve_sigmoid(0.75, k) for k in (6, 12, 24)]
    assert late[0] < late[1] < late[2] < 1  # ... and faster finish


def test_controller_ramps_snaps_and_holds():
    a = AlphaController(curve="cosine")
    a.retarget(1.0, 4)
    assert a.mode is AlphaMode.UP
    seen = []
    while a.step():
        seen.append(a.alpha)
    assert seen[:3] == pytest.approx([0.5 * (1 - math.cos(math.pi * t / 4)) for t in (1, 2, 3)])
    assert seen[-1] == 1.0 and a.mode is AlphaMode.HOLD and len(seen) == 4
    a.retarget(0.5, 2)
    assert a.mode is AlphaMode.DOWN
    with pytest.raises(RuntimeError):
        a.retarget(0.0, 2)  # retarget only from HOLD
    a.step()
    assert a.alpha == pytest.approx(0.75)
    a.step()
    assert a.alpha == 0.5 and a.idle


def test_zero_steps_snaps_to_target():
    a = AlphaController()
    a.retarget(0.7, 0)
    assert a.alpha == 0.7 and a.idle and a.step() is False
