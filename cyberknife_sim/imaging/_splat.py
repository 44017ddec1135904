"""Voxel-driven (splatting) forward projector: mass particles → areal density per material.

The live X-ray images are rendered from the truth patient (:class:`~cyberknife_sim.truth.
ParticleSet`), never from the planning CT and never with the registration's ray-driven
shear-warp (:mod:`._drr`). This module projects particles, already moved to the room frame
by the caller, onto one view's detector and returns, per material, the areal density
``∫ρ dl`` along the ray from the source to every pixel centre (g/cm²).

Physics of one splat
--------------------
Let a particle of mass ``m`` sit at ``x``, ``r = |x − S|`` from the source ``S``. Writing the
density of the object in spherical coordinates about the source, ``dV = l² dl dΩ``, so
``∫ dΩ ∫ρ(S + l ω) l² dl = m``; for a particle small against ``r`` (``l ≈ r`` across it) the
line integral ``L(ω) = ∫ρ dl`` of the rays through it obeys ``∫ L(ω) dΩ = m / r²``.
A detector pixel ``p`` (area ``A_pix = s²``, centre at ``R_p`` from the source, its ray at
angle ``θ_p`` to the detector normal) subtends ``ΔΩ_p = A_pix cos θ_p / R_p²`` (to
``O((s/R)²)`` ≈ 1e-7). Sharing the particle's solid-angle budget over pixels with weights
``w_p`` (``Σ w_p = 1``) gives the areal density

    L_p = (m / r²) · w_p / ΔΩ_p = m · R_p² · w_p / (r² · A_pix · cos θ_p),

with ``cos θ_p = D / R_p`` (``D`` = source-to-detector distance along the normal), so
``L_p = (m w_p / r²) · G_p`` and ``G_p = R_p³ / (A_pix D)``. Bookkeeping (tested):
``Σ_p L_p ΔΩ_p = Σ_i m_i / r_i²`` exactly (up to float32 rounding) for particles whose
footprint lies on the detector; ``ΔΩ_p r_iso²`` is the pixel area projected back to the
isocentre plane, so ``Σ_p L_p ΔΩ_p r_iso²`` ≈ total mass (``r_i ≈ r_iso``). Units: g, mm →
g/mm², times 100 → g/cm².

Footprint (anti-aliasing)
-------------------------
A particle stands for a cube of edge ``size_mm``; its shadow is about
``w = size_mm · D / (z · s)`` pixels wide (``z`` = its depth along the normal; default view:
``w ≈ 1.02`` px for 0.5 mm, ``≈ 4.1`` px for 2 mm). A regular particle lattice seen at 45°
(the default views) projects to rows of spacing ``w`` and columns of spacing ``w/√2``; a
footprint only ``w`` wide (box or bilinear) leaves a moiré of ±10–35 % there. So each set is
splatted onto a *binned grid* of pitch ``b = max(1, round(w))`` detector pixels (``w`` at
the set's median depth), where the lattice spacing is about one bin, with **quadratic
B-spline** weights (3×3 bins: partition of unity, first moment exact, Fourier transform
``sinc³``), the binned image is smoothed with ``[1, 2, 1]/4`` along both axes (the alias of
a lattice at 1/√2 bin falls at 0.39 cycles/bin, where this filter passes 12 %), and, for
``b > 1``, upsampled to the detector by bilinear interpolation (a tent of half-width ``b``
sums to ``b`` per axis, so mass is conserved after dividing by ``b²``). Measured on lattice
spheres at 45° (``tests/test_imaging_splat.py``): ripple ±0.4 %; without the smoothing
±2 %; bilinear splat plus smoothing ±1.5 %. Effective blur (std): 0.87 px for ``b = 1``
(0.42 mm at the isocentre for 0.5 mm particles), ``0.96·b`` px for ``b > 1`` (1.9 mm at the
isocentre for 2 mm particles): the price of a moiré-free image of a coarse lattice.

Alignment of the binned grid (tested): bin ``J`` covers detector pixels ``J·b … J·b+b−1``
(before the ``pad``-bin margin), so its centre is at detector coordinate
``(J − pad)·b + (b − 1)/2``; a detector coordinate ``u`` maps to bin coordinate
``(u − (b − 1)/2)/b + pad``. The margin (``pad = 3`` bins on each side) keeps the splat of a
particle just off the detector edge, whose upsampled tail reaches onto it.

Determinism
-----------
The particles of a call are cut into ``_N_CHUNKS`` = 8 fixed chunks (independent of the
number of threads); each chunk splats, in particle order, into its own float32 buffer
(materials interleaved, ``(rows, cols, material)``, so the two particles of a mixture voxel
share cache lines); the buffers are summed in chunk order. So the same input gives
bit-identical output whatever ``NUMBA_NUM_THREADS`` is. (Numba's pool: see :mod:`._drr`
about ``OMP_WAIT_POLICY``.) Two views are splatted in one pass over the particles
(:func:`project_sets_pair`); each view's buffers receive the same additions in the same
order as a one-view call, so both give the same bits (tested). Skipping what a chunk did not
touch (its range of bins is recorded) only leaves out additions of +0.0: the same bits too.

Cost and limits
---------------
Per particle and view: the footprint (projection, ``m/r²``, the nine weights) is computed
vectorised over batches of 256 particles (AVX2: ~5 ns), then the nine scattered float32
additions run in particle order (~6 ns); the positions are read once for both views.
Measured (CPU time, one thread, shared 2-core AMD EPYC under load 5–8): 17–18 ns per particle
and view, was 24–27 ns with one scalar loop per view. The default truth (3.5 M particles) onto
both 512² views: 170–220 ms of CPU per pair (was 325–335 ms, of which 60 ms recomputed the
pixel gain of views made anew each exposure; it is now taken, cached, from the fixed room
views: a rigid move does not change it). :class:`SplatWorkspace` keeps the 8 chunk buffers
per set and view (≈ 50 MB for the default truth and pair) and clears only what a call
touched. Particles are treated as
points for the ray geometry (their ``m/r²`` uses the centre; error ``O((size/r)²)``). The
footprint blurs (see above) more than the particle's true shadow: edges of 2 mm soft tissue
are rounded by σ ≈ 1.9 mm at the isocentre. Particles whose footprint falls partly off the
detector lose that part; particles at or behind the source plane are an error.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import numpy as np
from numba import njit, prange
from numpy.typing import ArrayLike, NDArray

from ..truth import ParticleSet
from ._geometry import ViewGeometry

__all__ = ["SplatWorkspace", "project_particles", "project_sets", "project_sets_pair"]

_N_CHUNKS = 8  # fixed: the sum order must not depend on the thread count
_PAD_BINS = 3  # margin of the binned grid, in bins, on every side
_G_PER_MM2_TO_G_PER_CM2 = 100.0


# ----------------------------------------------------------------------------- kernels
@njit(parallel=True, cache=True, fastmath=False)
def _count_materials(mat: NDArray, n_chunks: int) -> NDArray:
    """Particles per material index 0..255 (int64), one parallel pass over the bytes."""
    n = mat.shape[0]
    out = np.zeros((n_chunks, 256), dtype=np.int64)
    for k in prange(n_chunks):
        for i in range((k * n) // n_chunks, ((k + 1) * n) // n_chunks):
            out[k, mat[i]] += 1
    return out.sum(axis=0)


@njit(cache=True, fastmath=False, error_model="numpy")
def _weights(xyzm, m, g, code, bins, w):  # pragma: no cover
    """One view's footprint of particles ``0..m-1`` of a batch (vectorised: SoA inputs, no
    branches, few arrays). ``xyzm`` (4, batch): position (mm) and mass (g). ``g``: the
    view's projection matrix (12, row-major), source (3), then ``half, inv_b, shift, hi_c,
    hi_r``. Out: ``code`` 1 where the 3×3 bins fit the padded grid, 0 off it, −1 at or
    behind the source plane; the centre bin (``bins`` (2, batch): row, col as floats; valid
    where ``code`` is 1) and the nine float32 weights ``w`` (9, batch) times ``m / r²``
    (g/mm²), row-major over the 3×3 bins."""
    p00, p01, p02, p03 = g[0], g[1], g[2], g[3]
    p10, p11, p12, p13 = g[4], g[5], g[6], g[7]
    p20, p21, p22, p23 = g[8], g[9], g[10], g[11]
    sx, sy, sz = g[12], g[13], g[14]
    half, inv_b, shift, hi_c, hi_r = g[15], g[16], g[17], g[18], g[19]
    for j in range(m):
        x = xyzm[0, j]
        y = xyzm[1, j]
        z = xyzm[2, j]
        h2 = p20 * x + p21 * y + p22 * z + p23
        inv_h2 = 1.0 / h2
        # bin coordinate + 0.5: its floor is the nearest bin
        cb = ((p00 * x + p01 * y + p02 * z + p03) * inv_h2 - half) * inv_b + shift
        rb = ((p10 * x + p11 * y + p12 * z + p13) * inv_h2 - half) * inv_b + shift
        front = h2 > 0.0
        inside = (cb >= 1.0) & (rb >= 1.0) & (cb < hi_c) & (rb < hi_r)
        code[j] = np.int8(front & inside) - np.int8(not front)
        dx = x - sx
        dy = y - sy
        dz = z - sz
        q = xyzm[3, j] / (dx * dx + dy * dy + dz * dz)
        fc = np.floor(cb)
        fr = np.floor(rb)
        bins[0, j] = fr
        bins[1, j] = fc
        tc = cb - 0.5 - fc
        tr = rb - 0.5 - fr
        wc0 = 0.5 * (0.5 - tc) * (0.5 - tc)
        wc2 = 0.5 * (0.5 + tc) * (0.5 + tc)
        wc1 = 1.0 - wc0 - wc2
        wr0 = 0.5 * (0.5 - tr) * (0.5 - tr) * q
        wr2 = 0.5 * (0.5 + tr) * (0.5 + tr) * q
        wr1 = q - wr0 - wr2
        w[0, j] = np.float32(wr0 * wc0)
        w[1, j] = np.float32(wr0 * wc1)
        w[2, j] = np.float32(wr0 * wc2)
        w[3, j] = np.float32(wr1 * wc0)
        w[4, j] = np.float32(wr1 * wc1)
        w[5, j] = np.float32(wr1 * wc2)
        w[6, j] = np.float32(wr2 * wc0)
        w[7, j] = np.float32(wr2 * wc1)
        w[8, j] = np.float32(wr2 * wc2)


@njit(inline="always")
def _scatter(flat, off, n_pl, row_stride, m, valid, slots, code, bins, w,
             box):  # pragma: no cover
    """Add the batch's weights into one view's chunk buffer ``flat[off:]`` in particle
    order; updates ``box`` (centre-bin range) and returns the number behind the source."""
    n_behind = 0
    for j in range(m):
        if not valid[j]:
            continue
        if code[j] != 1:
            if code[j] < 0:
                n_behind += 1
            continue  # behind, or off the (padded) grid: does not reach the detector
        jr = int(bins[0, j])
        jc = int(bins[1, j])
        box[0] = min(box[0], jr)
        box[1] = max(box[1], jr)
        box[2] = min(box[2], jc)
        box[3] = max(box[3], jc)
        o = off + jr * row_stride + jc * n_pl + slots[j]
        o0 = o - row_stride
        o2 = o + row_stride
        flat[o0 - n_pl] += w[0, j]
        flat[o0] += w[1, j]
        flat[o0 + n_pl] += w[2, j]
        flat[o - n_pl] += w[3, j]
        flat[o] += w[4, j]
        flat[o + n_pl] += w[5, j]
        flat[o2 - n_pl] += w[6, j]
        flat[o2] += w[7, j]
        flat[o2 + n_pl] += w[8, j]
    return n_behind


_BATCH = 256  # particles per vectorised batch


@njit(parallel=True, cache=True, fastmath=False)
def _splat_chunks(pts: NDArray, mass: NDArray, mat: NDArray, lut: NDArray, geo: NDArray,
                  n_views: int, n_pl: int, row_stride: NDArray, base: NDArray, flat: NDArray,
                  bbox: NDArray) -> NDArray:  # pragma: no cover
    """Splat every particle into its chunk's buffer, for one or two views in one pass.

    ``geo`` (2, 20) float64: per view, see :func:`_weights`. Chunk ``k`` of view ``v`` is
    ``flat[base[v, k]:]`` as (rows_bins, cols_bins, n_pl) float32, zero on entry
    (materials interleaved: the particles of one place share cache lines; material ``q``
    goes to slot ``lut[q]``); it receives ``m / r²`` (g/mm², see the module doc) times the
    quadratic B-spline weights (3×3 bins), in particle order. ``bbox[v, k]`` receives the
    range of centre bins hit, ``(min row, max row, min col, max col)`` (min > max: none).
    Returns the numbers of particles skipped because their position is not finite, their
    mass is not finite and >= 0, or they lie at or behind the source plane of view 0 / 1.
    """
    n = pts.shape[0]
    n_chunks = base.shape[1]
    bad = np.zeros((n_chunks, 4), dtype=np.int64)
    for k in prange(n_chunks):
        xyzm = np.empty((4, _BATCH))
        valid = np.empty(_BATCH, np.bool_)
        slots = np.empty(_BATCH, np.int64)
        code = np.empty((2, _BATCH), np.int8)
        bins = np.empty((2, 2, _BATCH))
        w = np.empty((2, 9, _BATCH), np.float32)
        box = np.empty((2, 4), np.int64)
        box[:, 0] = box[:, 2] = 1 << 40
        box[:, 1] = box[:, 3] = -1
        lo = (k * n) // n_chunks
        hi = ((k + 1) * n) // n_chunks
        for s0 in range(lo, hi, _BATCH):
            m = min(_BATCH, hi - s0)
            for j in range(m):  # gather (AoS → SoA) and check
                i = s0 + j
                x = np.float64(pts[i, 0])
                y = np.float64(pts[i, 1])
                z = np.float64(pts[i, 2])
                mi = np.float64(mass[i])
                ok = True
                if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(z)):
                    bad[k, 0] += 1
                    ok = False
                    x = y = z = 0.0
                elif not (mi >= 0.0 and mi < np.inf):
                    bad[k, 1] += 1
                    ok = False
                    mi = 0.0
                xyzm[0, j] = x
                xyzm[1, j] = y
                xyzm[2, j] = z
                xyzm[3, j] = mi
                valid[j] = ok
                slots[j] = lut[mat[i]]
            for v in range(n_views):
                _weights(xyzm, m, geo[v], code[v], bins[v], w[v])
                bad[k, 2 + v] += _scatter(flat, base[v, k], n_pl, row_stride[v], m, valid,
                                          slots, code[v], bins[v], w[v], box[v])
        for v in range(n_views):
            for c in range(4):
                bbox[v, k, c] = box[v, c]
    return bad.sum(axis=0)


@njit(inline="always")
def _smooth_row(dst: NDArray) -> None:  # pragma: no cover
    """[1, 2, 1]/4 along one row, in place with a one-sample history (zero beyond it)."""
    n_cols = dst.shape[0]
    prev = np.float32(0.0)
    for c in range(n_cols - 1):
        cur = dst[c]
        dst[c] = np.float32(0.25) * (prev + dst[c + 1]) + np.float32(0.5) * cur
        prev = cur
    dst[n_cols - 1] = np.float32(0.25) * prev + np.float32(0.5) * dst[n_cols - 1]


@njit(parallel=True, cache=True, fastmath=False)
def _reduce_smooth(bufs: NDArray, bbox: NDArray, summed: NDArray,
                   out: NDArray) -> None:  # pragma: no cover
    """Sum the chunk buffers in chunk order (zeroing them again), then smooth with
    [1, 2, 1]/4 along both axes.

    ``bufs``: (n_chunks, rows_bins, cols_bins, n_present), ``bbox`` (n_chunks, 4): the
    centre bins each chunk hit (only the 3×3 neighbourhood of that range is read: the rest
    is zero). ``summed`` (scratch) and ``out``: (n_present, rows_bins, cols_bins) float32;
    ``out`` receives the result (zero beyond the grid; what the smoothing pushes off it lies
    ``pad`` bins off the detector, where it would be lost anyway). Skipping the zero parts
    adds exactly +0.0 less: the result is that of the full sum bit for bit.
    """
    n_chunks, n_rows, n_cols, n_pl = bufs.shape
    for r in prange(n_rows):
        for m in range(n_pl):
            summed[m, r, :] = np.float32(0.0)
        touched = False
        for k in range(n_chunks):
            if bbox[k, 0] > bbox[k, 1] or r < bbox[k, 0] - 1 or r > bbox[k, 1] + 1:
                continue
            touched = True
            src = bufs[k, r]
            for c in range(bbox[k, 2] - 1, bbox[k, 3] + 2):
                for m in range(n_pl):
                    summed[m, r, c] += src[c, m]
                    src[c, m] = np.float32(0.0)
        if touched:  # an untouched row is zero, smoothed or not
            for m in range(n_pl):
                _smooth_row(summed[m, r])
    for t in prange(n_pl * n_rows):
        m = t // n_rows
        r = t % n_rows
        mid = summed[m, r]
        dst = out[m, r]
        for c in range(n_cols):
            dst[c] = np.float32(0.5) * mid[c]
        if r > 0:
            up = summed[m, r - 1]
            for c in range(n_cols):
                dst[c] += np.float32(0.25) * up[c]
        if r < n_rows - 1:
            dn = summed[m, r + 1]
            for c in range(n_cols):
                dst[c] += np.float32(0.25) * dn[c]


@njit(parallel=True, cache=True, fastmath=False)
def _upsample_gain(binned: NDArray, boff: NDArray, bshape: NDArray, slot: NDArray,
                   r0: NDArray, rf: NDArray, c0: NDArray, cf: NDArray, span: NDArray,
                   scale: NDArray, gain: NDArray, out: NDArray) -> None:  # pragma: no cover
    """``out[m] = gain · Σ_s scale[s] · bilinear(binned_s[slot[s, m]])``, sets in order.

    Set ``s``'s binned grid is ``binned[boff[s]:]`` as ``bshape[s]`` = (n_present,
    rows_bins, cols_bins); pixel ``(row, col)`` reads bins ``r0[s, row] + {0, 1}`` ×
    ``c0[s, col] + {0, 1}`` with weights ``1 − f, f`` (``rf``/``cf``: fractional bin
    coordinate; binning 1: the identity, f = 0). Outside ``span[s]`` = (first row, last
    row, first col, last col) the set's contribution is exactly zero and is skipped.
    ``out`` (n_materials, rows, cols) float32 is overwritten.
    """
    n_mat, n_rows, n_cols = out.shape
    n_sets = slot.shape[0]
    for t in prange(n_mat * n_rows):
        m = t // n_rows
        row = t % n_rows
        dst = out[m, row]
        dst[:] = np.float32(0.0)
        for s in range(n_sets):
            q = slot[s, m]
            if q < 0 or row < span[s, 0] or row > span[s, 1]:
                continue
            nr, nc = bshape[s, 1], bshape[s, 2]
            a0 = boff[s] + (q * nr + r0[s, row]) * nc
            a = binned[a0:a0 + nc]
            bb = binned[a0 + nc:a0 + 2 * nc]
            fr = rf[s, row]
            sc = scale[s]
            for col in range(span[s, 2], span[s, 3] + 1):
                j = c0[s, col]
                f = cf[s, col]
                top = a[j] + f * (a[j + 1] - a[j])
                bot = bb[j] + f * (bb[j + 1] - bb[j])
                dst[col] += np.float32(sc * (top + fr * (bot - top)))
        g = gain[row]
        for col in range(n_cols):
            dst[col] = dst[col] * g[col]


# ----------------------------------------------------------------------------- helpers
_GAIN_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _gain_map(view: ViewGeometry) -> NDArray[np.float32]:
    """``G_p = R_p³ / (A_pix · D)`` × 100: (m/r²)-weighted sum (g/mm²) → g/cm² (rows, cols).

    Cached per view object (views are immutable).
    """
    gain = _GAIN_CACHE.get(view)
    if gain is None:
        rows, cols = view.shape
        cc, rr = np.meshgrid(np.arange(cols, dtype=np.float64),
                             np.arange(rows, dtype=np.float64))
        d = view.pixel_to_room(cc, rr) - view.source_room
        r3 = np.sum(d * d, axis=-1) ** 1.5
        area = view.pixel_spacing_mm**2
        gain = (r3 * (_G_PER_MM2_TO_G_PER_CM2 / (area * view.source_to_detector_mm))
                ).astype(np.float32)
        gain.flags.writeable = False
        _GAIN_CACHE[view] = gain
    return gain


def binning_for(view: ViewGeometry, size_mm: float, depth_mm: float) -> int:
    """Bin pitch (detector pixels) for particles of edge ``size_mm`` at ``depth_mm``.

    ``b = max(1, round(w))`` with ``w = size_mm · D / (depth_mm · s)`` the particle's
    projected size in pixels (``D`` = source-to-detector distance, ``s`` = pixel pitch).
    """
    w = size_mm * view.source_to_detector_mm / (depth_mm * view.pixel_spacing_mm)
    return max(1, int(np.floor(w + 0.5)))


def bin_taps(n: int, b: int, pad: int) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Bilinear taps of detector indices ``0..n-1`` into a grid binned by ``b`` with margin.

    Detector coordinate ``u`` sits at bin coordinate ``(u − (b−1)/2)/b + pad`` (bin ``J``
    centred on detector coordinate ``(J − pad)·b + (b−1)/2``). Returns the lower bin index
    and the fraction toward the next one.
    """
    u = (np.arange(n, dtype=np.float64) - 0.5 * (b - 1)) / b + pad
    j = np.floor(u).astype(np.int64)
    return j, u - j


