"""RollingCorrelation with its drift term against analytic truth."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.tracking import RollingCorrelation

SLOPE = np.array([0.0, -0.06, -0.19])  # mm target per mm chest
DRIFT = np.array([0.1, 0.05, 0.15]) / 60.0  # mm/s


def points(n, t_span_s, rng, noise_mm=0.0):
    t = np.sort(rng.uniform(0.0, t_span_s, n))
    e = rng.uniform(0.0, 10.0, n)
    y = 1.0 + np.outer(e, SLOPE) + np.outer(t, DRIFT) + rng.normal(0, noise_mm, (n, 3))
    return t, e, y


@pytest.mark.parametrize("model", ["linear", "quadratic", "dual", "linear_velocity"])
def test_recovers_a_linear_model_and_its_drift_exactly(model):
    rng = np.random.default_rng(0)
    t, e, y = points(12, 500.0, rng)
    c = RollingCorrelation(model, n_points=12, drift_prior_mm_per_min=1e6)
    v = np.where(np.arange(12) % 2, 1.0, -1.0)
    for k in range(12):
        st = c.add(e[k], y[k], v[k], time_s=t[k])
    assert st.residual_mm < 1e-6
    np.testing.assert_allclose(c.drift_mm_s, DRIFT, atol=1e-8)
    # prediction at a later time extrapolates the drift
    for ek, tk in [(3.0, 520.0), (7.5, 545.0)]:
        np.testing.assert_allclose(c.predict_one(ek, 1.0, tk), 1.0 + ek * SLOPE + tk * DRIFT,
                                   atol=1e-6)


def test_without_the_drift_term_the_fit_lags_the_drift():
    rng = np.random.default_rng(1)
    t, e, y = points(12, 500.0, rng)
    on = RollingCorrelation("linear", drift_prior_mm_per_min=1e6)
    off = RollingCorrelation("linear", drift_prior_mm_per_min=0.0)
    for k in range(12):
        on.add(e[k], y[k], time_s=t[k])
        off.add(e[k], y[k], time_s=t[k])
    truth = 1.0 + 5.0 * SLOPE + t[-1] * DRIFT
    assert np.linalg.norm(on.predict_one(5.0, 0.0, t[-1]) - truth) < 1e-6
    # with no drift term the model sits near the mean time of the window: ~250 s of drift late
    lag = np.linalg.norm(off.predict_one(5.0, 0.0, t[-1]) - truth)
    assert lag > 0.5 * np.linalg.norm(DRIFT) * (t[-1] - t.mean())
    np.testing.assert_array_equal(off.drift_mm_s, 0.0)


def test_prior_keeps_a_short_burst_from_inventing_a_drift():
    """Ten noisy points within 13 s (the model build): the drift stays near the prior's 0."""
    rng = np.random.default_rng(2)
    t = np.arange(10) * 1.3
    e = rng.uniform(0.0, 10.0, 10)
    y = np.outer(e, SLOPE) + rng.normal(0, 0.2, (10, 3))
    weak = RollingCorrelation("linear", drift_prior_mm_per_min=1e6)
    strong = RollingCorrelation("linear", drift_prior_mm_per_min=0.3, point_sigma_mm=0.2)
    for k in range(10):
        weak.add(e[k], y[k], time_s=t[k])
        strong.add(e[k], y[k], time_s=t[k])
    assert np.linalg.norm(strong.drift_mm_s) * 60 < 0.3  # mm/min
    assert np.linalg.norm(weak.drift_mm_s) > 3 * np.linalg.norm(strong.drift_mm_s)


def test_status_flags_a_point_far_from_the_model():
    c = RollingCorrelation("linear", max_residual_mm=1.0)
    for k in range(6):
        c.add(float(k), k * SLOPE, time_s=10.0 * k)
    st = c.add(3.0, 3.0 * SLOPE + [0.0, 0.0, 3.0], time_s=60.0)
    assert st.prediction_error_mm == pytest.approx(3.0, abs=0.05)
    assert not st.model_ok


@pytest.mark.parametrize("kwargs, needle", [({"n_points": 0}, "n_points"),
                                            ({"drift_prior_mm_per_min": -1}, "drift_prior"),
                                            ({"point_sigma_mm": 0.0}, "point_sigma")])
def test_bad_settings_are_rejected(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        RollingCorrelation("linear", **kwargs)


def test_bad_points_are_rejected():
    c = RollingCorrelation("linear", drift_prior_mm_per_min=0.3)
    c.add(1.0, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="shape"):
        c.add(1.0, [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        c.add(np.nan, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="finite"):
        c.add(1.0, [1.0, 2.0, 3.0], time_s=np.inf)
    with pytest.raises(RuntimeError):
        RollingCorrelation("linear").predict_one(1.0, 0.0, 0.0)


def test_without_a_drift_prior_time_is_ignored():
    """The default (no drift term) is the plain rolling fit: time changes nothing."""
    rng = np.random.default_rng(3)
    t, e, y = points(12, 500.0, rng, noise_mm=0.1)
    a, b = RollingCorrelation("linear"), RollingCorrelation("linear")
    for k in range(12):
        a.add(e[k], y[k], time_s=t[k])
        b.add(e[k], y[k])
    assert not a.has_drift_term
    np.testing.assert_array_equal(a.predict_one(4.0, 0.0, 900.0), b.predict_one(4.0))


@pytest.mark.parametrize("model", ["linear", "quadratic", "dual", "linear_velocity"])
@pytest.mark.parametrize("prior", [0.0, 0.3])
def test_vectorized_prediction_matches_one_at_a_time(model, prior):
    rng = np.random.default_rng(4)
    t, e, y = points(12, 500.0, rng, noise_mm=0.1)
    c = RollingCorrelation(model, drift_prior_mm_per_min=prior)
    v = rng.normal(0.0, 3.0, 12)
    for k in range(12):
        c.add(e[k], y[k], v[k], time_s=t[k])
    assert c.ext_range == (e.min(), e.max())
    q_e, q_v, q_t = rng.uniform(0, 10, 50), rng.normal(0, 3, 50), rng.uniform(500, 600, 50)
    one = np.array([c.predict_one(a, b, tt) for a, b, tt in zip(q_e, q_v, q_t, strict=True)])
    np.testing.assert_allclose(c.predict(q_e, q_v, q_t), one, rtol=0, atol=1e-12)
