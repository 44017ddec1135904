"""Rigid transforms, 6-DoF pose parameters and frame helpers.

Conventions (see ``../shared/DESIGN.md`` and ``docs/frames.md``):

* Transforms are float64 ``(4, 4)`` homogeneous matrices named ``b_from_a``: they map
  points expressed in frame ``a`` to frame ``b``, so chains read left to right by name,
  ``room_from_ct = room_from_anatomy @ anatomy_from_ct``.
* Pose parameters ``(tx, ty, tz, rx, ry, rz)`` are millimetres and degrees and describe the
  rigid motion ``p' = R @ p + t`` with ``R = Rz(rz) @ Ry(ry) @ Rx(rx)`` (extrinsic x, then
  y, then z; scipy ``Rotation.from_euler("xyz", ..., degrees=True)``).
* Rotation math goes through :class:`scipy.spatial.transform.Rotation`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

__all__ = [
    "EULER_SEQ",
    "apply_transform",
    "check_points",
    "check_transform",
    "compose",
    "direction_transform",
    "invert",
    "matrix_from_pose",
    "point_line_distance",
    "pose_from_matrix",
    "rotation_about_point",
    "rotation_angle_deg",
    "translation",
]

EULER_SEQ = "xyz"
"""scipy Euler sequence of the pose convention (lower case: extrinsic axes)."""

_ORTHO_ATOL = 1e-6


def check_transform(b_from_a: ArrayLike, *, name: str = "transform") -> NDArray[np.float64]:
    """Coerce to a float64 rigid transform and check it.

    Parameters
    ----------
    b_from_a : array-like, shape (4, 4)
        Homogeneous rigid transform from frame a to frame b (mm).
    name : str
        Argument name used in the error message.

    Returns
    -------
    ndarray, shape (4, 4), float64
        A copy of the transform.

    Raises
    ------
    ValueError
        If the shape is not (4, 4), the last row is not (0, 0, 0, 1), the values are not
        finite, or the rotation block is not a proper rotation.
    """
    m = np.array(b_from_a, dtype=np.float64)
    if m.shape != (4, 4):
        raise ValueError(f"{name}: expected a 4x4 transform, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name}: transform contains NaN or infinite values")
    if not np.allclose(m[3], (0.0, 0.0, 0.0, 1.0), atol=1e-12):
        raise ValueError(f"{name}: last row must be (0, 0, 0, 1), got {m[3].tolist()}")
    r = m[:3, :3]
    if not np.allclose(r @ r.T, np.eye(3), atol=_ORTHO_ATOL) or np.linalg.det(r) <= 0:
        raise ValueError(f"{name}: rotation block is not a proper rotation matrix")
    return m


def check_points(points: ArrayLike, *, name: str = "points") -> NDArray[np.float64]:
    """Coerce to float64 points of shape (3,) or (n, 3); raise naming ``name`` otherwise."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape == (3,) or (p.ndim == 2 and p.shape[1] == 3):
        return p
    raise ValueError(f"{name}: expected shape (3,) or (n, 3), got {p.shape}")


def matrix_from_pose(pose: ArrayLike) -> NDArray[np.float64]:
    """Rigid transform from 6-DoF pose parameters.

    Parameters
    ----------
    pose : array-like, shape (6,) or (n, 6)
        ``(tx, ty, tz, rx, ry, rz)`` in mm and degrees (DESIGN.md convention).

    Returns
    -------
    ndarray, shape (4, 4) or (n, 4, 4), float64
        ``moved_from_original`` transform ``p' = R p + t``.
    """
    p = np.asarray(pose, dtype=np.float64)
    if p.shape[-1:] != (6,) or p.ndim > 2:
        raise ValueError(f"pose: expected shape (6,) or (n, 6), got {p.shape}")
    flat = p.reshape(-1, 6)
    out = np.tile(np.eye(4), (flat.shape[0], 1, 1))
    out[:, :3, :3] = Rotation.from_euler(EULER_SEQ, flat[:, 3:], degrees=True).as_matrix()
    out[:, :3, 3] = flat[:, :3]
    return out[0] if p.ndim == 1 else out


def pose_from_matrix(b_from_a: ArrayLike) -> NDArray[np.float64]:
    """Six pose parameters ``(tx, ty, tz, rx, ry, rz)`` (mm, deg) of a rigid transform.

    Parameters
    ----------
    b_from_a : array-like, shape (4, 4)
        Rigid transform.

    Returns
    -------
    ndarray, shape (6,), float64
        Angles are in the range scipy returns for the ``"xyz"`` sequence
        (``ry`` within ±90°).
    """
    m = check_transform(b_from_a, name="b_from_a")
    angles = Rotation.from_matrix(m[:3, :3]).as_euler(EULER_SEQ, degrees=True)
    return np.concatenate([m[:3, 3], angles])


