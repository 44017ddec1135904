"""Vectorized shape primitives on coordinate arrays (mm); all return boolean masks or
normalized squared radii, never loop over voxels."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["capsule", "local_coords", "superellipse"]


def superellipse(u: NDArray, v: NDArray, a: float, b: float, p: float) -> NDArray:
    """``(|u|/a)^p + (|v|/b)^p`` (inside where <= 1)."""
    return (np.abs(u) / a) ** p + (np.abs(v) / b) ** p


def capsule(x: NDArray, y: NDArray, z: NDArray, p0, p1, radii) -> NDArray[np.bool_]:
    """Points within a capsule around the segment ``p0``-``p1`` with per-axis radii (mm).

    The space is scaled by ``1/radii`` first, so the cross-section is an ellipse with those
    semi-axes along x, y, z (the local axes of the caller's frame).
    """
    r = np.asarray(radii, dtype=np.float32)
    a = np.asarray(p0, dtype=np.float32) / r
    b = np.asarray(p1, dtype=np.float32) / r
    ab = b - a
    px, py, pz = x / r[0] - a[0], y / r[1] - a[1], z / r[2] - a[2]
    t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / float(ab @ ab), 0.0, 1.0)
    dx, dy, dz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
    return dx * dx + dy * dy + dz * dz <= 1.0


def local_coords(x: NDArray, y: NDArray, z: NDArray, center, ct_from_local: NDArray):
    """Coordinates in a local frame ``(X, Y, Z) = R^T (p - center)`` on a broadcast grid.

    ``x``, ``y``, ``z`` broadcast against each other (shapes (1,1,n), (1,m,1), (l,1,1));
    ``ct_from_local`` is the 3x3 rotation whose columns are the local axes in CT mm.
    """
    dx = (x - np.float32(center[0])).astype(np.float32)
    dy = (y - np.float32(center[1])).astype(np.float32)
    dz = (z - np.float32(center[2])).astype(np.float32)
    r = np.asarray(ct_from_local, dtype=np.float32)
    lx = r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz
    ly = r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz
    lz = r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz
    return lx, ly, lz
