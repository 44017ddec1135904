"""The guards every predictor runs in (:mod:`cyberknife_sim.tracking._guard`): injected steps
and spikes, runaway predictions, a method worse than no prediction, dropouts, the counts."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.tracking import make_predictor, relative_rms
from cyberknife_sim.tracking._guard import GuardedPredictor
from cyberknife_sim.tracking._predictors import METHODS, NoPredictor, Predictor, truth_ahead


def _breathing(seconds: float, dt: float, *, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, seconds, dt)
    period = 4.0 + 0.5 * np.sin(2 * np.pi * t / 47.0)
    phase = 2 * np.pi * np.cumsum(dt / period)
    return t, 5.0 * np.sin(phase) + rng.normal(0, 0.1, t.size)


def _worst(x, pred, steps, skip):
    k = int(np.ceil(steps - 1e-9))
    truth = truth_ahead(x, steps)[skip:]
    xs = x.reshape(len(x), -1)
    err = np.abs(truth - pred.reshape(len(x), -1)[skip: len(x) - k]).max()
    none = np.abs(truth - xs[skip: len(x) - k]).max()
    return err, none


@pytest.mark.parametrize("dt", [0.2, pytest.param(1 / 26, marks=pytest.mark.slow)])
@pytest.mark.parametrize("horizon_s", [0.115, 0.2])
@pytest.mark.parametrize("kind", ["step", "spike"])
def test_steps_and_spikes_cost_no_more_than_half_again_no_prediction(kind, horizon_s, dt):
    """A 12 mm step or a 22 mm one-sample spike in breathing: every method's worst error
    <= 1.5 x the worst error of no prediction (unguarded RLS predicted -90 mm on the step,
    Kalman erred by 67 mm on the spike)."""
    _, x = _breathing(90.0, dt)
    j = x.size * 2 // 3
    if kind == "step":
        x[j:] += 12.0
    else:
        x[j] += 22.0
    for method in METHODS:
        p = make_predictor(method, horizon_s=horizon_s, dt_s=dt)
        pred = p.predict_series(x)
        worst, none = _worst(x, pred, p.horizon_samples, int(20 / dt))
        assert worst <= 1.5 * none, (method, worst, none)
        stats = p.guard_stats
        if kind == "spike":
            assert stats["gated_samples"] >= 1 and stats["steps_accepted"] == 0, method
        elif dt < 0.1:  # at 26 Hz 12 mm is far outside breathing's increments: confirmed step
            assert stats["steps_accepted"] == 1, (method, stats)


class _Runaway(Predictor):
    """Predicts 1000 units away, or (``wrong_until``) the mirror of the current trend."""

    name = "runaway"
    exact_horizon = True

    def __init__(self, *, wrong_until: int | None = None, **kw):
        self.wrong_until = wrong_until
        super().__init__(**kw)

    def reset(self):
        super().reset()
        self._prev, self._n = None, 0

    def _step(self, x):
        prev = x if self._prev is None else self._prev
        self._prev, self._n = x, self._n + 1
        trend = (x - prev) * self.horizon_samples
        if self.wrong_until is None:
            return x + 1000.0
        return x - 2 * trend if self._n < self.wrong_until else x + trend


def test_runaway_predictions_are_bounded_by_recent_velocity():
    dt, h = 1 / 26, 0.115
    _, x = _breathing(60.0, dt)
    g = GuardedPredictor(_Runaway(horizon_s=h, dt_s=dt))
    pred = g.predict_series(x)[:, 0]
    vmax = np.abs(np.diff(x)).max()
    span = np.ptp(x)
    step = pred[20:] - x[20:]
    assert np.all(np.abs(step) <= 1.5 * vmax * h / dt + 0.05 * span + 1e-9)
    assert g.guard_stats["clamped_predictions"] > 0.9 * x.size
    # and the bounded runaway is then worse than no prediction: the fallback takes over
    assert g.guard_stats["fallback_s"] > 40.0


def test_fallback_while_worse_than_no_prediction_then_recovery():
    """A method that predicts the wrong way for 60 s, then right: no prediction is output
    while it is worse, the method again once it is better."""
    dt, h = 1 / 26, 0.2
    _, x = _breathing(150.0, dt)
    inner = _Runaway(horizon_s=h, dt_s=dt, wrong_until=int(60 / dt))
    g = GuardedPredictor(inner)
    pred = g.predict_series(x)
    stats = g.guard_stats
    assert 40.0 < stats["fallback_s"] < 75.0 and not stats["in_fallback"]
    k = g.horizon_samples
    wrong = relative_rms(x[: int(60 / dt)], pred[: int(60 / dt)], k, skip=int(10 / dt))
    unguarded = _Runaway(horizon_s=h, dt_s=dt, wrong_until=int(60 / dt)).predict_series(x)
    assert wrong < 1.10 < relative_rms(x[: int(60 / dt)], unguarded[: int(60 / dt)], k)
    late = slice(int(90 / dt), None)
    assert relative_rms(x[late], pred[late], k) < 0.8  # recovered: the trend helps again


@pytest.mark.parametrize("dt", [0.2, pytest.param(1 / 26, marks=pytest.mark.slow)])
def test_dropouts_cost_no_more_than_half_again_no_prediction(dt):
    """5 % of samples and a 4 s run dropped (NaN): finite predictions, and on the samples
    whose input and truth are known every method's worst error <= 1.5 x no prediction's
    (a method's velocity right after a gap spans the gap: unguarded Kalman made 2.9x)."""
    rng = np.random.default_rng(5)
    _, x = _breathing(90.0, dt)
    x[rng.random(x.size) < 0.05] = np.nan
    x[x.size // 2: x.size // 2 + int(4 / dt)] = np.nan
    held = x.copy()
    for i in range(1, held.size):
        held[i] = held[i] if np.isfinite(held[i]) else held[i - 1]
    skip = int(20 / dt)
    for method in METHODS:
        p = make_predictor(method, horizon_s=0.2, dt_s=dt)
        pred = p.predict_series(x)[:, 0]
        assert np.isfinite(pred).all(), method
        k = p.horizon_steps
        truth = truth_ahead(held, p.horizon_samples)[:, 0]
        known = np.isfinite(x[k:]) & np.isfinite(x[:-k])
        err = np.abs(truth - pred[:-k])[known][skip:]
        none = np.abs(truth - held[:-k])[known][skip:]
        assert err.max() <= 1.5 * none.max(), (method, err.max(), none.max())


def test_guard_off_and_options():
    dt = 1 / 26
    raw = make_predictor("none", horizon_s=0.115, dt_s=dt, guard=False)
    assert isinstance(raw, NoPredictor) and raw.guard_stats == {"guarded": False}
    g = make_predictor("rls", horizon_s=0.115, dt_s=dt, guard_options={"gate_sigmas": 8.0})
    assert isinstance(g, GuardedPredictor) and g.gate_sigmas == 8.0
    assert g.order == 8 and g.name == "rls"  # the method's options read through


def test_guard_stats_count_a_spike_and_reset():
    dt = 1 / 26
    _, x = _breathing(60.0, dt)
    x[800] += 22.0
    p = make_predictor("kalman", horizon_s=0.115, dt_s=dt)
    p.predict_series(x)
    s = p.guard_stats
    assert s == {**s, "guarded": True, "samples": x.size, "gated_samples": 1,
                 "steps_accepted": 0}
    p.reset()
    assert p.guard_stats["samples"] == 0 and p.guard_stats["gated_samples"] == 0


@pytest.mark.parametrize("method", ["none", "linear", "rls", "kalman"])
@pytest.mark.parametrize("dim", [1, 3])
def test_compiled_guard_matches_the_numpy_reference(method, dim):
    """Breathing with noise, a 12 mm step, a 22 mm spike, dropped samples and a runaway
    stretch: the compiled guard gives the reference's outputs and counts."""
    from cyberknife_sim.tracking._guard import GuardedPredictor, ReferenceGuard
    from cyberknife_sim.tracking._predictors import make_predictor as mk

    rng = np.random.default_rng(21)
    dt = 1.0 / 26.0
    t = np.arange(4000) * dt
    x = 5 * np.sin(2 * np.pi * t / 4.0)[:, None] * np.linspace(1, 0.6, dim) \
        + rng.normal(0, 0.05, (t.size, dim))
    x[1500:] += 12.0
    x[2500] += 22.0
    x[rng.random(t.size) < 0.05] = np.nan
    x[3000:3100] = np.nan
    a = GuardedPredictor(mk(method, horizon_s=0.115, dt_s=dt, dim=dim, guard=False))
    b = ReferenceGuard(mk(method, horizon_s=0.115, dt_s=dt, dim=dim, guard=False))
    pa, pb = a.predict_series(x), b.predict_series(x)
    np.testing.assert_allclose(pa, pb, rtol=0, atol=1e-9)
    assert a.guard_stats == b.guard_stats
    assert a.guard_stats["gated_samples"] > 0 and a.guard_stats["steps_accepted"] > 0
