"""Geometry of the kV views: projection matrices against explicit ray-plane intersection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cyberknife_sim.imaging import ViewGeometry, imaging_pair, load_geometry_json
from cyberknife_sim.imaging._io import write_geometry_json
from cyberknife_sim.scene import ImagingSettings, ViewSettings


def _ray_plane_pixel(view: ViewGeometry, point: np.ndarray) -> np.ndarray:
    """(col, row) by explicit intersection of the source->point ray with the detector."""
    n = np.cross(view.col_direction_room, view.row_direction_room)
    w = point - view.source_room
    t = n @ (view.detector_center_room - view.source_room) / (n @ w)
    q = view.source_room + t * w - view.detector_center_room
    c0, r0 = view.center_pixel
    return np.array([q @ view.col_direction_room / view.pixel_spacing_mm + c0,
                     q @ view.row_direction_room / view.pixel_spacing_mm + r0])


@pytest.fixture(scope="module")
def pair():
    return imaging_pair(ImagingSettings())


def test_default_pair_numbers(pair):
    a, b = pair
    assert a.shape == (512, 512) and a.pixel_spacing_mm == pytest.approx(0.8)
    np.testing.assert_allclose(a.source_room, 2200 * np.array([np.sqrt(0.5), -np.sqrt(0.5), 0]))
    np.testing.assert_allclose(b.source_room, 2200 * np.array([-np.sqrt(0.5), -np.sqrt(0.5), 0]))
    assert a.source_to_detector_mm == pytest.approx(3600.0)
    # the two central axes are orthogonal, cross at the origin, point at the floor
    assert abs(a.central_axis_room @ b.central_axis_room) < 1e-12
    assert a.central_axis_room[1] > 0 and b.central_axis_room[1] > 0
    np.testing.assert_allclose(a.row_direction_room, [0, 0, -1])


def test_origin_projects_to_detector_center(pair):
    for v in pair:
        np.testing.assert_allclose(v.project([0.0, 0.0, 0.0])[0], v.center_pixel, atol=1e-9)
        # superior (+z) appears above the center (smaller row)
        assert v.project([0.0, 0.0, 10.0])[0, 1] < v.center_pixel[1]


def test_central_axis_point_same_pixel_at_every_depth(pair):
    for v in pair:
        depths = np.linspace(-2000.0, 3000.0, 11)
        pts = v.source_room + (depths[:, None] + 2200.0) * v.central_axis_room
        px = v.project(pts)
        np.testing.assert_allclose(px, np.tile(v.center_pixel, (11, 1)), atol=1e-9)


def test_magnification_at_isocenter(pair):
    a = pair[0]
    # 10 mm along -z at the origin spans 10 * 3600/2200 mm on the detector
    rows = a.project([[0, 0, 0], [0, 0, -10.0]])[:, 1]
    assert rows[1] - rows[0] == pytest.approx(10 * 3600 / 2200 / 0.8, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 60), st.floats(1000, 4000), st.floats(100, 2000),
       st.lists(st.floats(-300, 300), min_size=3, max_size=3), st.sampled_from([1, 2, 4]))
def test_projection_matrix_matches_ray_plane(angle, sad, sid, point, binning):
    imaging = ImagingSettings(source_to_isocenter_mm=sad, isocenter_to_detector_mm=sid,
                              views=(ViewSettings(name="A", source_angle_deg=angle),
                                     ViewSettings(name="B", source_angle_deg=angle - 90)))
    for v in imaging_pair(imaging, binning=binning):
        p = np.asarray(point)
        expected = _ray_plane_pixel(v, p)
        np.testing.assert_allclose(v.project(p)[0], expected, atol=1e-6)


def test_pixel_to_room_is_inverse_of_project(pair):
    v = pair[1]
    cols, rows = np.meshgrid([0.0, 100.5, 511.0], [0.0, 37.0, 511.0])
    pts = v.pixel_to_room(cols.ravel(), rows.ravel())
    np.testing.assert_allclose(v.project(pts), np.column_stack([cols.ravel(), rows.ravel()]),
                               atol=1e-9)
    # detector points lie in the plane through the center, perpendicular to the axis
    assert np.all(np.abs((pts - v.detector_center_room) @ v.central_axis_room) < 1e-9)


def test_binning_keeps_the_detector_extent():
    native = imaging_pair(ImagingSettings(), binning=1)[0]
    b4 = native.with_binning(4)
    assert b4.shape == (256, 256) and b4.pixel_spacing_mm == pytest.approx(1.6)
    # a binned pixel center is the mean of its 4x4 native pixel centers
    corner_native = native.pixel_to_room(np.arange(4.0), np.arange(4.0)).mean(axis=0)
    np.testing.assert_allclose(b4.pixel_to_room(0.0, 0.0), corner_native, atol=1e-9)
    with pytest.raises(ValueError, match="divisible"):
        native.with_binning(3)


def test_geometry_json_roundtrip(tmp_path, pair):
    write_geometry_json(tmp_path / "geometry.json", pair, mu_water_per_mm=0.0206,
                        ct_path="ct.nii.gz", room_from_ct=np.eye(4))
    views, meta = load_geometry_json(tmp_path)
    for v, w in zip(views, pair, strict=True):
        np.testing.assert_allclose(v.projection_matrix, w.projection_matrix, atol=1e-9)
        assert v.shape == w.shape and v.name == w.name
    np.testing.assert_array_equal(meta["ct"]["room_from_ct"], np.eye(4))
    assert meta["ct"]["path"] == str(tmp_path / "ct.nii.gz")  # relative to the JSON
    assert meta["mu_water_per_mm"] == 0.0206


def test_geometry_json_errors(tmp_path):
    from cyberknife_sim.errors import InputError

    (tmp_path / "geometry.json").write_text('{"views": []}')
    with pytest.raises(InputError, match="non-empty"):
        load_geometry_json(tmp_path)
    with pytest.raises(InputError, match="cannot read"):
        load_geometry_json(tmp_path / "missing.json")


def test_bad_view_rejected():
    with pytest.raises(ValueError, match="orthogonal"):
        ViewGeometry("X", [0, -1000, 0], [0, 500, 0], [0, 0, -1], [0, 0.6, -0.8], 1.0, (4, 4))