def translation(offset_mm: ArrayLike) -> NDArray[np.float64]:
    """Pure translation transform by ``offset_mm`` (shape (3,), mm)."""
    t = check_points(offset_mm, name="offset_mm")
    if t.shape != (3,):
        raise ValueError(f"offset_mm: expected shape (3,), got {t.shape}")
    m = np.eye(4)
    m[:3, 3] = t
    return m


def compose(*transforms: ArrayLike) -> NDArray[np.float64]:
    """Matrix product of transforms, left to right (``compose(c_from_b, b_from_a)``)."""
    if not transforms:
        raise ValueError("compose: needs at least one transform")
    out = np.eye(4)
    for i, t in enumerate(transforms):
        out = out @ check_transform(t, name=f"transforms[{i}]")
    return out


def invert(b_from_a: ArrayLike) -> NDArray[np.float64]:
    """Inverse rigid transform ``a_from_b`` (exact: transposed rotation)."""
    m = check_transform(b_from_a, name="b_from_a")
    r_t = m[:3, :3].T
    out = np.eye(4)
    out[:3, :3] = r_t
    out[:3, 3] = -r_t @ m[:3, 3]
    return out


def apply_transform(b_from_a: ArrayLike, points_a: ArrayLike) -> NDArray[np.float64]:
    """Map points from frame a to frame b.

    Parameters
    ----------
    b_from_a : array-like, shape (4, 4)
        Rigid (or affine) transform.
    points_a : array-like, shape (3,) or (n, 3)
        Points in frame a (mm).

    Returns
    -------
    ndarray, same shape as ``points_a``
        Points in frame b (mm).
    """
    m = np.asarray(b_from_a, dtype=np.float64)
    if m.shape != (4, 4):
        raise ValueError(f"b_from_a: expected a 4x4 transform, got shape {m.shape}")
    p = check_points(points_a, name="points_a")
    return p @ m[:3, :3].T + m[:3, 3]


def direction_transform(b_from_a: ArrayLike, directions_a: ArrayLike) -> NDArray[np.float64]:
    """Rotate direction vectors (no translation) from frame a to frame b."""
    m = np.asarray(b_from_a, dtype=np.float64)
    if m.shape != (4, 4):
        raise ValueError(f"b_from_a: expected a 4x4 transform, got shape {m.shape}")
    d = check_points(directions_a, name="directions_a")
    return d @ m[:3, :3].T


def rotation_about_point(
    rotvec_deg: ArrayLike, center: ArrayLike
) -> NDArray[np.float64]:
    """Rotation by a rotation vector (axis × angle, degrees) about ``center`` (mm)."""
    rv = check_points(rotvec_deg, name="rotvec_deg")
    c = check_points(center, name="center")
    if rv.shape != (3,) or c.shape != (3,):
        raise ValueError("rotvec_deg and center must both have shape (3,)")
    m = np.eye(4)
    m[:3, :3] = Rotation.from_rotvec(rv, degrees=True).as_matrix()
    m[:3, 3] = c - m[:3, :3] @ c
    return m


def rotation_angle_deg(b_from_a: ArrayLike) -> float:
    """Magnitude of the rotation part of a transform, in degrees."""
    m = check_transform(b_from_a, name="b_from_a")
    return float(np.degrees(Rotation.from_matrix(m[:3, :3]).magnitude()))


def point_line_distance(
    points: ArrayLike, line_point: ArrayLike, line_direction: ArrayLike
) -> NDArray[np.float64] | float:
    """Perpendicular distance from points to an infinite line (e.g. a beam axis).

    Parameters
    ----------
    points : array-like, shape (3,) or (n, 3)
        Points (mm), in the same frame as the line.
    line_point : array-like, shape (3,) or (n, 3)
        A point on the line (e.g. the beam source, mm).
    line_direction : array-like, shape (3,) or (n, 3)
        Direction of the line; need not be unit length, must not be zero.

    Returns
    -------
    float or ndarray, shape (n,)
        Distance in mm.
    """
    p = check_points(points, name="points")
    a = check_points(line_point, name="line_point")
    d = check_points(line_direction, name="line_direction")
    norm = np.linalg.norm(d, axis=-1, keepdims=True)
    if np.any(norm == 0):
        raise ValueError("line_direction: zero-length direction")
    u = d / norm
    v = p - a
    perp = v - np.sum(v * u, axis=-1, keepdims=True) * u
    dist = np.linalg.norm(perp, axis=-1)
    return float(dist) if np.ndim(dist) == 0 else dist
