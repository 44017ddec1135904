"""Projection-geometry math: projecting, pose Jacobians and triangulating 2-D shifts to 3-D.

Pose increments ``delta = (dtx, dty, dtz, dwx, dwy, dwz)`` (mm, radians) act on room points
as a small rigid motion about the room origin, ``X' = X + dt + dw × X``, composed on the left
of the current estimate (``room_from_ct ← exp(delta) @ room_from_ct``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

__all__ = [
    "increment_matrix",
    "pose_jacobian",
    "project",
    "triangulate",
    "triangulate_shift",
]


def _check_p(projection_matrix: ArrayLike) -> NDArray[np.float64]:
    p = np.asarray(projection_matrix, dtype=np.float64)
    if p.shape != (3, 4):
        raise ValueError(f"projection_matrix: expected shape (3, 4), got {p.shape}")
    return p


def project(projection_matrix: ArrayLike, points_room: ArrayLike) -> NDArray[np.float64]:
    """Pixel coordinates ``(col, row)`` of room points (mm); shape (n, 2)."""
    p = _check_p(projection_matrix)
    x = np.atleast_2d(np.asarray(points_room, dtype=np.float64))
    h = x @ p[:, :3].T + p[:, 3]
    return h[:, :2] / h[:, 2:3]


def pose_jacobian(projection_matrix: ArrayLike, points_room: ArrayLike) -> NDArray[np.float64]:
    """Derivative of the projections of room points w.r.t. a pose increment.

    Parameters
    ----------
    projection_matrix : array-like, shape (3, 4)
        Room mm (homogeneous) → pixel ``(col, row, 1)``.
    points_room : array-like, shape (n, 3)
        Points (room mm) at the current estimate.

    Returns
    -------
    ndarray, shape (n, 2, 6)
        ``d(col, row) / d(dt [mm], dw [rad])``.
    """
    p = _check_p(projection_matrix)
    x = np.atleast_2d(np.asarray(points_room, dtype=np.float64))
    h = x @ p[:, :3].T + p[:, 3]
    uv = h[:, :2] / h[:, 2:3]
    # d uv / d X = (P[:2, :3] - uv ⊗ P[2, :3]) / h3
    duv_dx = (p[None, :2, :3] - uv[:, :, None] * p[None, 2:3, :3]) / h[:, 2, None, None]
    out = np.empty((x.shape[0], 2, 6))
    out[:, :, :3] = duv_dx
    # d X / d w = -[X]x, so d uv / d w = duv_dx @ -[X]x = cross(X, duv_dx rows)
    out[:, :, 3:] = np.cross(x[:, None, :], duv_dx)
    return out


def increment_matrix(delta: ArrayLike) -> NDArray[np.float64]:
    """Rigid transform of a pose increment ``(dt mm, dw rad)`` (rotation vector dw)."""
    d = np.asarray(delta, dtype=np.float64)
    if d.shape != (6,):
        raise ValueError(f"delta: expected shape (6,), got {d.shape}")
    m = np.eye(4)
    m[:3, :3] = Rotation.from_rotvec(d[3:]).as_matrix()
    m[:3, 3] = d[:3]
    return m


def triangulate(projection_matrices: ArrayLike, pixels: ArrayLike) -> tuple[
        NDArray[np.float64], NDArray[np.float64]]:
    """Linear (DLT) triangulation of one point seen in two or more views.

    Parameters
    ----------
    projection_matrices : array-like, shape (n_views, 3, 4)
        One projection matrix per view (room mm → pixel).
    pixels : array-like, shape (n_views, 2)
        ``(col, row)`` of the point in each view.

    Returns
    -------
    point_room : ndarray, shape (3,)
        Least-squares 3-D point (mm).
    residual_px : ndarray, shape (n_views,)
        Reprojection error per view (pixels): how well the views agree.
    """
    ps = np.asarray(projection_matrices, dtype=np.float64)
    uv = np.asarray(pixels, dtype=np.float64)
    if ps.ndim != 3 or ps.shape[1:] != (3, 4) or uv.shape != (ps.shape[0], 2) or len(ps) < 2:
        raise ValueError(f"expected >= 2 matrices (n, 3, 4) and pixels (n, 2); got {ps.shape} "
                         f"and {uv.shape}")
    rows = []
    for p, (u, v) in zip(ps, uv, strict=True):
        for r in (u * p[2] - p[0], v * p[2] - p[1]):
            rows.append(r / np.linalg.norm(r[:3]))  # equations in mm-like units
    a = np.array(rows)
    x, *_ = np.linalg.lstsq(a[:, :3], -a[:, 3], rcond=None)
    res = np.array([np.linalg.norm(project(p, x)[0] - q) for p, q in zip(ps, uv, strict=True)])
    return x, res


def triangulate_shift(projection_matrices: ArrayLike, point_room: ArrayLike,
                      shifts_px: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """3-D translation of a point from its 2-D image shifts in several views.

    Parameters
    ----------
    projection_matrices : array-like, shape (n_views, 3, 4)
        Room mm → pixel, per view.
    point_room : array-like, shape (3,)
        The point before the motion (e.g. the target, room mm).
    shifts_px : array-like, shape (n_views, 2)
        Observed ``(dcol, drow)`` of the point's projection per view (pixels).

    Returns
    -------
    translation_mm : ndarray, shape (3,)
        Room-frame translation whose projections best explain the shifts.
    residual_px : ndarray, shape (n_views,)
        Per-view disagreement (pixels); large values mean inconsistent views.
    """
    ps = np.asarray(projection_matrices, dtype=np.float64)
    x0 = np.asarray(point_room, dtype=np.float64)
    if x0.shape != (3,):
        raise ValueError(f"point_room: expected shape (3,), got {x0.shape}")
    before = np.array([project(p, x0)[0] for p in ps])
    moved, res = triangulate(ps, before + np.asarray(shifts_px, dtype=np.float64))
    return moved - x0, res