def _as_float(a: NDArray) -> NDArray:
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _check_inputs(points_room_mm: ArrayLike, mass_g: ArrayLike, material: ArrayLike,
                  size_mm: float, n_materials: int) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Coerce and validate; returns points, masses, uint8 materials and counts per material."""
    pts = np.asarray(points_room_mm)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points_room_mm must have shape (n, 3) (got {pts.shape})")
    n = pts.shape[0]
    mass = np.asarray(mass_g)
    if mass.shape != (n,):
        raise ValueError(f"mass_g must have shape ({n},) like points_room_mm (got {mass.shape})")
    mat = np.asarray(material)
    if mat.shape != (n,):
        raise ValueError(f"material must have shape ({n},) like points_room_mm "
                         f"(got {mat.shape})")
    if not np.issubdtype(mat.dtype, np.integer):
        raise ValueError(f"material must hold integers (got dtype {mat.dtype})")
    if not (isinstance(n_materials, int | np.integer) and 1 <= n_materials <= 256):
        raise ValueError(f"n_materials must be an integer in 1..256 (got {n_materials!r})")
    if not (np.isfinite(size_mm) and size_mm > 0):
        raise ValueError(f"size_mm must be a finite number > 0 (got {size_mm})")
    if mat.dtype != np.uint8:
        if n and (mat.min() < 0 or mat.max() > 255):
            raise ValueError(f"material must index 0..{n_materials - 1} "
                             f"(got {int(mat.min())}..{int(mat.max())})")
        mat = mat.astype(np.uint8)
    pts = np.ascontiguousarray(_as_float(pts))
    mass = np.ascontiguousarray(_as_float(mass))
    mat = np.ascontiguousarray(mat)
    counts = _count_materials(mat, _N_CHUNKS)
    if counts[n_materials:].any():
        top = int(np.nonzero(counts)[0].max())
        raise ValueError(f"material must index 0..{n_materials - 1} (found {top})")
    return pts, mass, mat, counts[:n_materials]


def _binning(pts: NDArray, view: ViewGeometry, size_mm: float) -> int:
    """Binning of one set in one view, from the median depth along the central axis of a
    fixed subsample (deterministic)."""
    n = pts.shape[0]
    src = np.asarray(view.source_room, dtype=np.float64)
    sample = pts[:: max(1, n // 1024)].astype(np.float64)
    sample = sample[np.isfinite(sample).all(axis=1)]  # the kernel reports the others
    depth = float(np.median((sample - src) @ view.central_axis_room)) if len(sample) else 1.0
    if not depth > 0:
        raise ValueError(f"points_room_mm: the particles lie behind the source of view "
                         f"{view.name!r}")
    return binning_for(view, size_mm, depth)


def _geo_row(view: ViewGeometry, b: int, n_rb: int, n_cb: int) -> NDArray[np.float64]:
    """The 20 numbers of one view that :func:`_weights` reads."""
    return np.concatenate([np.asarray(view.projection_matrix, np.float64).ravel(),
                           np.asarray(view.source_room, np.float64),
                           [0.5 * (b - 1), 1.0 / b, _PAD_BINS + 0.5, n_cb - 1.5, n_rb - 1.5]])


class SplatWorkspace:
    """Buffers kept between projections of the same particle sets onto the same views.

    The chunk buffers (8 per set and view, up to ~17 MB for a 0.5 mm set at 512²) are
    allocated once and left zero after each projection (only the part a projection touched
    is cleared). Not thread-safe: one workspace per caller.
    """

    def __init__(self) -> None:
        self._chunks: dict[int, tuple[tuple, NDArray[np.float32]]] = {}
        self._scratch: dict[tuple, NDArray[np.float32]] = {}

    def chunk_buffer(self, index: int, key: tuple, size: int) -> NDArray[np.float32]:
        """Zeroed flat buffer for set ``index`` (replaced when its layout ``key`` changes)."""
        held = self._chunks.get(index)
        if held is None or held[0] != key:
            held = (key, np.zeros(size, np.float32))
            self._chunks[index] = held
        return held[1]

    def scratch(self, name: str, size: int) -> NDArray[np.float32]:
        """Flat float32 scratch of at least ``size`` elements (contents undefined)."""
        buf = self._scratch.get((name,))
        if buf is None or buf.size < size:
            buf = np.empty(size, np.float32)
            self._scratch[(name,)] = buf
        return buf[:size]


def _splat_set(ws: SplatWorkspace, index: int, pts: NDArray, mass: NDArray, mat: NDArray,
               counts: NDArray, views: Sequence[ViewGeometry], size_mm: float) -> list:
    """Splat one set onto one or two views, reduce and smooth; per view returns
    ``(binned (n_present, rows_bins, cols_bins), planes, b, (lo_row, hi_row, lo_col, hi_col)
    of the nonzero bins)``."""
    planes = np.nonzero(counts)[0].astype(np.int64)  # output material of each buffer plane
    lut = np.zeros(256, dtype=np.int64)
    lut[planes] = np.arange(planes.size)
    n_pl = int(planes.size)
    layout = []
    for view in views:
        rows, cols = view.shape
        b = _binning(pts, view, size_mm)
        layout.append((b, -(-rows // b) + 2 * _PAD_BINS, -(-cols // b) + 2 * _PAD_BINS))
    sizes = [_N_CHUNKS * nr * nc * n_pl for _, nr, nc in layout]
    flat = ws.chunk_buffer(index, (n_pl, tuple(layout)), sum(sizes))
    starts = np.cumsum([0, *sizes])
    base = np.zeros((2, _N_CHUNKS), np.int64)
    geo = np.zeros((2, 20))
    row_stride = np.zeros(2, np.int64)
    for v, (b, nr, nc) in enumerate(layout):
        base[v] = starts[v] + np.arange(_N_CHUNKS) * (nr * nc * n_pl)
        geo[v] = _geo_row(views[v], b, nr, nc)
        row_stride[v] = nc * n_pl
    bbox = np.zeros((2, _N_CHUNKS, 4), np.int64)
    nonfinite, badmass, *behind = _splat_chunks(pts, mass, mat, lut, geo, len(views),
                                                n_pl, row_stride, base, flat, bbox)
    if nonfinite or badmass or any(behind):
        flat[:] = 0.0  # the next projection expects zeroed buffers
        if nonfinite:
            raise ValueError(f"points_room_mm must be finite ({nonfinite} points hold NaN or "
                             "inf)")
        if badmass:
            raise ValueError(f"mass_g must be finite and >= 0 ({badmass} masses are not)")
        v = int(np.nonzero(behind)[0][0])
        raise ValueError(f"points_room_mm: {behind[v]} particles lie at or behind the source "
                         f"plane of view {views[v].name!r}")
    out = []
    for v, (b, nr, nc) in enumerate(layout):
        bufs = flat[starts[v]:starts[v + 1]].reshape(_N_CHUNKS, nr, nc, n_pl)
        summed = ws.scratch("summed", n_pl * nr * nc).reshape(n_pl, nr, nc)
        binned = np.empty((n_pl, nr, nc), np.float32)
        _reduce_smooth(bufs, bbox[v], summed, binned)
        hit = bbox[v][bbox[v, :, 0] <= bbox[v, :, 1]]
        span = ((hit[:, 0].min() - 2, hit[:, 1].max() + 2, hit[:, 2].min() - 2,
                 hit[:, 3].max() + 2) if len(hit) else (1, 0, 1, 0))
        out.append((binned, planes, b, span))
    return out


def _project(items: Sequence[tuple], views: Sequence[ViewGeometry],
             gains: Sequence[NDArray[np.float32]], n_materials: int,
             ws: SplatWorkspace) -> list[NDArray[np.float32]]:
    """Project sets ``(pts, mass, mat, counts, size_mm)`` onto one or two views (one pass
    over the particles for both); returns per view (n_materials, rows, cols) g/cm²."""
    if not 1 <= len(views) <= 2:
        raise ValueError(f"views: one or two views (got {len(views)})")
    per_view: list[list] = [[] for _ in views]
    for index, (pts, mass, mat, counts, size_mm) in enumerate(items):
        if pts.shape[0] == 0:
            continue
        for v, res in enumerate(_splat_set(ws, index, pts, mass, mat, counts, views,
                                           size_mm)):
            per_view[v].append(res)
    maps = []
    for view, gain, sets in zip(views, gains, per_view, strict=True):
        maps.append(_upsample_view(view, gain, sets, n_materials))
    return maps


def _upsample_view(view: ViewGeometry, gain: NDArray[np.float32], sets: list,
                   n_materials: int) -> NDArray[np.float32]:
    """Bilinear upsampling of every set's binned grid, summed in set order, times the gain."""
    rows, cols = view.shape
    out = np.empty((n_materials, rows, cols), np.float32)
    n_s = max(1, len(sets))
    boff = np.zeros(n_s, np.int64)
    bshape = np.zeros((n_s, 3), np.int64)
    slot = np.full((n_s, n_materials), -1, np.int64)
    r0 = np.zeros((n_s, rows), np.int64)
    rf = np.zeros((n_s, rows))
    c0 = np.zeros((n_s, cols), np.int64)
    cf = np.zeros((n_s, cols))
    span = np.tile(np.array([1, 0, 1, 0], np.int64), (n_s, 1))
    scale = np.zeros(n_s)
    total = 0
    for s, (binned, planes, b, (lo_r, hi_r, lo_c, hi_c)) in enumerate(sets):
        boff[s] = total
        total += binned.size
        bshape[s] = binned.shape
        slot[s, planes] = np.arange(planes.size)
        r0[s], rf[s] = bin_taps(rows, b, _PAD_BINS)
        c0[s], cf[s] = bin_taps(cols, b, _PAD_BINS)
        # output pixels whose two taps reach a nonzero bin (taps are monotonic)
        ok_r = np.nonzero((r0[s] + 1 >= lo_r) & (r0[s] <= hi_r))[0]
        ok_c = np.nonzero((c0[s] + 1 >= lo_c) & (c0[s] <= hi_c))[0]
        if len(ok_r) and len(ok_c):
            span[s] = (ok_r[0], ok_r[-1], ok_c[0], ok_c[-1])
        scale[s] = 1.0 / (b * b)
    flat = np.concatenate([x[0].ravel() for x in sets]) if sets else np.zeros(1, np.float32)
    _upsample_gain(flat, boff, bshape, slot, r0, rf, c0, cf, span, scale, gain, out)
    return out


