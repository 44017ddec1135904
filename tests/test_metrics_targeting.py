"""Targeting-error metrics against analytic truth."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cyberknife_sim.geometry import point_line_distance
from cyberknife_sim.metrics import (
    beam_statistics,
    component_statistics,
    error_statistics,
    perpendicular,
    targeting_error_vectors,
    weighted_percentile,
)


def test_error_vector_of_an_offset_beam_is_the_offset():
    # beam along z through (0.3, -0.4, 0); target at origin: error vector (0.3, -0.4, 0)
    vec = targeting_error_vectors([[0, 0, 0]], [[0.3, -0.4, 800.0]], [[0, 0, -1.0]])
    np.testing.assert_allclose(vec, [[0.3, -0.4, 0.0]], atol=1e-12)
    assert np.linalg.norm(vec) == pytest.approx(0.5, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=9, max_size=9))
def test_error_vector_norm_equals_point_line_distance(xs):
    t, s, d = np.array(xs[:3]), np.array(xs[3:6]), np.array(xs[6:])
    if np.linalg.norm(d) < 1e-3:
        d = np.array([0.0, 0.0, 1.0])
    vec = targeting_error_vectors(t, s, d)
    assert np.linalg.norm(vec) == pytest.approx(point_line_distance(t, s, d), abs=1e-9)
    assert abs(vec[0] @ d) <= 1e-9 * max(1.0, np.linalg.norm(d) * np.linalg.norm(vec))


def test_perpendicular_components_sum_like_the_vectors():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    d = rng.normal(size=(10, 3))
    np.testing.assert_allclose(perpendicular(a, d) + perpendicular(b, d),
                               perpendicular(a + b, d), atol=1e-12)


def test_statistics_of_known_samples():
    e = np.array([0.1, 0.2, 0.3, 0.4, 2.0])
    s = error_statistics(e)
    assert s["rms"] == pytest.approx(np.sqrt(np.mean(e**2)), rel=1e-12)
    assert s["max"] == 2.0
    assert s["within_0_5mm"] == pytest.approx(0.8)
    assert s["within_1mm"] == pytest.approx(0.8)
    assert s["p95"] == 2.0  # 4 of 5 samples (80 %) lie below 2.0


def test_time_weights_change_fractions_and_rms():
    e = np.array([0.2, 1.5])
    s = error_statistics(e, [3.0, 1.0])
    assert s["within_0_5mm"] == pytest.approx(0.75)
    assert s["rms"] == pytest.approx(np.sqrt((3 * 0.04 + 2.25) / 4))
    assert s["beam_on_s"] == pytest.approx(4.0)
    assert error_statistics(e, [0.0, 0.0])["n_samples"] == 0


def test_weighted_percentile_matches_numpy_inverted_cdf():
    rng = np.random.default_rng(3)
    v = rng.normal(size=1001)
    for q in (5.0, 50.0, 95.0, 100.0):
        assert weighted_percentile(v, np.ones_like(v), q) == pytest.approx(
            np.percentile(v, q, method="inverted_cdf"))


def test_nan_during_beam_on_is_an_error():
    with pytest.raises(ValueError, match="NaN"):
        error_statistics([0.1, np.nan])


def test_beam_statistics_mu_weighting():
    b = np.array([0, 0, 1, 1, -1])
    e = np.array([0.1, 0.1, 0.4, 0.4, 9.0])
    w = np.ones(5)
    rows, mw = beam_statistics(b, e, w, [100.0, 300.0])
    assert [r["beam"] for r in rows] == [0, 1]
    assert rows[1]["rms_mm"] == pytest.approx(0.4)
    assert mw["rms_mm"] == pytest.approx(np.sqrt((100 * 0.01 + 300 * 0.16) / 400))
    assert mw["worst_beam"] == 1
    with pytest.raises(ValueError, match="outside"):
        beam_statistics([2], [0.1], [1.0], [1.0, 1.0])


def test_component_statistics_magnitudes():
    comp = {"robot": np.array([[0.3, 0.4, 0.0], [0.0, 0.0, 0.0]])}
    s = component_statistics(comp)
    assert s["robot"]["max"] == pytest.approx(0.5)
    assert s["robot"]["rms"] == pytest.approx(np.sqrt(0.25 / 2))
