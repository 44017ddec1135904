"""Breathing truth: the Lujan curve (analytic), irregular breathing statistics, determinism."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
from scipy.signal import find_peaks

from cyberknife_sim.motion import BreathingPattern, CoughEvents, lujan


@pytest.mark.parametrize("n", [1, 2, 3])
def test_lujan_period_amplitude_and_mean(n):
    tau, z0, b = 4.0, 5.0, 12.0
    t = np.linspace(0.0, 8.0, 80001)
    z = lujan(t, z0_mm=z0, b_mm=b, period_s=tau, n=n, phase_rad=0.3)
    # periodic with tau, spans [z0 - b, z0]
    np.testing.assert_allclose(lujan(t + tau, z0_mm=z0, b_mm=b, period_s=tau, n=n,
                                     phase_rad=0.3), z, atol=1e-9)
    assert z.min() == pytest.approx(z0 - b, abs=1e-6)
    assert z.max() == pytest.approx(z0, abs=1e-6)
    # time average of cos^2n over a period is C(2n, n) / 4^n
    one = t <= tau
    assert np.trapezoid(z[one], t[one]) / tau == pytest.approx(z0 - b * comb(2 * n, n) / 4**n,
                                                               rel=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_pattern_asymmetry_matches_exponent(n):
    """Fraction of a breath spent above half amplitude: 1 - (2/pi) asin(2^(-1/(2n)))."""
    pat = BreathingPattern.generate(duration_s=40.0, period_s=4.0, shape_n=n, period_cv=0.0,
                                    amplitude_cv=0.0, rng=np.random.default_rng(0))
    t = np.linspace(0.0, 40.0, 400001)
    g = pat(t)
    expected = 1.0 - 2.0 / np.pi * np.arcsin(2.0 ** (-1.0 / (2 * n)))
    assert np.mean(g > 0.5) == pytest.approx(expected, abs=2e-3)
    assert g.max() == pytest.approx(1.0, abs=1e-6)
    # regular: exactly 10 breaths in 40 s with 4 s period
    peaks, _ = find_peaks(g)
    np.testing.assert_allclose(np.diff(t[peaks]), 4.0, atol=1e-3)


def test_irregular_breathing_statistics_match_configuration():
    """Over ~1000 breaths, measured period and amplitude CVs are within 10 % of the setting.

    Amplitude: each breath's peak. Period: the time a breath spends above half of its own
    peak is a fixed fraction of its period, so its CV is the period CV.
    """
    period_cv, amplitude_cv, mean_period = 0.2, 0.3, 4.0
    pat = BreathingPattern.generate(duration_s=4000.0, period_s=mean_period, shape_n=2,
                                    period_cv=period_cv, amplitude_cv=amplitude_cv,
                                    rng=np.random.default_rng(7))
    dt = 0.005
    t = np.arange(0.0, 4000.0, dt)
    g = pat(t)
    breath = np.floor(pat.phase(t)).astype(int)
    ids = np.unique(breath)[1:-1]  # complete breaths only
    peak = np.array([g[breath == i].max() for i in ids])
    width = np.array([np.sum(g[breath == i] > 0.5 * g[breath == i].max()) * dt for i in ids])
    assert ids.size > 900
    assert np.std(peak) / np.mean(peak) == pytest.approx(amplitude_cv, rel=0.10)
    assert np.std(width) / np.mean(width) == pytest.approx(period_cv, rel=0.10)
    assert np.mean(peak) == pytest.approx(1.0, rel=0.05)
    assert np.mean(pat.periods_s) == pytest.approx(mean_period, rel=0.05)


def test_irregular_breathing_is_continuous_and_smooth():
    pat = BreathingPattern.generate(duration_s=200.0, period_s=4.0, shape_n=2, period_cv=0.3,
                                    amplitude_cv=0.3, rng=np.random.default_rng(3))
    t = np.linspace(0.0, 200.0, 200001)
    g = pat(t)
    dt = t[1] - t[0]
    vmax = np.max(np.abs(pat.velocity(t)))
    # no jumps: a step between samples is bounded by max velocity * dt
    assert np.max(np.abs(np.diff(g))) <= vmax * dt * 1.01
    # analytic velocity agrees with the finite difference
    fd = np.gradient(g, t)
    np.testing.assert_allclose(pat.velocity(t)[1:-1], fd[1:-1], atol=2e-3 * vmax)


def test_same_seed_same_breathing_and_different_seed_differs():
    kw = dict(duration_s=300.0, period_s=4.0, shape_n=2, period_cv=0.2, amplitude_cv=0.3)
    t = np.linspace(0, 300, 3001)
    a = BreathingPattern.generate(rng=np.random.default_rng(11), **kw)(t)
    b = BreathingPattern.generate(rng=np.random.default_rng(11), **kw)(t)
    c = BreathingPattern.generate(rng=np.random.default_rng(12), **kw)(t)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_hysteresis_lead_is_a_phase_shift():
    pat = BreathingPattern.generate(duration_s=100.0, period_s=5.0, shape_n=1, period_cv=0.0,
                                    amplitude_cv=0.0, rng=np.random.default_rng(0))
    t = np.linspace(10, 90, 8001)
    np.testing.assert_allclose(pat(t, lead_deg=36.0), pat(t + 0.5), atol=1e-12)


def test_coughs_poisson_rate_and_shape():
    ev = CoughEvents.generate(duration_s=60000.0, rate_per_min=2.0, event_s=1.0,
                              rng=np.random.default_rng(0))
    assert ev.start_s.size == pytest.approx(2000, rel=0.1)
    one = CoughEvents(start_s=np.array([10.0]), scale=np.array([1.0]), duration_s=2.0)
    assert one(np.array([9.9, 11.0, 12.1])) == pytest.approx([0.0, 1.0, 0.0])
