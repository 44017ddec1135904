"""Geometry: pose convention, composition, inversion, point-to-line distance."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cyberknife_sim import geometry as g

finite_mm = st.floats(-500, 500, allow_nan=False)
angle = st.floats(-179.9, 179.9, allow_nan=False)
middle = st.floats(-89.9, 89.9, allow_nan=False)
poses = st.tuples(finite_mm, finite_mm, finite_mm, angle, middle, angle)


@settings(max_examples=300, deadline=None)
@given(poses)
def test_pose_matrix_round_trip(pose):
    m = g.matrix_from_pose(pose)
    back = g.pose_from_matrix(m)
    np.testing.assert_allclose(back[:3], pose[:3], atol=1e-9)
    # Compare rotations as matrices: near gimbal lock the angles trade off.
    np.testing.assert_allclose(g.matrix_from_pose(back), m, atol=1e-9)
    if abs(pose[4]) < 85:
        np.testing.assert_allclose(back[3:], pose[3:], atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(poses)
def test_compose_with_inverse_is_identity(pose):
    m = g.matrix_from_pose(pose)
    np.testing.assert_allclose(g.compose(m, g.invert(m)), np.eye(4), atol=1e-9)
    np.testing.assert_allclose(g.compose(g.invert(m), m), np.eye(4), atol=1e-9)


def test_rz_90_maps_x_to_y():
    m = g.matrix_from_pose([0, 0, 0, 0, 0, 90])
    np.testing.assert_allclose(g.apply_transform(m, [1.0, 0, 0]), [0, 1, 0], atol=1e-12)


def test_rx_90_maps_y_to_z():
    m = g.matrix_from_pose([0, 0, 0, 90, 0, 0])
    np.testing.assert_allclose(g.apply_transform(m, [0, 1.0, 0]), [0, 0, 1], atol=1e-12)


def test_extrinsic_order_x_then_z():
    # R = Rz(90) @ Rx(90): +y -> (Rx) +z -> (Rz) +z ; +x -> (Rx) +x -> (Rz) +y
    m = g.matrix_from_pose([0, 0, 0, 90, 0, 90])
    np.testing.assert_allclose(g.apply_transform(m, [0, 1.0, 0]), [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(g.apply_transform(m, [1.0, 0, 0]), [0, 1, 0], atol=1e-12)
    # rotation applied before translation: p' = R p + t
    m = g.matrix_from_pose([10, 0, 0, 0, 0, 90])
    np.testing.assert_allclose(g.apply_transform(m, [1.0, 0, 0]), [10, 1, 0], atol=1e-12)


def test_vectorized_pose_matches_single():
    rng = np.random.default_rng(3)
    p = rng.uniform(-30, 30, size=(5, 6))
    ms = g.matrix_from_pose(p)
    for i in range(5):
        np.testing.assert_array_equal(ms[i], g.matrix_from_pose(p[i]))


def test_apply_transform_points_batch():
    m = g.matrix_from_pose([1, 2, 3, 0, 0, 0])
    pts = np.array([[0.0, 0, 0], [1, 1, 1]])
    np.testing.assert_allclose(g.apply_transform(m, pts), [[1, 2, 3], [2, 3, 4]])


def test_rotation_about_point_fixes_the_point():
    c = np.array([10.0, -5.0, 3.0])
    m = g.rotation_about_point([0, 0, 30], c)
    np.testing.assert_allclose(g.apply_transform(m, c), c, atol=1e-12)
    assert g.rotation_angle_deg(m) == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("point", "line_point", "direction", "expected"),
    [
        ([0, 5, 0], [0, 0, 0], [1, 0, 0], 5.0),
        ([3, 4, 0], [0, 0, 0], [0, 0, 7], 5.0),          # non-unit direction
        ([1, 1, 1], [0, 0, 0], [1, 1, 1], 0.0),          # on the line
        ([100, 3, 0], [-50, 0, 0], [1, 0, 0], 3.0),      # beyond the segment: still a line
        ([0, 0, 1], [0, 0, 0], [1, 1, 0], 1.0),
        ([1, 0, 0], [0, 0, 0], [1, 1, 0], np.sqrt(0.5)),
    ],
)
def test_point_line_distance_hand_cases(point, line_point, direction, expected):
    assert g.point_line_distance(point, line_point, direction) == pytest.approx(expected)


def test_point_line_distance_vectorized():
    pts = np.array([[0, 5, 0], [0, 0, 2.0]])
    d = g.point_line_distance(pts, [0, 0, 0], [1, 0, 0])
    np.testing.assert_allclose(d, [5, 2])


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: g.invert(np.eye(3)), "b_from_a"),
        (lambda: g.compose(np.eye(4), np.zeros((4, 3))), "transforms[1]"),
        (lambda: g.apply_transform(np.eye(4), np.zeros((4, 2))), "points_a"),
        (lambda: g.matrix_from_pose([1, 2, 3]), "pose"),
        (lambda: g.point_line_distance([0, 0, 0], [0, 0, 0], [0, 0, 0]), "line_direction"),
        (lambda: g.check_transform(np.diag([1, 1, -1, 1.0]), name="room_from_ct"),
         "room_from_ct"),
    ],
)
def test_bad_shapes_name_the_argument(call, name):
    with pytest.raises(ValueError, match="^" + re.escape(name)):
        call()
