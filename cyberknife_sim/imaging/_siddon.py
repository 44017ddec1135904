"""Exact DRRs: Siddon/Jacobs radiological path through the voxel boxes.

The CT is taken as what its voxels literally are: voxel ``(i, j, k)`` is a box of constant
μ centred on its index, ``[i - ½, i + ½] × [j - ½, j + ½] × [k - ½, k + ½]`` in index
space, mapped into CT mm by ``ct_from_ijk`` (any direction matrix, even oblique: the boxes
are then parallelepipeds). A DRR pixel is the exact line integral of that piecewise
constant μ along the segment from the source to the pixel center,
``Σ_voxels μ_v · |segment ∩ box_v|``, with no interpolation and no sampling step.

Each ray is traced in index space, where the boxes are unit cubes and the segment stays
straight (the affine maps lines to lines and scales every length along one ray by the same
factor): the ray is clipped to the grid box (Siddon), then walked voxel by voxel by
incremental plane crossings (Jacobs et al. 1998: the next crossing along each axis, the
smallest wins). Parameter ``t ∈ [0, 1]`` runs from source to pixel, so a step of ``Δt`` is
``Δt · |pixel_room − source_room|`` mm. Rays parallel to a plane family never cross it;
rays that miss the grid give 0. The kernel is numba, parallel over detector rows.

This is the "exact" of the voxel-box model; the fast renderer (:class:`~._drr.DrrRenderer`)
and :func:`~._reference.reference_drr` integrate the trilinear interpolant of the same
voxels instead, which differs from the boxes at sharp edges (see ``docs`` of the fast
renderer and ``tests/test_imaging_siddon.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit, prange
from numpy.typing import ArrayLike, NDArray

from ..anatomy import Volume
from ._geometry import ViewGeometry
from ._views import MultiViewRenderer

__all__ = ["ExactDrrRenderer", "exact_drr"]


@njit(cache=True, fastmath=False)
def _first_voxel(s, e, t_in, n):  # pragma: no cover
    """Along one axis: first voxel index, its step, the next crossing and the spacing (t)."""
    p = s + t_in * e
    if e > 0.0:
        i = min(max(int(np.floor(p)), 0), n - 1)
        return i, 1, (i + 1 - s) / e, 1.0 / e
    if e < 0.0:
        i = min(max(int(np.ceil(p)) - 1, 0), n - 1)
        return i, -1, (i - s) / e, -1.0 / e
    return min(max(int(np.floor(p)), 0), n - 1), 0, np.inf, np.inf


@njit(cache=True, fastmath=False)
def _clip(s, e, n, t_in, t_out):  # pragma: no cover
    """Clip ``[t_in, t_out]`` to the slab ``0 <= s + t·e <= n`` (empty: t_out <= t_in)."""
    if e == 0.0:
        if s <= 0.0 or s >= n:
            return t_in, -1.0  # parallel to this plane family, outside (or on) the grid
        return t_in, t_out
    t1 = (0.0 - s) / e
    t2 = (n - s) / e
    if t1 > t2:
        t1, t2 = t2, t1
    return max(t_in, t1), min(t_out, t2)


@njit(cache=True, fastmath=False)
def _ray_integral(mu, sx, sy, sz, ex, ey, ez):  # pragma: no cover
    """∫ μ dt (t from 0 to 1) along ``s + t·e`` in shifted index space.

    Shifted index space: voxel ``(i, j, k)`` occupies ``[i, i+1] × [j, j+1] × [k, k+1]``
    (index + ½), so the grid is ``[0, n_i] × [0, n_j] × [0, n_k]``. ``mu`` is ``[k, j, i]``.
    Returns the sum of μ × Δt (multiply by the ray's length in mm).
    """
    nk, nj, ni = mu.shape
    t_in, t_out = _clip(sx, ex, ni, 0.0, 1.0)
    t_in, t_out = _clip(sy, ey, nj, t_in, t_out)
    t_in, t_out = _clip(sz, ez, nk, t_in, t_out)
    if t_out <= t_in:
        return 0.0
    # first voxel per axis from the entry point (clipped: round-off at a face stays inside)
    ix, dx, tx, hx = _first_voxel(sx, ex, t_in, ni)
    iy, dy, ty, hy = _first_voxel(sy, ey, t_in, nj)
    iz, dz, tz, hz = _first_voxel(sz, ez, t_in, nk)
    acc = 0.0
    t = t_in
    while t < t_out:
        if tx <= ty and tx <= tz:  # nearest crossing: a plane of constant i
            t_end = min(tx, t_out)
            if t_end > t:
                acc += mu[iz, iy, ix] * (t_end - t)
                t = t_end
            ix += dx
            if ix < 0 or ix >= ni:
                break
            tx += hx
        elif ty <= tz:
            t_end = min(ty, t_out)
            if t_end > t:
                acc += mu[iz, iy, ix] * (t_end - t)
                t = t_end
            iy += dy
            if iy < 0 or iy >= nj:
                break
            ty += hy
        else:
            t_end = min(tz, t_out)
            if t_end > t:
                acc += mu[iz, iy, ix] * (t_end - t)
                t = t_end
            iz += dz
            if iz < 0 or iz >= nk:
                break
            tz += hz
    return acc


@njit(parallel=True, cache=True, fastmath=False)
def _trace_view(mu, src_ijk, det_ijk, src_room, det_room, rows, cols,
                supersample):  # pragma: no cover
    """Exact line integrals of one view.

    Parameters
    ----------
    mu : ndarray, shape (nk, nj, ni), float32
    src_ijk : ndarray, shape (3,)
        Source in shifted index space (index + ½).
    det_ijk : ndarray, shape (3, 3)
        ``det_ijk @ (col, row, 1)`` = detector point in shifted index space.
    src_room : ndarray, shape (3,)
        Source, room mm.
    det_room : ndarray, shape (3, 3)
        ``det_room @ (col, row, 1)`` = detector point, room mm.
    rows, cols : int
    supersample : int
        Rays per pixel per axis (1: the pixel center; n: an n × n grid, averaged).

    Returns
    -------
    ndarray, shape (rows, cols), float32
    """
    out = np.zeros((rows, cols), dtype=np.float32)
    n = supersample
    inv_n2 = 1.0 / (n * n)
    for r in prange(rows):
        for c in range(cols):
            total = 0.0
            for a in range(n):
                rr = r + (a + 0.5) / n - 0.5
                for b in range(n):
                    cc = c + (b + 0.5) / n - 0.5
                    ex = det_ijk[0, 0] * cc + det_ijk[0, 1] * rr + det_ijk[0, 2] - src_ijk[0]
                    ey = det_ijk[1, 0] * cc + det_ijk[1, 1] * rr + det_ijk[1, 2] - src_ijk[1]
                    ez = det_ijk[2, 0] * cc + det_ijk[2, 1] * rr + det_ijk[2, 2] - src_ijk[2]
                    wx = det_room[0, 0] * cc + det_room[0, 1] * rr + det_room[0, 2] - src_room[0]
                    wy = det_room[1, 0] * cc + det_room[1, 1] * rr + det_room[1, 2] - src_room[1]
                    wz = det_room[2, 0] * cc + det_room[2, 1] * rr + det_room[2, 2] - src_room[2]
                    length = np.sqrt(wx * wx + wy * wy + wz * wz)
                    total += length * _ray_integral(mu, src_ijk[0], src_ijk[1], src_ijk[2],
                                                    ex, ey, ez)
            out[r, c] = total * inv_n2
    return out


def _trim_air(volume: Volume, mu: NDArray[np.float32]) -> tuple[Volume, NDArray[np.float32]]:
    """Drop all-air (μ = 0) margins: they add exactly nothing to any box integral."""
    nonzero = [np.nonzero(np.any(mu > 0, axis=axes))[0] for axes in ((1, 2), (0, 2), (0, 1))]
    if not all(n.size for n in nonzero):
        return volume, mu
    lo = np.array([n[0] for n in nonzero])
    hi = np.array([n[-1] + 1 for n in nonzero])
    hi = np.maximum(hi, lo + 2)
    hi = np.minimum(hi, mu.shape)
    lo = np.minimum(lo, hi - 2)
    if np.all(lo == 0) and np.all(hi == mu.shape):
        return volume, mu
    cropped = volume.crop(lo[::-1], hi[::-1])
    return cropped, np.ascontiguousarray(mu[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])


class ExactDrrRenderer(MultiViewRenderer):
    """Exact (Siddon/Jacobs) DRRs of one CT's voxel boxes for a fixed set of views.

    Same call contract as :class:`~._drr.DrrRenderer` (``render(room_from_ct)`` → one
    float32 image per view, in view order), so either can render ``cksim drr``.

    Parameters
    ----------
    volume : Volume
        The CT (HU, ``[k, j, i]``, ``ct_from_ijk`` in mm, any direction matrix).
    views : ViewGeometry or sequence of ViewGeometry
        Detector geometries (room frame).
    mu_water_per_mm : float
        Attenuation of water at the effective energy (1/mm); μ = μw·max(0, 1 + HU/1000).
    supersample : int
        Rays per pixel per axis (default 1: one ray to the pixel center, DESIGN.md's DRR
        pixel); ``n`` averages an ``n × n`` grid of rays over the pixel's area.

    Attributes
    ----------
    volume : Volume
        The part of the CT traced (all-air margins dropped; exact, they add nothing).
    views : tuple of ViewGeometry
        The views, in the order :meth:`render` returns their images.
    """

    def __init__(self, volume: Volume, views: ViewGeometry | Sequence[ViewGeometry], *,
                 mu_water_per_mm: float, supersample: int = 1) -> None:
        if isinstance(views, ViewGeometry):
            views = (views,)
        self.views: tuple[ViewGeometry, ...] = tuple(views)
        if not self.views or not all(isinstance(v, ViewGeometry) for v in self.views):
            raise ValueError("views: expected one or more ViewGeometry objects")
        if not (np.isfinite(mu_water_per_mm) and mu_water_per_mm > 0):
            raise ValueError(f"mu_water_per_mm must be > 0 (got {mu_water_per_mm})")
        if isinstance(supersample, bool) or int(supersample) != supersample or not (
                1 <= supersample <= 16):
            raise ValueError(f"supersample must be an integer in [1, 16] (got {supersample!r})")
        self.mu_water_per_mm = float(mu_water_per_mm)
        self.supersample = int(supersample)
        self.volume, self._mu = _trim_air(volume, volume.mu_per_mm(self.mu_water_per_mm))

    def _render(self, room_from_ct: NDArray[np.float64], view: ViewGeometry) -> NDArray:
        ijk_from_room = np.linalg.inv(room_from_ct @ self.volume.ct_from_ijk)
        lin, off = ijk_from_room[:3, :3], ijk_from_room[:3, 3] + 0.5  # shifted index space
        det_room = np.ascontiguousarray(view.pixel_to_room_matrix)
        det_ijk = lin @ det_room
        det_ijk[:, 2] += off
        src_ijk = lin @ view.source_room + off
        rows, cols = view.shape
        return _trace_view(self._mu, np.ascontiguousarray(src_ijk), np.ascontiguousarray(det_ijk),
                           np.ascontiguousarray(view.source_room, dtype=np.float64), det_room,
                           rows, cols, self.supersample)


def exact_drr(volume: Volume, view: ViewGeometry, room_from_ct: ArrayLike, *,
              mu_water_per_mm: float, supersample: int = 1) -> NDArray[np.float32]:
    """Exact line integrals of one view through the CT's voxel boxes (function form).

    Parameters
    ----------
    volume : Volume
        CT in HU.
    view : ViewGeometry
        Detector geometry, room frame.
    room_from_ct : array-like, shape (4, 4)
        Pose of the CT in the room (mm).
    mu_water_per_mm : float
        Attenuation of water (1/mm).
    supersample : int
        Rays per pixel per axis (1 = pixel center).

    Returns
    -------
    ndarray, shape ``view.shape``, float32
        ∫μ dl per pixel (dimensionless).
    """
    return ExactDrrRenderer(volume, view, mu_water_per_mm=mu_water_per_mm,
                            supersample=supersample).render(room_from_ct)[0]
