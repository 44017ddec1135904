"""The cone dose engine against analytic truth: depth dose, inverse square, superposition,
output factors, heterogeneity (effective depth), and the axis-shift approximation."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.anatomy.volume import Volume
from cyberknife_sim.dose._beamdata import CONES_MM, DEFAULT_BEAM_DATA
from cyberknife_sim.dose._density import relative_electron_density
from cyberknife_sim.dose._engine import DoseEngine, beam_axes
from cyberknife_sim.errors import InputError

BD = DEFAULT_BEAM_DATA
SURFACE_Y_MM = -50.5       # water surface of the box (voxel edge)


def _box_ct(hu: np.ndarray) -> Volume:
    """1 mm voxels, centres at -60..60 mm on every axis."""
    a = np.eye(4)
    a[:3, 3] = -60.0
    return Volume(hu, a, name="box")


def _water_hu() -> np.ndarray:
    hu = np.full((121, 121, 121), -1000, np.int16)
    hu[:, 10:, :] = 0                     # water from y = -50.5 mm down (+y)
    return hu


@pytest.fixture(scope="module")
def water():
    return DoseEngine(_box_ct(_water_hu()))


@pytest.fixture(scope="module")
def hetero():
    """A water cylinder (axis z, radius 55 mm) holding a bone block and a lung-like block."""
    hu = np.full((121, 121, 121), -1000, np.int16)
    c = np.arange(121) - 60.0
    zz, yy, xx = np.meshgrid(c, c, c, indexing="ij")
    hu[xx**2 + yy**2 <= 55.0**2] = 20
    hu[(np.abs(xx - 8) <= 6) & (np.abs(yy + 20) <= 7) & (np.abs(zz) <= 30)] = 900
    hu[(np.abs(xx + 15) <= 8) & (np.abs(yy - 5) <= 8) & (np.abs(zz - 5) <= 20)] = -700
    return DoseEngine(_box_ct(hu))


def _axis_points(depths_mm, x_mm=0.0):
    return np.array([[x_mm, SURFACE_Y_MM + d, 0.0] for d in depths_mm])


def test_depth_dose_on_axis_is_tpr_times_inverse_square(water):
    src = np.array([0.0, -800.0, 0.0])
    depths = np.array([5.0, 15.0, 50.0, 100.0])
    for cone in (5.0, 20.0, 60.0):
        d = water.dose_per_mu(src, np.zeros(3), cone, _axis_points(depths))
        z = _axis_points(depths)[:, 1] - src[1]
        expect = 0.01 * BD.output_factor(cone) * BD.tpr(depths, cone) * (800.0 / z) ** 2
        np.testing.assert_allclose(d, expect, rtol=0.005)
        # the ratio of two depths: TPR ratio times inverse square ratio
        assert d[3] / d[2] == pytest.approx(
            BD.tpr(100.0, cone) / BD.tpr(50.0, cone) * (z[2] / z[3]) ** 2, rel=0.005)


def test_calibration_one_cgy_per_mu_at_sad_dmax_60mm(water):
    # point at 15 mm depth, 800 mm from the source on the axis
    pt = _axis_points([15.0])
    src = pt[0] - np.array([0.0, 800.0, 0.0])
    assert water.dose_per_mu(src, pt[0], 60.0, pt)[0] == pytest.approx(0.01, rel=0.002)


def test_inverse_square_moving_the_source_back(water):
    pt = _axis_points([30.0])
    src = np.array([0.0, -800.0, 0.0])
    delta = 150.0
    d1 = water.dose_per_mu(src, np.zeros(3), 10.0, pt)[0]
    d2 = water.dose_per_mu(src - [0.0, delta, 0.0], np.zeros(3), 10.0, pt)[0]
    z = pt[0, 1] - src[1]
    assert d2 / d1 == pytest.approx((z / (z + delta)) ** 2, rel=1e-3)


def test_output_factors_as_tabulated(water):
    pt = _axis_points([15.0])
    src = np.array([0.0, -800.0, 0.0])
    ref = water.dose_per_mu(src, np.zeros(3), 60.0, pt)[0]
    for cone in CONES_MM:
        ratio = water.dose_per_mu(src, np.zeros(3), cone, pt)[0] / ref
        assert ratio == pytest.approx(BD.output_factor(cone), rel=1e-3)


def test_sum_of_beams_equals_influence_matrix(hetero):
    rng = np.random.default_rng(3)
    pts = rng.uniform(-25, 25, (2000, 3))
    beams = [(np.array([0.0, -800.0, 0.0]), np.zeros(3), 20.0),
             (np.array([560.0, -560.0, 40.0]), np.array([2.0, 0.0, 0.0]), 12.5),
             (np.array([-700.0, -300.0, -250.0]), np.array([0.0, 3.0, -1.0]), 30.0)]
    mu = np.array([120.0, 80.0, 200.0])
    a = hetero.influence_matrix(beams, pts)
    assert a.shape == (2000, 3) and a.format == "csc"
    total = sum(m * hetero.dose_per_mu(s, t, c, pts) for (s, t, c), m in zip(beams, mu,
                                                                              strict=True))
    np.testing.assert_allclose(a @ mu, total, rtol=1e-12, atol=0)
    assert np.count_nonzero(total) > 1000


def _slab_engine(hu_slab: int) -> DoseEngine:
    hu = _water_hu()
    hu[:, 30:40, :] = hu_slab             # 10 mm slab, y = -30.5 .. -20.5 mm
    return DoseEngine(_box_ct(hu))


@pytest.mark.parametrize("angle_deg", [0.0, 30.0])
def test_bone_slab_changes_effective_depth_by_thickness_times_density(angle_deg):
    t_mm, rho = 10.0, float(relative_electron_density(1000.0))
    th = np.radians(angle_deg)
    pts = np.array([[0.0, 20.0, 0.0], [5.0, 40.0, -5.0]])
    src = 800.0 * np.array([np.sin(th), -np.cos(th), 0.0])
    bone, water_slab, air_slab = (_slab_engine(h).beam(src, np.zeros(3), 10.0, pts)
                                  for h in (1000, 0, -1000))
    ray = pts - src                       # the ray to each point crosses the slab obliquely
    path = t_mm * np.linalg.norm(ray, axis=1) / np.abs(ray[:, 1])
    np.testing.assert_allclose(bone.eff_depth_mm - water_slab.eff_depth_mm, path * (rho - 1),
                               rtol=0.01)
    np.testing.assert_allclose(bone.eff_depth_mm - air_slab.eff_depth_mm, path * rho,
                               rtol=0.01)
    # and the dose follows TPR x OCR at the new depth (same geometry otherwise)
    r_sad = np.hypot(*bone.lateral_mm.T) * 800.0 / bone.distance_mm

    def tpr_ocr(b):
        return BD.tpr(b.eff_depth_mm, 10.0) * BD.ocr(r_sad, b.eff_depth_mm, 10.0)

    np.testing.assert_allclose(bone.values_gy_per_mu / water_slab.values_gy_per_mu,
                               tpr_ocr(bone) / tpr_ocr(water_slab), rtol=1e-6)


def test_fan_depth_matches_one_ray_per_point(hetero):
    rng = np.random.default_rng(5)
    pts = rng.uniform(-30, 30, (3000, 3))
    src = np.array([420.0, -650.0, 150.0])
    b = hetero.beam(src, np.zeros(3), 25.0, pts)
    exact = hetero.eff_depth_exact(src, pts[b.index], aim_ct=np.zeros(3))
    err = np.abs(b.eff_depth_mm - exact)
    # the fan (1 mm at the aim plane) interpolated vs a ray through each point: sub-mm,
    # largest beside the edges of the bone and lung blocks
    assert np.percentile(err, 99) < 0.3 and err.max() < 1.5


def _exact_shifted(engine, b, off_uv):
    o = off_uv[0] * b.e_u + off_uv[1] * b.e_v
    full = engine.dose_per_mu(b.source_ct + o, b.aim_ct + o, b.cone_mm,
                              np.zeros((b.n_points, 3)) + _POINTS_CACHE[id(b)])
    return full[b.index]


_POINTS_CACHE: dict[int, np.ndarray] = {}


def _grid_points(center, half_mm=20.0, step_mm=2.0):
    ax = np.arange(-half_mm, half_mm + 1e-9, step_mm)
    g = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    return g + center


@pytest.mark.parametrize("name", ["water", "hetero"])
def test_shift_approximation_single_offset(name, water, hetero):
    engine = water if name == "water" else hetero
    pts = _grid_points(np.array([0.0, 0.0, 0.0]))
    src = np.array([0.0, -800.0, 0.0]) if name == "water" else np.array([300.0, -700.0, 250.0])
    for cone in (7.5, 20.0):
        b = engine.beam(src, np.zeros(3), cone, pts)
        _POINTS_CACHE[id(b)] = pts
        approx = b.dose_per_mu([(0.7, -0.4)])
        exact = _exact_shifted(engine, b, (0.7, -0.4))
        err = np.abs(approx - exact).max() / exact.max()
        tol = 0.002 if name == "water" else 0.01
        assert err < tol, (name, cone, err)
        # and the shift is not a no-op: the planned dose differs by far more
        assert np.abs(b.values_gy_per_mu - exact).max() / exact.max() > 10 * err


def test_shift_approximation_offset_distribution(hetero):
    pts = _grid_points(np.array([0.0, 0.0, 0.0]))
    src = np.array([-500.0, -600.0, -150.0])
    b = hetero.beam(src, np.zeros(3), 12.5, pts)
    _POINTS_CACHE[id(b)] = pts
    rng = np.random.default_rng(7)
    offs = rng.normal(0.0, 0.8, (12, 2))
    w = rng.uniform(0.5, 1.5, 12)
    w /= w.sum()
    approx = b.dose_per_mu(offs, w)
    exact = sum(wk * _exact_shifted(hetero, b, o) for o, wk in zip(offs, w, strict=True))
    assert np.abs(approx - exact).max() / exact.max() < 0.01
    # binning the offsets to 0.01 mm (each moved <= 0.005 mm) changes < 0.2 % of the max
    np.testing.assert_allclose(b.dose_per_mu(offs, w, bin_mm=0.0), approx, atol=2e-3 *
                               exact.max())
    # zero offset reproduces the planned dose (table lookup vs the analytic OCR)
    np.testing.assert_allclose(b.dose_per_mu([(0.0, 0.0)]), b.values_gy_per_mu,
                               atol=2e-4 * exact.max())


def test_beam_axes_right_handed_and_stored(water):
    for src in ([0.0, -800.0, 0.0], [0.0, 0.0, 900.0], [300.0, -500.0, 400.0]):
        e_u, e_v, n = beam_axes(src, [1.0, 2.0, 3.0])
        np.testing.assert_allclose(np.cross(e_u, e_v), n, atol=1e-12)
        np.testing.assert_allclose(n, (np.array([1.0, 2.0, 3.0]) - src)
                                   / np.linalg.norm(np.array([1.0, 2.0, 3.0]) - src))
    b = water.beam([0.0, -800.0, 0.0], np.zeros(3), 10.0, _axis_points([20.0]))
    assert all(np.allclose(x, y) for x, y in zip(b.axis_frame(), (b.e_u, b.e_v, b.direction),
                                                 strict=True))
    assert b.dense(mu=200.0)[0] == pytest.approx(200.0 * b.values_gy_per_mu[0])


def test_points_beyond_cutoff_get_no_dose(water):
    pts = np.array([[0.0, 0.0, 0.0], [29.0, 0.0, 0.0], [31.5, 0.0, 0.0]])
    b = water.beam([0.0, -800.0, 0.0], np.zeros(3), 20.0, pts)
    # r_sad = r * 800 / 800 at the aim plane: cutoff 10 + 20 mm
    assert b.index.tolist() == [0, 1]
    assert b.dense()[2] == 0.0 and b.dense()[1] > 0.0


def test_bad_inputs_raise_input_error(water):
    pts = _axis_points([20.0])
    src = np.array([0.0, -800.0, 0.0])
    with pytest.raises(InputError, match="cone_mm"):
        water.beam(src, np.zeros(3), 70.0, pts)
    with pytest.raises(InputError, match="inside the CT"):
        water.beam([0.0, 10.0, 0.0], [0.0, 40.0, 0.0], 10.0, pts)
    with pytest.raises(InputError, match="points_ct"):
        water.beam(src, np.zeros(3), 10.0, pts[:, :2])
    with pytest.raises(InputError, match="aim_ct"):
        water.beam(src, np.zeros(2), 10.0, pts)
    with pytest.raises(InputError, match="coincide"):
        water.beam(src, src, 10.0, pts)
    with pytest.raises(InputError, match="Volume"):
        DoseEngine(np.zeros((3, 3, 3)))
    with pytest.raises(InputError, match="beam 0"):
        water.influence_matrix([(src, np.zeros(3))], pts)
    b = water.beam(src, np.zeros(3), 10.0, pts)
    with pytest.raises(InputError, match="offsets_mm"):
        b.dose_per_mu(np.zeros((3, 3)))
    with pytest.raises(InputError, match="weights"):
        b.dose_per_mu(np.zeros((3, 2)), [0.5, 0.5, 0.5])
    with pytest.raises(InputError, match="weights"):
        b.dose_per_mu(np.zeros((2, 2)), [1.5, -0.5])


def test_flipped_ct_axes_give_the_same_dose(water, hetero):
    """The CT affine is honoured: the same physical box stored with its j axis reversed."""
    for engine in (water, hetero):
        hu = np.asarray(engine.ct.hu)[:, ::-1, :]
        a = np.eye(4)
        a[:3, 3] = [-60.0, 60.0, -60.0]
        a[1, 1] = -1.0
        flipped = DoseEngine(Volume(np.ascontiguousarray(hu), a, name="flipped"))
        rng = np.random.default_rng(11)
        pts = rng.uniform(-30, 30, (500, 3))
        src = np.array([250.0, -720.0, 180.0])
        ref = engine.dose_per_mu(src, np.zeros(3), 15.0, pts)
        np.testing.assert_allclose(flipped.dose_per_mu(src, np.zeros(3), 15.0, pts), ref,
                                   rtol=1e-6, atol=1e-9 * ref.max())