def _check_set(index: int, item: object, n_materials: int) -> tuple:
    """One ``(ParticleSet, points)`` item → ``(pts, mass, mat, counts, size_mm)``."""
    if not (isinstance(item, tuple | list) and len(item) == 2
            and isinstance(item[0], ParticleSet)):
        raise ValueError(f"sets_and_points[{index}] must be a (ParticleSet, points) pair")
    pset, points = item
    if np.shape(points) != (len(pset), 3):
        raise ValueError(f"sets_and_points[{index}] ({pset.name!r}): points must have "
                         f"shape ({len(pset)}, 3) (got {np.shape(points)})")
    cached = _SET_COUNTS.get(pset)
    if cached is not None and cached[0] == n_materials:
        # the set's masses and materials were checked on its first projection (a set is
        # frozen); positions and masses are checked again by the kernel
        pts = np.ascontiguousarray(_as_float(np.asarray(points)))
        mass = np.ascontiguousarray(_as_float(pset.mass_g))
        mat, counts = cached[1], cached[2]
    else:
        pts, mass, mat, counts = _check_inputs(points, pset.mass_g, pset.material,
                                               pset.size_mm, n_materials)
        _SET_COUNTS[pset] = (n_materials, mat, counts)
    return pts, mass, mat, counts, float(pset.size_mm)


