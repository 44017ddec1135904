"""Registration building blocks against analytic truth: shifts, triangulation, Jacobians."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cyberknife_sim.geometry import matrix_from_pose
from cyberknife_sim.imaging import ViewGeometry
from cyberknife_sim.registration import (
    enhance,
    gradient_correlation,
    increment_matrix,
    match_template,
    match_template_candidates,
    ncc,
    pose_jacobian,
    project,
    triangulate,
    triangulate_shift,
)


def _pair() -> tuple[ViewGeometry, ViewGeometry]:
    out = []
    for deg, name in ((45.0, "A"), (-45.0, "B")):
        th = np.deg2rad(deg)
        src = 2200.0 * np.array([np.sin(th), -np.cos(th), 0.0])
        out.append(ViewGeometry(name, src, -1400.0 / 2200.0 * src, np.array([0, 0, -1.0]),
                                np.array([np.cos(th), np.sin(th), 0.0]), 0.8, (512, 512)))
    return out[0], out[1]


def _texture(rng: np.random.Generator, shape=(160, 160), sigma=2.0) -> np.ndarray:
    return cv2.GaussianBlur(rng.normal(size=shape).astype(np.float32), (0, 0), sigma)


@pytest.mark.parametrize("shift", [(3.3, -2.6), (-7.75, 4.2), (0.5, 0.25)])
def test_template_matching_recovers_subpixel_shift(shift):
    rng = np.random.default_rng(1)
    img = _texture(rng, (200, 200))
    m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    moved = cv2.warpAffine(img, m, (200, 200), flags=cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REFLECT)
    tmpl = img[50:150, 50:150]
    est = match_template(moved[30:170, 30:170], tmpl)
    # template top-left sits at 50 - 30 = 20 plus the shift
    np.testing.assert_allclose(est.offset_px, np.array([20, 20]) + shift, atol=0.15)
    assert est.score > 0.95 > est.second_score
    cands = match_template_candidates(moved[30:170, 30:170], tmpl, n_candidates=3)
    np.testing.assert_allclose(cands[0][0], est.offset_px)
    assert len(cands) == 3 and cands[0][1] >= cands[1][1] >= cands[2][1]


def test_template_matching_flat_image_scores_zero():
    est = match_template(np.zeros((50, 50)), np.ones((10, 10)))
    assert est.score == 0.0


@settings(max_examples=40, deadline=None)
@given(st.tuples(*[st.floats(-20, 20)] * 3))
def test_triangulate_shift_recovers_translation(t):
    a, b = _pair()
    ps = np.array([a.projection_matrix, b.projection_matrix])
    x0 = np.array([3.0, -5.0, 12.0])
    shifts = np.array([project(p, x0 + np.array(t))[0] - project(p, x0)[0] for p in ps])
    est, res = triangulate_shift(ps, x0, shifts)
    np.testing.assert_allclose(est, t, atol=1e-6)
    assert np.all(res < 1e-6)


def test_triangulation_flags_inconsistent_views():
    a, b = _pair()
    ps = np.array([a.projection_matrix, b.projection_matrix])
    # both views see the row (z) shift; make them disagree by 10 px
    _, res = triangulate_shift(ps, np.zeros(3), np.array([[0.0, 5.0], [0.0, -5.0]]))
    assert np.all(res > 4.0)
    x, res = triangulate(ps, np.array([project(p, [1.0, 2.0, 3.0])[0] for p in ps]))
    np.testing.assert_allclose(x, [1, 2, 3], atol=1e-8)


def test_pose_jacobian_matches_finite_differences():
    a, _ = _pair()
    pts = np.array([[10.0, -20.0, 5.0], [-30.0, 15.0, -25.0], [0.0, 0.0, 0.0]])
    jac = pose_jacobian(a.projection_matrix, pts)
    eps = 1e-6
    for k in range(6):
        d = np.zeros(6)
        d[k] = eps
        m = increment_matrix(d)
        moved = pts @ m[:3, :3].T + m[:3, 3]
        fd = (project(a.projection_matrix, moved) - project(a.projection_matrix, pts)) / eps
        np.testing.assert_allclose(jac[:, :, k], fd, rtol=1e-4, atol=1e-5)


def test_increment_matrix_agrees_with_pose_convention_for_single_axes():
    for axis in range(3):
        d = np.zeros(6)
        d[3 + axis] = np.deg2rad(2.0)
        pose = np.zeros(6)
        pose[3 + axis] = 2.0
        np.testing.assert_allclose(increment_matrix(d), matrix_from_pose(pose), atol=1e-12)


def test_dog_enhancement_removes_smooth_background():
    yy, xx = np.mgrid[0:120, 0:120].astype(np.float32)
    ramp = 0.01 * xx + 0.02 * yy + 3.0  # soft tissue/scatter-like linear background
    out = enhance(ramp, method="dog", sigma_px=1.0, background_sigma_px=4.0)
    assert np.abs(out[20:-20, 20:-20]).max() < 1e-4
    edge = ramp + (xx > 60).astype(np.float32)  # a bone edge survives
    assert np.abs(enhance(edge)[20:-20, 55:66]).max() > 0.1


@pytest.mark.parametrize(("method", "min_ncc"), [("dog", 0.999), ("gradient", 0.999),
                                                 ("tophat", 0.99), ("clahe", 0.95)])
def test_enhancement_is_shift_covariant(method, min_ncc):
    """Filters commute with shifts (CLAHE only roughly: its tiles are fixed to the image)."""
    rng = np.random.default_rng(3)
    img = _texture(rng, (100, 100), 3.0)
    img = img - img.min()
    shifted = np.roll(img, (4, -3), axis=(0, 1))
    a = enhance(img, method=method)
    b = enhance(shifted, method=method)
    assert ncc(np.roll(a, (4, -3), axis=(0, 1))[20:-20, 20:-20], b[20:-20, 20:-20]) > min_ncc


def test_enhance_rejects_unknown_method_listing_choices():
    with pytest.raises(ValueError, match="dog.*gradient.*tophat.*clahe"):
        enhance(np.zeros((8, 8)), method="sharpen")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        enhance(np.full((8, 8), np.nan))


def test_ncc_and_gradient_correlation_invariances():
    rng = np.random.default_rng(4)
    a = _texture(rng, (64, 64))
    assert ncc(a, 3.0 * a + 7.0) == pytest.approx(1.0, abs=1e-9)
    assert ncc(a, -a) == pytest.approx(-1.0, abs=1e-9)
    assert ncc(a, np.zeros_like(a)) == 0.0
    assert gradient_correlation(a, 2.0 * a + 1.0) == pytest.approx(1.0, abs=1e-6)
    assert abs(ncc(a, _texture(rng, (64, 64)))) < 0.3
    with pytest.raises(ValueError, match="same shape"):
        ncc(a, a[:10])
