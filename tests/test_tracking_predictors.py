"""Latency predictors: accuracy on a sinusoid, causality, NaN handling, real traces."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.tracking import horizon_steps, make_predictor, relative_rms

DT = 1.0 / 26.0
H = 0.115
METHODS = ["none", "linear", "nlms", "rls", "kalman"]


def _sine(n=26 * 120, period_s=4.0, amp=5.0):
    t = np.arange(n) * DT
    return t, amp * np.sin(2 * np.pi * t / period_s)


def test_horizon_in_samples():
    assert horizon_steps(0.115, 1 / 26) == 3
    with pytest.raises(ValueError, match="resample"):
        horizon_steps(0.115, 0.2)


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
    rel = relative_rms(x, out, p.horizon_steps, skip=26 * 60)
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
    with pytest.raises(ValueError, match="none, linear, nlms, rls, kalman"):
        make_predictor("wlms", horizon_s=H, dt_s=DT)


@pytest.mark.shared_data
@pytest.mark.slow
def test_rls_beats_nlms_on_real_traces(shared_data):
    """On real tumour traces (5 Hz, cubic-resampled to 26 Hz), 115 ms ahead."""
    from cyberknife_sim.motion import read_trace, resample

    for name in ("lung_trace1_large_ap_6dof.txt", "liver_trace1_6dof.txt",
                 "pair_mean_motion_091_internal.txt"):
        tr = resample(read_trace(shared_data / "traces" / name, columns=(1, 2, 3)), DT,
                      method="cubic")
        x = tr.values[: 26 * 400]
        rel = {}
        for m in ("none", "nlms", "rls"):
            p = make_predictor(m, horizon_s=H, dt_s=DT, dim=3)
            rel[m] = relative_rms(x, p.predict_series(x), p.horizon_steps, skip=26 * 20)
        print(name, rel)
        assert rel["rls"] < 0.8 * rel["nlms"] < 0.8 * rel["none"]


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
    fast = make_predictor(method, horizon_s=H, dt_s=DT, dim=dim).predict_series(x)
    ref = make_predictor(method, horizon_s=H, dt_s=DT, dim=dim, compiled=False).predict_series(x)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-9)
