"""Film analysis of the ball-cube E2E test against analytic dose (cyberknife_sim.qa._film)
and the ball-cube phantom's geometry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erfc

from cyberknife_sim.errors import InputError
from cyberknife_sim.qa import FILM_AXES, Film, isodose_centroid_mm, total_targeting_error

AXIS_MM = np.arange(-60, 61) * 0.5  # a 60 mm film at 0.5 mm


def _blob_dose(points_ct, center_ct, *, radius_mm=10.0, sigma_mm=2.0, peak_gy=20.0):
    """A sphere of uniform dose with an erf edge: 50 % of its plateau at ``radius_mm``."""
    r = np.linalg.norm(points_ct - center_ct, axis=1)
    return peak_gy * 0.5 * erfc((r - radius_mm) / (np.sqrt(2.0) * sigma_mm))


def _films(center_ct):
    return [Film(name, np.asarray(center_ct, float), AXIS_MM, AXIS_MM) for name in FILM_AXES]


@pytest.mark.parametrize("shift_ct", [(0.0, 0.0, 0.0), (0.37, -0.81, 1.23),
                                      (-1.9, 0.6, -0.25), (0.0, 3.1, 0.0)])
def test_centroid_recovers_a_known_shift(shift_ct):
    """The 50 % isodose centroid of a shifted spherical blob is its in-plane shift (0.05 mm).

    The blob's film cross-section is a circle centred on the in-plane projection of the
    shift; its 50 %-of-film-max line is a circle about that point, whatever the
    out-of-plane part of the shift (which only lowers the film maximum).
    """
    ball_ct = np.array([-0.6, -23.7, 18.3])
    shift = np.asarray(shift_ct)
    errs = {}
    for film in _films(ball_ct):
        pts = film.points_ct()
        dose = _blob_dose(pts, ball_ct + shift).reshape(film.v_mm.size, film.u_mm.size)
        res = isodose_centroid_mm(dose, film.u_mm, film.v_mm, name=film.name)
        expect = shift[list(film.axes)]
        np.testing.assert_allclose(res.error_mm, expect, atol=0.05)
        errs[film.name] = res.error_mm
    vec, total = total_targeting_error(errs["coronal"], errs["sagittal"])
    np.testing.assert_allclose(vec, shift, atol=0.05)
    assert total == pytest.approx(np.linalg.norm(shift), abs=0.05)


def test_centroid_of_an_asymmetric_region_is_its_area_centroid():
    """A dose ramp cut at 50 % of its max: the region is a half-disc whose area centroid
    lies 4 R / (3 pi) from the straight edge (analytic), not at the dose peak."""
    radius = 12.0
    uu, vv = np.meshgrid(AXIS_MM, AXIS_MM)
    inside = np.sqrt(uu ** 2 + vv ** 2) < radius
    # 1 in the upper half-disc, 0.2 in the lower one and 0 outside: 50 % -> the upper half.
    dose = np.where(inside, np.where(vv > 0, 1.0, 0.2), 0.0)
    res = isodose_centroid_mm(dose, AXIS_MM, AXIS_MM)
    # Marching squares puts the 50 % line half-way between the pixel centres either side
    # of the edge: the half-disc's straight edge sits at v = 0.25 mm, the arc within
    # 0.5 mm of R; tolerance 0.35 mm covers that staircase.
    np.testing.assert_allclose(res.error_mm, [0.0, 0.25 + 4 * radius / (3 * np.pi)], atol=0.35)


def test_total_combines_the_films_with_mean_z():
    vec, total = total_targeting_error([0.3, 0.4], [-0.2, 0.6])
    np.testing.assert_allclose(vec, [0.3, -0.2, 0.5])
    assert total == pytest.approx(np.sqrt(0.09 + 0.04 + 0.25))


@pytest.mark.parametrize("dose, match", [
    (np.zeros((121, 121)), "empty film"),
    (np.full((121, 121), 3.0), "flat film"),
    (np.full((121, 121), np.nan), "non-finite"),
])
def test_empty_or_flat_film_is_a_clear_error(dose, match):
    with pytest.raises(InputError, match=match):
        isodose_centroid_mm(dose, AXIS_MM, AXIS_MM, name="coronal")


def test_region_touching_the_edge_is_an_error():
    film = _films([0.0, 0.0, 0.0])[0]
    dose = _blob_dose(film.points_ct(), np.array([25.0, 0.0, 0.0]))
    with pytest.raises(InputError, match="touches the film's edge"):
        isodose_centroid_mm(dose.reshape(121, 121), AXIS_MM, AXIS_MM, name="coronal")


def test_bad_shapes_and_levels_are_errors():
    with pytest.raises(InputError, match="does not match"):
        isodose_centroid_mm(np.ones((3, 4)), AXIS_MM, AXIS_MM)
    with pytest.raises(InputError, match="level"):
        isodose_centroid_mm(np.ones((121, 121)), AXIS_MM, AXIS_MM, level=1.5)
    with pytest.raises(InputError, match="2 finite numbers"):
        total_targeting_error([1.0, np.nan], [0.0, 0.0])


def test_film_points_lie_in_their_planes():
    center = np.array([1.0, -2.0, 3.0])
    cor, sag = _films(center)
    p = cor.points_ct()
    np.testing.assert_allclose(p[:, 1], center[1])
    assert p[1, 0] - p[0, 0] == pytest.approx(0.5) and p[121, 2] - p[0, 2] == pytest.approx(0.5)
    q = sag.points_ct()
    np.testing.assert_allclose(q[:, 0], center[0])
    assert q[1, 1] - q[0, 1] == pytest.approx(0.5)


def test_ball_cube_is_painted_anterior_to_the_vertebra():
    """The cube and ball have their CT numbers at the right places; the cube does not cut
    into the vertebral body (its posterior face is anterior to the body's cortex)."""
    from cyberknife_sim.qa import make_ball_cube_phantom

    bc = make_ball_cube_phantom()
    vol, c = bc.volume, bc.ball_center_ct

    def hu_at(p):
        i, j, k = np.rint(vol.ct_to_ijk(np.asarray(p, float))).astype(int)
        return int(vol.hu[k, j, i])

    assert hu_at(c) == 800
    assert hu_at(c + [0, 0, bc.ball_radius_mm - 1.5]) == 800
    assert hu_at(c + [bc.ball_radius_mm + 3.0, 0, 0]) == 120
    assert hu_at(c + [0, 0.5 * bc.cube_edge_mm - 1.0, 0]) == 120
    assert hu_at(c + [0, 0.5 * bc.cube_edge_mm + 2.0, 0]) > 300  # the cortex, 2 mm behind