# ----------------------------------------------------------------------------- public API
def project_particles(points_room_mm: ArrayLike, mass_g: ArrayLike, material: ArrayLike,
                      view: ViewGeometry, *, size_mm: float,
                      n_materials: int = 4) -> NDArray[np.float32]:
    """Areal density of each material along every pixel's ray (splatting projector).

    Parameters
    ----------
    points_room_mm : array-like, shape (n, 3), float32 or float64
        Particle positions, room frame (mm).
    mass_g : array-like, shape (n,)
        Particle masses (g), finite and >= 0.
    material : array-like of int, shape (n,)
        Material index of each particle, ``0 .. n_materials-1`` (see ``truth.MATERIALS``).
    view : ViewGeometry
        Source and detector, room frame.
    size_mm : float
        Edge of the cube each particle stands for (mm); sets the footprint (module doc).
    n_materials : int
        Number of material maps returned.

    Returns
    -------
    ndarray, shape (n_materials, rows, cols), float32
        ``∫ρ dl`` per material from the source to each pixel centre (g/cm²).
    """
    pts, mass, mat, counts = _check_inputs(points_room_mm, mass_g, material, size_mm,
                                           n_materials)
    return _project([(pts, mass, mat, counts, float(size_mm))], [view], [_gain_map(view)],
                    n_materials, SplatWorkspace())[0]


