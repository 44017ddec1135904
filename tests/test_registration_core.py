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


def _pattern(uv: np.ndarray) -> np.ndarray:
    """A smooth analytic detector pattern (col, row in pixels)."""
    c, r = uv[..., 0], uv[..., 1]
    return (np.sin(c / 7.0) * np.cos(r / 9.0) + 0.5 * np.sin((c + r) / 5.0)
            + 0.3 * np.cos((c - 2 * r) / 11.0))


def _gn_problem(truth: np.ndarray):
    """Per view: an analytic live pattern and DRR pixels seen through the motion ``truth``."""
    from cyberknife_sim.registration._depth import pixel_points_room
    from cyberknife_sim.registration._gauss_newton import LiveLevel, RefLevel

    rng = np.random.default_rng(3)
    refs, lives = [], []
    for view in _pair():
        cc, rr = np.meshgrid(np.arange(150, 362, dtype=float), np.arange(150, 362, dtype=float))
        lives.append(LiveLevel.from_image(_pattern(np.stack([cc, rr], -1)).astype(np.float32),
                                          150, 150))
        p = view.projection_matrix

        def ref_value(cols, rows, p=p, view=view):
            # depth varies smoothly across the image (mm along the normal from the source)
            depth = 2200.0 + 30.0 * np.sin(cols / 40.0) * np.cos(rows / 50.0)
            x = pixel_points_room(view, cols, rows, depth)
            return _pattern(project(p, x @ truth[:3, :3].T + truth[:3, 3])), x

        cols = rng.uniform(190, 320, 3000)
        rows = rng.uniform(190, 320, 3000)
        vals, pts = ref_value(cols, rows)
        eps = 1e-3
        grads = np.column_stack([
            (ref_value(cols + eps, rows)[0] - ref_value(cols - eps, rows)[0]) / (2 * eps),
            (ref_value(cols, rows + eps)[0] - ref_value(cols, rows - eps)[0]) / (2 * eps)])
        mean, std = vals.mean(), vals.std()
        refs.append(RefLevel(p, pts, (vals - mean) / std, grads / std))
    return refs, lives


@pytest.mark.parametrize("method", ["inverse", "forward"])
def test_gauss_newton_recovers_a_known_motion(method):
    """Live images are an analytic pattern; the DRR side is that pattern seen through a known
    rigid motion of points at varied depths. Both GN variants must recover the motion."""
    from cyberknife_sim.registration._gauss_newton import gauss_newton

    truth = matrix_from_pose([0.6, -0.4, 0.5, 0.4, -0.3, 0.5])
    refs, lives = _gn_problem(truth)
    est, info = gauss_newton(refs, lives, np.eye(4), max_iterations=30, tol_mm=1e-4,
                             tol_deg=1e-4, method=method)
    err = np.linalg.inv(truth) @ est
    assert np.linalg.norm(err[:3, 3]) < 0.01  # mm
    assert np.degrees(np.arccos(np.clip((np.trace(err[:3, :3]) - 1) / 2, -1, 1))) < 0.01
    assert min(info["ncc"]) > 0.999 and info["converged"]


def test_gauss_newton_weights_and_translation_only():
    """Uniform pixel weights change nothing; smooth non-uniform ones still find the exact
    motion (a consistent problem); translation_only keeps the start's rotation and finds
    the translation when the rotation is right."""
    from cyberknife_sim.registration._gauss_newton import RefLevel, _evaluate, gauss_newton

    truth = matrix_from_pose([0.6, -0.4, 0.5, 0.4, -0.3, 0.5])
    refs, lives = _gn_problem(truth)
    start = matrix_from_pose([0.2, 0.1, -0.2, 0.1, 0.0, 0.2])
    plain = _evaluate(refs, lives, start, want_jacobian=True, huber=0.5, inverse=True)
    ones = [RefLevel(r.projection_matrix, r.points_room, r.values, r.gradients,
                     weights=np.full(r.values.size, 3.0)) for r in refs]
    same = _evaluate(ones, lives, start, want_jacobian=True, huber=0.5, inverse=True)
    assert same[0] == pytest.approx(plain[0], rel=1e-9)
    np.testing.assert_allclose(same[1], plain[1], rtol=1e-9)
    np.testing.assert_allclose(same[2], plain[2], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(same[3], plain[3], rtol=1e-9, atol=1e-12)
    smooth = [RefLevel(r.projection_matrix, r.points_room, r.values, r.gradients,
                       weights=np.exp(-0.5 * ((r.points_room[:, 2] - r.points_room[:, 2].mean())
                                              / 15.0) ** 2)) for r in refs]
    est, info = gauss_newton(smooth, lives, np.eye(4), max_iterations=30, tol_mm=1e-4,
                             tol_deg=1e-4)
    err = np.linalg.inv(truth) @ est
    assert np.linalg.norm(err[:3, 3]) < 0.02 and min(info["ncc"]) > 0.999
    rot = truth.copy()
    rot[:3, 3] = 0.0
    est, info = gauss_newton(refs, lives, rot, max_iterations=30, tol_mm=1e-4, tol_deg=1e-4,
                             translation_only=True)
    np.testing.assert_allclose(est[:3, :3], truth[:3, :3], atol=1e-12)
    assert np.linalg.norm(est[:3, 3] - truth[:3, 3]) < 0.01


def test_gauss_newton_rejects_unknown_method():
    from cyberknife_sim.registration._gauss_newton import gauss_newton

    with pytest.raises(ValueError, match="inverse"):
        gauss_newton([], [], np.eye(4), method="newton")


def test_smooth_wide_matches_full_resolution_blur():
    from cyberknife_sim.registration._enhance import smooth, smooth_wide

    img = _texture(np.random.default_rng(4), (190, 236), sigma=1.5)
    for sigma in (4.0, 6.0):
        a, b = smooth(img, sigma)[20:-20, 20:-20], smooth_wide(img, sigma)[20:-20, 20:-20]
        assert np.abs(a - b).max() < 0.02 * np.abs(a).max()
    np.testing.assert_array_equal(smooth_wide(img, 2.0), smooth(img, 2.0))


def test_depth_splat_at_half_resolution_agrees():
    """A slab of points at a known depth: the map returns it wherever weight falls."""
    from cyberknife_sim.registration import Window
    from cyberknife_sim.registration._depth import pixel_points_room, splat_depth

    view = _pair()[0]
    rng = np.random.default_rng(5)
    cols, rows = rng.uniform(200, 300, 20000), rng.uniform(200, 300, 20000)
    pts = pixel_points_room(view, cols, rows, np.full(cols.size, 2150.0))
    win = Window(180, 180, 140, 140)
    for scale in (1, 2):
        d = splat_depth(view, win, pts, np.ones(cols.size), default_depth_mm=2200.0,
                        scale=scale)
        assert d.shape == (-(-140 // scale),) * 2
        inner = d[(40 // scale):(100 // scale), (40 // scale):(100 // scale)]
        np.testing.assert_allclose(inner, 2150.0, atol=0.01)
        assert abs(d[0, 0] - 2200.0) < 0.01  # no weight there: the default
