"""Latency predictors: accuracy on a sinusoid, causality, NaN handling, real traces."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.tracking import horizon_steps, make_predictor, relative_rms
from cyberknife_sim.tracking._predictors import truth_ahead

DT = 1.0 / 26.0
H = 0.115
METHODS = ["none", "linear", "nlms", "rls", "kalman"]


def _sine(n=26 * 120, period_s=4.0, amp=5.0):
    t = np.arange(n) * DT
    return t, amp * np.sin(2 * np.pi * t / period_s)


def test_horizon_in_samples():
    """Any horizon on any clock: whole samples until the predicted time has been sampled."""
    assert horizon_steps(0.115, 1 / 26) == 3
    assert horizon_steps(0.115, 0.2) == 1
    assert horizon_steps(0.2, 0.2) == 1
    assert horizon_steps(0.2000001, 0.2) == 2
    with pytest.raises(ValueError):
        horizon_steps(-0.1, 0.2)


def test_truth_ahead_interpolates_fractional_horizons():
    x = np.arange(10.0) ** 2
    np.testing.assert_allclose(truth_ahead(x, 2)[:, 0], x[2:])
    np.testing.assert_allclose(truth_ahead(x, 0.5)[:, 0], 0.5 * (x[:-1] + x[1:]))
    np.testing.assert_allclose(truth_ahead(x, 1.25)[:, 0], x[1:-1] + 0.25 * (x[2:] - x[1:-1]))


@pytest.mark.parametrize(("method", "max_rel"), [("nlms", 0.10), ("rls", 0.01),
                                                 ("linear", 0.25), ("kalman", 0.25)])
def test_sinusoid_is_predicted_after_convergence(method, max_rel):
    """After 60 s of training, the relative RMS error on a pure 4-s sinusoid is small.

    Analytic reference: linear extrapolation of a sinusoid over h has relative error
    about (w h)^2 / (2 * 2 sin(w h / 2)) ~ 0.09 at w h = 0.18 rad (plus the one-step lag).
    """
    _, x = _sine()
    p = make_predictor(method, horizon_s=H, dt_s=DT)
    out = p.predict_series(x)
    rel = relative_rms(x, out, p.horizon_samples, skip=26 * 60)
    assert rel < max_rel
    none = make_predictor("none", horizon_s=H, dt_s=DT)
    assert relative_rms(x, none.predict_series(x), 3, skip=26 * 60) == pytest.approx(1.0)


@pytest.mark.parametrize("method", METHODS)
def test_no_predictor_peeks_at_future_samples(method):
    """Outputs up to sample j depend only on samples up to j."""
    _, x = _sine(n=26 * 30)
    rng = np.random.default_rng(0)
    y = x.copy()
    j = 400
    y[j + 1:] += rng.normal(0, 3.0, y.size - j - 1)
    a = make_predictor(method, horizon_s=H, dt_s=DT).predict_series(x)
    b = make_predictor(method, horizon_s=H, dt_s=DT).predict_series(y)
    np.testing.assert_array_equal(a[: j + 1], b[: j + 1])
    assert not np.allclose(a[j + 1:], b[j + 1:])


@pytest.mark.parametrize("method", METHODS)
def test_update_matches_predict_series_and_handles_3d_and_nan(method):
    t = np.arange(26 * 20) * DT
    x = np.column_stack([np.sin(t), 2 * np.cos(0.7 * t), 0.5 * t])
    x[100] = np.nan  # a dropped frame
    p = make_predictor(method, horizon_s=H, dt_s=DT, dim=3)
    series = p.predict_series(x)
    q = make_predictor(method, horizon_s=H, dt_s=DT, dim=3)
    online = np.array([q.update(s) for s in x])
    np.testing.assert_allclose(online, series, atol=1e-12)
    assert np.all(np.isfinite(series))


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="must be one of none, linear, nlms, rls, kalman"):
        make_predictor("no-such-method", horizon_s=H, dt_s=DT)


@pytest.mark.parametrize("method", ["nlms", "rls"])
@pytest.mark.parametrize("dim", [1, 3])
def test_compiled_kernel_matches_the_numpy_reference(method, dim):
    """Breathing with noise, dropped samples and a 12 mm step (which restarts RLS's P)."""
    rng = np.random.default_rng(8)
    t = np.arange(3000) * DT
    x = 5 * np.sin(2 * np.pi * t / 4.0)[:, None] * np.linspace(1, 0.5, dim) \
        + rng.normal(0, 0.1, (t.size, dim))
    x[1500:] += 12.0
    x[rng.random(t.size) < 0.05] = np.nan
    fast = make_predictor(method, horizon_s=H, dt_s=DT, dim=dim, guard=False).predict_series(x)
    ref = make_predictor(method, horizon_s=H, dt_s=DT, dim=dim, compiled=False,
                         guard=False).predict_series(x)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", ["nlms", "rls"])
def test_fractional_horizon_is_learned_exactly(method):
    """115 ms on a 5 Hz clock (0.575 samples): the filters learn the signal at t + 115 ms
    (interpolated between the samples around it) and the compiled kernel agrees with numpy."""
    t = np.arange(3000) * 0.2
    x = 5 * np.sin(2 * np.pi * t / 4.0)
    fast = make_predictor(method, horizon_s=H, dt_s=0.2, guard=False)
    ref = make_predictor(method, horizon_s=H, dt_s=0.2, guard=False, compiled=False)
    a, b = fast.predict_series(x), ref.predict_series(x)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    assert fast.horizon_steps == 1 and fast.horizon_samples == pytest.approx(0.575)
    assert relative_rms(x, a, fast.horizon_samples, skip=500) < 0.2