def project_sets(sets_and_points: Sequence[tuple[ParticleSet, ArrayLike]],
                 view: ViewGeometry, *, n_materials: int = 4) -> NDArray[np.float32]:
    """Sum of :func:`project_particles` over several particle sets (each with its size).

    Parameters
    ----------
    sets_and_points : sequence of (ParticleSet, array-like (n, 3))
        Each set with its particles' current positions, room frame (mm), in the set's order.
    view : ViewGeometry
        Source and detector, room frame.
    n_materials : int
        Number of material maps returned (default: the 4 of ``truth.MATERIALS``).

    Returns
    -------
    ndarray, shape (n_materials, rows, cols), float32
        ``∫ρ dl`` per material (g/cm²), all sets together.
    """
    return project_sets_pair(sets_and_points, [view], n_materials=n_materials)[0]


def project_sets_pair(sets_and_points: Sequence[tuple[ParticleSet, ArrayLike]],
                      views: Sequence[ViewGeometry], *,
                      gain_views: Sequence[ViewGeometry] | None = None, n_materials: int = 4,
                      workspace: SplatWorkspace | None = None) -> list[NDArray[np.float32]]:
    """:func:`project_sets` onto one or two views in one pass over the particles.

    Each view's image is bit for bit what :func:`project_sets` gives for it alone.

    Parameters
    ----------
    sets_and_points : sequence of (ParticleSet, array-like (n, 3))
        As for :func:`project_sets`, in the frame of ``views``.
    views : sequence of one or two ViewGeometry
        Source and detector of each view, in the particles' frame.
    gain_views : sequence of ViewGeometry, optional
        The same views in any other frame (a rigid transform of ``views``): the pixel
        gain ``R³ / (A D)``, which a rigid transform does not change, is computed once per
        object and cached, so pass fixed objects (e.g. the room views) when ``views`` are
        made anew per call. Default: ``views``.
    n_materials : int
        Number of material maps per view.
    workspace : SplatWorkspace, optional
        Buffers kept between calls (the same sets and views each call: no allocation).

    Returns
    -------
    list of ndarray, shape (n_materials, rows, cols), float32
        ``∫ρ dl`` per material (g/cm²) for each view.
    """
    gain_views = views if gain_views is None else gain_views
    if len(gain_views) != len(views) or any(
            g.shape != v.shape or g.pixel_spacing_mm != v.pixel_spacing_mm
            for g, v in zip(gain_views, views, strict=True)):
        raise ValueError("gain_views must be the views in another frame (same shapes)")
    items = [_check_set(i, item, n_materials) for i, item in enumerate(sets_and_points)]
    return _project(items, list(views), [_gain_map(g) for g in gain_views], n_materials,
                    SplatWorkspace() if workspace is None else workspace)


_SET_COUNTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per particle set (by identity): its checked uint8 materials and particles per material,
so the material pass runs once per set, not once per view and exposure."""
