"""The cone dose engine: Ray-Tracing-style dose per MU of CyberKnife cone beams on a CT.

Dose per MU at a point (Accuray's Ray-Tracing model, see docs/dose.md)::

    D/MU = cal * OF(c) * TPR(d_eff, c) * OCR(r_sad, d_eff, c) * (SAD / z)**2

with ``z`` the point's distance from the source along the beam axis, ``r_sad`` its distance
from the axis projected to the SAD plane (``r * SAD / z``) and ``d_eff`` the radiological
depth: the integral of the relative electron density along the ray from the source to the
point (air counts 0, so it starts at the skin). Rays are traced once per beam, as a fan on a
regular grid in the beam's eye view; each point's depth is interpolated in that fan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse
from numba import njit, prange
from numpy.typing import ArrayLike, NDArray

from ..anatomy.volume import Volume
from ..errors import InputError
from ._beamdata import DEFAULT_BEAM_DATA, BeamData, OcrTable
from ._density import relative_electron_density

__all__ = ["BeamDose", "DoseEngine"]


@njit(cache=True, inline="always")
def _sample(red, a, x, y, z):
    """Trilinear RED at CT point (x, y, z) mm; 0 outside the volume. ``a`` is ijk_from_ct."""
    fi = a[0, 0] * x + a[0, 1] * y + a[0, 2] * z + a[0, 3]
    fj = a[1, 0] * x + a[1, 1] * y + a[1, 2] * z + a[1, 3]
    fk = a[2, 0] * x + a[2, 1] * y + a[2, 2] * z + a[2, 3]
    return _sample_ijk(red, fi, fj, fk)


@njit(cache=True, inline="always")
def _sample_ijk(red, fi, fj, fk):
    """Trilinear RED at fractional voxel indices (i, j, k); 0 outside the volume."""
    nk, nj, ni = red.shape
    if fi <= -1.0 or fj <= -1.0 or fk <= -1.0 or fi >= ni or fj >= nj or fk >= nk:
        return 0.0
    i0, j0, k0 = math.floor(fi), math.floor(fj), math.floor(fk)
    ti, tj, tk = fi - i0, fj - j0, fk - k0
    if i0 >= 0 and j0 >= 0 and k0 >= 0 and i0 < ni - 1 and j0 < nj - 1 and k0 < nk - 1:
        c00 = red[k0, j0, i0] + ti * (red[k0, j0, i0 + 1] - red[k0, j0, i0])
        c01 = red[k0, j0 + 1, i0] + ti * (red[k0, j0 + 1, i0 + 1] - red[k0, j0 + 1, i0])
        c10 = red[k0 + 1, j0, i0] + ti * (red[k0 + 1, j0, i0 + 1] - red[k0 + 1, j0, i0])
        c11 = red[k0 + 1, j0 + 1, i0] + ti * (red[k0 + 1, j0 + 1, i0 + 1]
                                              - red[k0 + 1, j0 + 1, i0])
        c0 = c00 + tj * (c01 - c00)
        c1 = c10 + tj * (c11 - c10)
        return c0 + tk * (c1 - c0)
    acc = 0.0
    for dk in range(2):
        k = k0 + dk
        if k < 0 or k >= nk:
            continue
        wk = tk if dk else 1.0 - tk
        for dj in range(2):
            j = j0 + dj
            if j < 0 or j >= nj:
                continue
            wj = tj if dj else 1.0 - tj
            for di in range(2):
                i = i0 + di
                if i < 0 or i >= ni:
                    continue
                acc += wk * wj * (ti if di else 1.0 - ti) * red[k, j, i]
    return acc


@njit(cache=True, inline="always")
def _box_range(a, src, w, shape):
    """Axial range ``(t_in, t_out)`` where the ray ``src + t w`` can sample a nonzero RED
    (voxel indices strictly inside (-1, n) on every axis); ``t_in >= t_out`` if it misses."""
    t_in, t_out = -1e30, 1e30
    for ax in range(3):
        p0 = a[ax, 0] * src[0] + a[ax, 1] * src[1] + a[ax, 2] * src[2] + a[ax, 3]
        q = a[ax, 0] * w[0] + a[ax, 1] * w[1] + a[ax, 2] * w[2]
        hi = shape[2 - ax]
        if abs(q) < 1e-12:
            if p0 <= -1.0 or p0 >= hi:
                return 1.0, 0.0
            continue
        t1, t2 = (-1.0 - p0) / q, (hi - p0) / q
        t_in = max(t_in, min(t1, t2))
        t_out = min(t_out, max(t1, t2))
    return t_in, t_out


@njit(cache=True, parallel=True)
def _march_fan(red, a, src, dirs, z0, dz, nz):  # pragma: no cover - compiled
    """Cumulative radiological path (mm) along rays ``src + z * dirs[r]`` at
    ``z = z0 + k dz`` (trapezoid rule); ``dirs`` have unit component along the axis."""
    out = np.zeros((dirs.shape[0], nz))
    shape = np.array(red.shape)
    for r in prange(dirs.shape[0]):
        w = dirs[r]
        t_in, t_out = _box_range(a, src, w, shape)
        k_in = max(1, int(math.floor((t_in - z0) / dz)))
        k_out = min(nz, int(math.ceil((t_out - z0) / dz)) + 1)
        dl = dz * math.sqrt(w[0] * w[0] + w[1] * w[1] + w[2] * w[2])
        # voxel indices are affine in k: start (k = 0) and step per sample
        p0 = np.empty(3)
        st = np.empty(3)
        for ax in range(3):
            q = a[ax, 0] * w[0] + a[ax, 1] * w[1] + a[ax, 2] * w[2]
            p0[ax] = a[ax, 0] * src[0] + a[ax, 1] * src[1] + a[ax, 2] * src[2] + a[ax, 3] \
                + z0 * q
            st[ax] = dz * q
        kk = k_in - 1
        prev = _sample_ijk(red, p0[0] + kk * st[0], p0[1] + kk * st[1], p0[2] + kk * st[2])
        acc = 0.0
        for k in range(k_in, k_out):
            val = _sample_ijk(red, p0[0] + k * st[0], p0[1] + k * st[1], p0[2] + k * st[2])
            acc += 0.5 * (prev + val) * dl
            out[r, k] = acc
            prev = val
        for k in range(max(k_out, k_in), nz):
            out[r, k] = acc
    return out


@njit(cache=True, parallel=True)
def _march_points(red, a, src, pts, z, z0, dz):  # pragma: no cover - compiled
    """Radiological path (mm) from axial distance ``z0`` to each point, one ray per point."""
    out = np.zeros(pts.shape[0])
    for p in prange(pts.shape[0]):
        if z[p] <= z0:
            continue
        w0 = (pts[p, 0] - src[0]) / z[p]
        w1 = (pts[p, 1] - src[1]) / z[p]
        w2 = (pts[p, 2] - src[2]) / z[p]
        n = max(1, math.ceil((z[p] - z0) / dz))
        h = (z[p] - z0) / n
        dl = h * math.sqrt(w0 * w0 + w1 * w1 + w2 * w2)
        prev = _sample(red, a, src[0] + z0 * w0, src[1] + z0 * w1, src[2] + z0 * w2)
        acc = 0.0
        for k in range(1, n + 1):
            t = z0 + k * h
            val = _sample(red, a, src[0] + t * w0, src[1] + t * w1, src[2] + t * w2)
            acc += 0.5 * (prev + val) * dl
            prev = val
        out[p] = acc
    return out


@njit(cache=True)
def _interp_fan(cum, fa, fb, fz):  # pragma: no cover - compiled
    """Trilinear interpolation of ``cum[a, b, z]`` at fractional indices (clamped)."""
    na, nb, nz = cum.shape
    out = np.empty(fa.shape[0])
    for p in range(fa.shape[0]):
        x = min(max(fa[p], 0.0), na - 1.000001)
        y = min(max(fb[p], 0.0), nb - 1.000001)
        z = min(max(fz[p], 0.0), nz - 1.000001)
        i, j, k = int(x), int(y), int(z)
        tx, ty, tz = x - i, y - j, z - k
        c00 = cum[i, j, k] + tx * (cum[i + 1, j, k] - cum[i, j, k])
        c01 = cum[i, j + 1, k] + tx * (cum[i + 1, j + 1, k] - cum[i, j + 1, k])
        c10 = cum[i, j, k + 1] + tx * (cum[i + 1, j, k + 1] - cum[i, j, k + 1])
        c11 = cum[i, j + 1, k + 1] + tx * (cum[i + 1, j + 1, k + 1] - cum[i, j + 1, k + 1])
        c0 = c00 + ty * (c01 - c00)
        c1 = c10 + ty * (c11 - c10)
        out[p] = c0 + tz * (c1 - c0)
    return out


def _vec3(x: ArrayLike, what: str) -> NDArray[np.float64]:
    v = np.asarray(x, dtype=np.float64)
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise InputError(f"dose engine: {what} must be 3 finite numbers (CT mm), got "
                         f"shape {v.shape}")
    return v


def _points(points_ct: ArrayLike) -> NDArray[np.float64]:
    p = np.asarray(points_ct, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or not np.all(np.isfinite(p)):
        raise InputError(f"dose engine: points_ct must be a finite (N, 3) array of CT mm, got "
                         f"shape {p.shape}")
    return p


def beam_axes(source_ct: ArrayLike, aim_ct: ArrayLike) -> tuple[NDArray[np.float64], ...]:
    """Unit vectors ``(e_u, e_v, direction)`` of a beam (CT frame): ``direction`` from the
    source to the aim point, ``e_u = direction x z`` normalised (``x`` if the beam runs along
    z), ``e_v = direction x e_u``; a right-handed frame ``(e_u, e_v, direction)``."""
    src, aim = _vec3(source_ct, "source_ct"), _vec3(aim_ct, "aim_ct")
    d = aim - src
    dist = float(np.linalg.norm(d))
    if dist < 1.0:
        raise InputError(f"dose engine: source_ct and aim_ct coincide ({src} vs {aim})")
    n = d / dist
    ref = np.array([0.0, 0.0, 1.0]) if abs(n[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e_u = np.cross(n, ref)
    e_u /= np.linalg.norm(e_u)
    e_v = np.cross(n, e_u)
    return e_u, e_v, n


@dataclass(frozen=True, eq=False)
class BeamDose:
    """One beam's dose per MU at a point set, kept at the points near its axis.

    Attributes
    ----------
    source_ct, aim_ct : ndarray, shape (3,)
        Beam source and aim point (CT mm).
    cone_mm : float
        Cone diameter at SAD (mm).
    e_u, e_v, direction : ndarray, shape (3,)
        Lateral unit vectors and the beam direction (CT frame), see :func:`beam_axes`.
    n_points : int
        Size N of the point set the beam was computed on.
    index : ndarray of int, shape (M,)
        Indices into the point set of the points within the cutoff radius.
    values_gy_per_mu : ndarray, shape (M,)
        Dose per MU (Gy/MU) at those points.
    eff_depth_mm : ndarray, shape (M,)
        Radiological depth (mm of water) of those points.
    distance_mm : ndarray, shape (M,)
        Their distance from the source along the axis (mm).
    lateral_mm : ndarray, shape (M, 2)
        Their ``(u, v)`` offsets from the axis (mm, along ``e_u``, ``e_v``, at their depth).
    """

    source_ct: NDArray[np.float64]
    aim_ct: NDArray[np.float64]
    cone_mm: float
    e_u: NDArray[np.float64]
    e_v: NDArray[np.float64]
    direction: NDArray[np.float64]
    n_points: int
    index: NDArray[np.int64]
    values_gy_per_mu: NDArray[np.float64]
    eff_depth_mm: NDArray[np.float64]
    distance_mm: NDArray[np.float64]
    lateral_mm: NDArray[np.float64]
    _base_gy_per_mu: NDArray[np.float64]   # everything but the OCR
    _ocr_table: OcrTable
    _sad_mm: float

    def axis_frame(self) -> tuple[NDArray[np.float64], ...]:
        """``(e_u, e_v, direction)``, unit vectors in the CT frame."""
        return self.e_u, self.e_v, self.direction

    def dense(self, mu: float = 1.0) -> NDArray[np.float64]:
        """Dose (Gy) of ``mu`` MU at every point of the set, shape (N,), 0 beyond the cutoff."""
        out = np.zeros(self.n_points)
        out[self.index] = self.values_gy_per_mu * float(mu)
        return out

    def dose_per_mu(self, offsets_mm: ArrayLike | None = None, weights: ArrayLike | None = None,
                    *, bin_mm: float = 0.01) -> NDArray[np.float64]:
        """Dose per MU (Gy/MU, shape (M,)) with the beam axis translated laterally.

        The axis moves by each ``(u, v)`` offset (mm along ``e_u``, ``e_v``, in the plane
        through the aim point perpendicular to the beam); the result is the ``weights``-
        weighted mean. Each point keeps its effective depth and inverse square; only the
        off-axis ratio moves with the axis (a translated ray through a point crosses the same
        tissue shifted by the offset, a change that matters only across lateral density
        edges).

        Parameters
        ----------
        offsets_mm : array-like, shape (K, 2), optional
            Axis offsets (mm). None: the planned axis (``values_gy_per_mu``).
        weights : array-like, shape (K,), optional
            Non-negative weights summing to 1 (e.g. ∝ MU of each step). None: uniform.
        bin_mm : float
            Offsets are rounded to this grid (mm) and equal ones merged; 0 turns it off.
        """
        if offsets_mm is None:
            return self.values_gy_per_mu.copy()
        off = np.asarray(offsets_mm, dtype=np.float64)
        if off.ndim != 2 or off.shape[1] != 2 or off.shape[0] == 0 or not np.all(
                np.isfinite(off)):
            raise InputError(f"beam dose: offsets_mm must be a finite (K, 2) array of mm, got "
                             f"shape {off.shape}")
        if weights is None:
            w = np.full(off.shape[0], 1.0 / off.shape[0])
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (off.shape[0],) or np.any(~np.isfinite(w)) or np.any(w < 0) or \
                    abs(w.sum() - 1.0) > 1e-6:
                raise InputError(f"beam dose: weights must be {off.shape[0]} non-negative "
                                 f"numbers summing to 1 (got shape {w.shape}, sum "
                                 f"{np.sum(w):.6g})")
        if bin_mm > 0:
            q, inv = np.unique(np.round(off / bin_mm).astype(np.int64), axis=0,
                               return_inverse=True)
            w = np.bincount(inv.reshape(-1), weights=w, minlength=q.shape[0])
            off = q * float(bin_mm)
        ocr = self._ocr_table.mean_shifted(self.lateral_mm, self._sad_mm / self.distance_mm,
                                           self.eff_depth_mm, off, w)
        return self._base_gy_per_mu * ocr


class DoseEngine:
    """Cone dose per MU on a CT (Ray-Tracing-style, see the module docstring).

    Parameters
    ----------
    ct : Volume
        CT in HU (``hu[k, j, i]``, ``ct_from_ijk``).
    beam_data : BeamData
        Cone beam data.
    sad_mm : float
        Reference source-axis distance of the inverse square and of ``r_sad`` (mm).
    cutoff_mm : float
        Points farther than ``cone/2 + cutoff_mm`` from the axis (SAD plane) get no dose.
    fan_spacing_mm : float
        Lateral spacing of the traced rays at the aim point (mm).
    step_mm : float
        Step along the rays (mm, along the axis).
    """

    def __init__(self, ct: Volume, *, beam_data: BeamData = DEFAULT_BEAM_DATA,
                 sad_mm: float = 800.0, cutoff_mm: float = 20.0, fan_spacing_mm: float = 1.0,
                 step_mm: float = 1.0) -> None:
        if not isinstance(ct, Volume):
            raise InputError(f"dose engine: ct must be a Volume (got {type(ct).__name__})")
        for name, val in (("sad_mm", sad_mm), ("cutoff_mm", cutoff_mm),
                          ("fan_spacing_mm", fan_spacing_mm), ("step_mm", step_mm)):
            if not (np.isfinite(val) and val > 0):
                raise InputError(f"dose engine: {name} must be positive (got {val})")
        self.ct = ct
        self.beam_data = beam_data
        self.sad_mm = float(sad_mm)
        self.cutoff_mm = float(cutoff_mm)
        self.fan_spacing_mm = float(fan_spacing_mm)
        self.step_mm = float(step_mm)
        self._red = relative_electron_density(ct.hu).astype(np.float32)
        self._a = np.ascontiguousarray(ct.ijk_from_ct[:3, :], dtype=np.float64)
        nk, nj, ni = ct.shape
        c = np.array([[i, j, k] for i in (-0.5, ni - 0.5) for j in (-0.5, nj - 0.5)
                      for k in (-0.5, nk - 0.5)])
        self._corners_ct = ct.ijk_to_ct(c)
        self._tables: dict[float, OcrTable] = {}

    # -- geometry ---------------------------------------------------------------------------
    def _check_source(self, src: NDArray[np.float64]) -> None:
        ijk = self._a[:, :3] @ src + self._a[:, 3]
        nk, nj, ni = self.ct.shape
        if np.all(ijk > -0.5) and np.all(ijk < np.array([ni, nj, nk]) - 0.5):
            raise InputError(f"dose engine: source_ct {np.round(src, 1).tolist()} lies inside "
                             f"the CT volume")

    def _ocr_table(self, cone_mm: float) -> OcrTable:
        if cone_mm not in self._tables:
            self._tables[cone_mm] = OcrTable.build(self.beam_data, cone_mm,
                                                   r_max_mm=0.5 * cone_mm + self.cutoff_mm + 40)
        return self._tables[cone_mm]

    def _z0(self, src: NDArray[np.float64], n: NDArray[np.float64]) -> float:
        """Axial distance where the CT box starts (mm)."""
        return max(float(np.min((self._corners_ct - src) @ n)), 1.0)

    def eff_depth_exact(self, source_ct: ArrayLike, points_ct: ArrayLike, *,
                        aim_ct: ArrayLike) -> NDArray[np.float64]:
        """Radiological depth (mm) of points traced with one ray each (the fan's reference)."""
        src = _vec3(source_ct, "source_ct")
        p = _points(points_ct)
        n = beam_axes(src, aim_ct)[2]
        z = (p - src) @ n
        return _march_points(self._red, self._a, src, p, z, self._z0(src, n), self.step_mm)

    # -- dose -------------------------------------------------------------------------------
    def beam(self, source_ct: ArrayLike, aim_ct: ArrayLike, cone_mm: float,
             points_ct: ArrayLike) -> BeamDose:
        """One beam's dose per MU at the points within its cutoff.

        Parameters
        ----------
        source_ct, aim_ct : array-like, shape (3,)
            Beam source and aim point (CT mm); the source must lie outside the CT volume.
        cone_mm : float
            Cone diameter at SAD (mm, 5-60).
        points_ct : array-like, shape (N, 3)
            Dose points (CT mm), e.g. ``DoseGrid.points_ct()``.
        """
        bd = self.beam_data
        cone = bd.check_cone(cone_mm)
        src, aim = _vec3(source_ct, "source_ct"), _vec3(aim_ct, "aim_ct")
        e_u, e_v, n = beam_axes(src, aim)
        self._check_source(src)
        p = _points(points_ct)
        rel = p - src
        z = rel @ n
        u, v = rel @ e_u, rel @ e_v
        with np.errstate(divide="ignore", invalid="ignore"):
            r_sad = np.hypot(u, v) * self.sad_mm / z
        idx = np.flatnonzero((z > 1.0) & (r_sad <= 0.5 * cone + self.cutoff_mm))
        z, u, v, r_sad = z[idx], u[idx], v[idx], r_sad[idx]
        d_eff = self._fan_depth(src, n, e_u, e_v, float(np.linalg.norm(aim - src)), z, u, v)
        base = (bd.calibration_gy_per_mu * bd.output_factor(cone) * bd.tpr(d_eff, cone)
                * (self.sad_mm / z) ** 2)
        values = base * bd.ocr(r_sad, d_eff, cone)
        return BeamDose(src, aim, cone, e_u, e_v, n, p.shape[0], idx, values, d_eff, z,
                        np.stack([u, v], axis=1), base, self._ocr_table(cone), self.sad_mm)

    def _fan_depth(self, src, n, e_u, e_v, z_iso, z, u, v) -> NDArray[np.float64]:
        """Radiological depth at points (axial z, lateral u, v) from a fan of rays on a
        regular grid at the aim plane, interpolated trilinearly in (a, b, z)."""
        if z.size == 0:
            return np.zeros(0)
        h, dz = self.fan_spacing_mm, self.step_mm
        a, b = u * z_iso / z, v * z_iso / z
        a0, b0 = math.floor(a.min() / h) - 1, math.floor(b.min() / h) - 1
        na, nb = math.ceil(a.max() / h) - a0 + 2, math.ceil(b.max() / h) - b0 + 2
        ga, gb = np.meshgrid((a0 + np.arange(na)) * h, (b0 + np.arange(nb)) * h, indexing="ij")
        ga, gb = ga.reshape(-1), gb.reshape(-1)
        # rays a point can interpolate from: within one fan cell (diagonal) of a point's ray
        need = np.hypot(ga, gb) <= np.hypot(a, b).max() + 1.5 * h
        dirs = n[None, :] + (ga[need, None] * e_u + gb[need, None] * e_v) / z_iso
        z0 = self._z0(src, n)
        nz = max(2, math.ceil((z.max() - z0) / dz) + 2)
        cum = np.zeros((na * nb, nz))
        cum[need] = _march_fan(self._red, self._a, src, np.ascontiguousarray(dirs), z0, dz, nz)
        return _interp_fan(cum.reshape(na, nb, nz), a / h - a0, b / h - b0, (z - z0) / dz)

    def dose_per_mu(self, source_ct: ArrayLike, aim_ct: ArrayLike, cone_mm: float,
                    points_ct: ArrayLike) -> NDArray[np.float64]:
        """Dose per MU (Gy/MU) of one beam geometry at every point, shape (N,)."""
        return self.beam(source_ct, aim_ct, cone_mm, points_ct).dense()

    def influence_matrix(self, beams: Sequence[tuple[ArrayLike, ArrayLike, float]],
                         points_ct: ArrayLike) -> scipy.sparse.csc_matrix:
        """Dose per MU of each beam at each point: sparse ``(N, n_beams)``, Gy/MU.

        Parameters
        ----------
        beams : sequence of (source_ct, aim_ct, cone_mm)
            Beam geometries (CT mm, mm).
        points_ct : array-like, shape (N, 3)
            Dose points (CT mm).
        """
        p = _points(points_ct)
        if len(beams) == 0:
            raise InputError("dose engine: influence_matrix needs at least one beam")
        cols = []
        for k, beam in enumerate(beams):
            if len(beam) != 3:
                raise InputError(f"dose engine: beam {k} must be (source_ct, aim_ct, cone_mm)")
            cols.append(self.beam(beam[0], beam[1], beam[2], p))
        indptr = np.concatenate([[0], np.cumsum([c.index.size for c in cols])])
        return scipy.sparse.csc_matrix(
            (np.concatenate([c.values_gy_per_mu for c in cols]),
             np.concatenate([c.index for c in cols]), indptr), shape=(p.shape[0], len(cols)))
