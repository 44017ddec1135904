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
about ``OMP_WAIT_POLICY``.)

Cost and limits
---------------
About 25–35 ns of CPU per particle (``benchmarks/bench_splat.py``: 5 M particles onto
512², 180–200 ms of CPU per view, measured on the shared 2-core development machine under a
load of 6–7, where wall time was 250–580 ms; an idle 2-core machine should see about half
the CPU time as wall time, ~90–100 ms, above the 60 ms target). The inner loop is nine
scattered float32 additions per particle; it does not vectorise. Particles are treated as
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

__all__ = ["project_particles", "project_sets"]

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


@njit(parallel=True, cache=True, fastmath=False)
def _splat_chunks(pts: NDArray, mass: NDArray, mat: NDArray, lut: NDArray, proj: NDArray,
                  src: NDArray, b: int, pad: int, bufs: NDArray) -> NDArray:
    """Splat every particle into its chunk's buffer (quadratic B-spline, 3×3 bins).

    ``bufs``: (n_chunks, rows_bins, cols_bins, n_present) float32, zeroed (materials
    interleaved: the particles of one place share cache lines); material ``q`` goes to slot
    ``lut[q]``. Each buffer
    receives ``m / r²`` (g/mm², see the module doc) times the weights. Returns the numbers
    of particles skipped because their position is not finite, they lie at or behind the
    source plane, or their mass is not finite and >= 0.
    """
    n = pts.shape[0]
    n_chunks, n_rows, n_cols, n_pl = bufs.shape
    row_stride = n_cols * n_pl
    half = 0.5 * (b - 1)
    inv_b = 1.0 / b
    p00, p01, p02, p03 = proj[0, 0], proj[0, 1], proj[0, 2], proj[0, 3]
    p10, p11, p12, p13 = proj[1, 0], proj[1, 1], proj[1, 2], proj[1, 3]
    p20, p21, p22, p23 = proj[2, 0], proj[2, 1], proj[2, 2], proj[2, 3]
    sx, sy, sz = src[0], src[1], src[2]
    # bin coordinate + 0.5: its truncation is the nearest bin; the 3×3 taps must fit
    shift = pad + 0.5
    hi_c = n_cols - 1.5
    hi_r = n_rows - 1.5
    bad = np.zeros((n_chunks, 3), dtype=np.int64)
    flat_all = bufs.reshape(n_chunks, n_rows * row_stride)
    for k in prange(n_chunks):
        flat = flat_all[k]
        n_nonfinite = 0
        n_behind = 0
        n_badmass = 0
        for i in range((k * n) // n_chunks, ((k + 1) * n) // n_chunks):
            x = np.float64(pts[i, 0])
            y = np.float64(pts[i, 1])
            z = np.float64(pts[i, 2])
            h2 = p20 * x + p21 * y + p22 * z + p23
            if not np.isfinite(h2):
                n_nonfinite += 1
                continue
            if not h2 > 0.0:
                n_behind += 1
                continue
            mi = np.float64(mass[i])
            if not (mi >= 0.0 and mi < np.inf):
                n_badmass += 1
                continue
            inv_h2 = 1.0 / h2
            cb = ((p00 * x + p01 * y + p02 * z + p03) * inv_h2 - half) * inv_b + shift
            rb = ((p10 * x + p11 * y + p12 * z + p13) * inv_h2 - half) * inv_b + shift
            if not (cb >= 1.0 and rb >= 1.0 and cb < hi_c and rb < hi_r):
                continue  # off the (padded) grid: does not reach the detector
            jc = int(cb)
            jr = int(rb)
            dx = x - sx
            dy = y - sy
            dz = z - sz
            q = mi / (dx * dx + dy * dy + dz * dz)
            o = jr * row_stride + jc * n_pl + lut[mat[i]]
            tc = cb - 0.5 - jc
            tr = rb - 0.5 - jr
            wc0 = 0.5 * (0.5 - tc) * (0.5 - tc)
            wc2 = 0.5 * (0.5 + tc) * (0.5 + tc)
            wc1 = 1.0 - wc0 - wc2
            wr0 = 0.5 * (0.5 - tr) * (0.5 - tr) * q
            wr2 = 0.5 * (0.5 + tr) * (0.5 + tr) * q
            wr1 = q - wr0 - wr2
            o0 = o - row_stride
            flat[o0 - n_pl] += np.float32(wr0 * wc0)
            flat[o0] += np.float32(wr0 * wc1)
            flat[o0 + n_pl] += np.float32(wr0 * wc2)
            flat[o - n_pl] += np.float32(wr1 * wc0)
            flat[o] += np.float32(wr1 * wc1)
            flat[o + n_pl] += np.float32(wr1 * wc2)
            o2 = o + row_stride
            flat[o2 - n_pl] += np.float32(wr2 * wc0)
            flat[o2] += np.float32(wr2 * wc1)
            flat[o2 + n_pl] += np.float32(wr2 * wc2)
        bad[k, 0] = n_nonfinite
        bad[k, 1] = n_behind
        bad[k, 2] = n_badmass
    return bad.sum(axis=0)


@njit(parallel=True, cache=True, fastmath=False)
def _reduce_smooth(bufs: NDArray) -> NDArray:
    """Sum the chunk buffers in chunk order, then smooth with [1, 2, 1]/4 along both axes.

    ``bufs``: (n_chunks, rows_bins, cols_bins, n_present). Returns (n_present, rows_bins,
    cols_bins) float32 (zero beyond the grid; what the smoothing pushes off it lies ``pad``
    bins off the detector, where it would be lost anyway).
    """
    n_chunks, n_rows, n_cols, n_pl = bufs.shape
    summed = np.zeros((n_pl, n_rows, n_cols), dtype=np.float32)
    for r in prange(n_rows):
        for k in range(n_chunks):
            src = bufs[k, r]
            for c in range(n_cols):
                for m in range(n_pl):
                    summed[m, r, c] += src[c, m]
        for m in range(n_pl):
            dst = summed[m, r]
            # along columns, in place with a one-sample history
            prev = np.float32(0.0)
            for c in range(n_cols - 1):
                cur = dst[c]
                dst[c] = np.float32(0.25) * (prev + dst[c + 1]) + np.float32(0.5) * cur
                prev = cur
            dst[n_cols - 1] = np.float32(0.25) * prev + np.float32(0.5) * dst[n_cols - 1]
    out = np.empty_like(summed)
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
    return out


@njit(parallel=True, cache=True, fastmath=False)
def _upsample_add(binned: NDArray, planes: NDArray, r0: NDArray, rf: NDArray, c0: NDArray,
                  cf: NDArray, scale: float, acc: NDArray) -> None:
    """``acc[planes[q]] += scale · bilinear(binned[q])`` at every detector pixel.

    Pixel ``(row, col)`` reads bins ``r0[row] + {0, 1}`` × ``c0[col] + {0, 1}`` with weights
    ``1 − f, f`` (``rf``/``cf`` = fractional bin coordinate); for binning 1 the taps are the
    identity (f = 0).
    """
    n_pl = binned.shape[0]
    n_rows = acc.shape[1]
    n_cols = acc.shape[2]
    for t in prange(n_pl * n_rows):
        q = t // n_rows
        row = t % n_rows
        a = binned[q, r0[row]]
        bb = binned[q, r0[row] + 1]
        fr = rf[row]
        dst = acc[planes[q], row]
        for col in range(n_cols):
            j = c0[col]
            f = cf[col]
            top = a[j] + f * (a[j + 1] - a[j])
            bot = bb[j] + f * (bb[j + 1] - bb[j])
            dst[col] += np.float32(scale * (top + fr * (bot - top)))


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


def _accumulate(acc: NDArray[np.float32], pts: NDArray, mass: NDArray, mat: NDArray,
                counts: NDArray, view: ViewGeometry, size_mm: float) -> None:
    """Add the (m/r²)-weighted splat of one particle set to ``acc`` (n_mat, rows, cols)."""
    n = pts.shape[0]
    if n == 0:
        return
    rows, cols = view.shape
    src = np.asarray(view.source_room, dtype=np.float64)
    # depth along the central axis of a fixed subsample (deterministic): picks the binning
    sample = pts[:: max(1, n // 1024)].astype(np.float64)
    sample = sample[np.isfinite(sample).all(axis=1)]  # the kernel reports the others
    depth = float(np.median((sample - src) @ view.central_axis_room)) if len(sample) else 1.0
    if not depth > 0:
        raise ValueError(f"points_room_mm: the particles lie behind the source of view "
                         f"{view.name!r}")
    b = binning_for(view, size_mm, depth)
    pad = _PAD_BINS
    planes = np.nonzero(counts)[0].astype(np.int64)  # output material of each buffer plane
    lut = np.zeros(256, dtype=np.int64)
    lut[planes] = np.arange(planes.size)
    n_rb = -(-rows // b) + 2 * pad
    n_cb = -(-cols // b) + 2 * pad
    bufs = np.zeros((_N_CHUNKS, n_rb, n_cb, planes.size), dtype=np.float32)
    proj = np.ascontiguousarray(view.projection_matrix, dtype=np.float64)
    nonfinite, behind, badmass = _splat_chunks(pts, mass, mat, lut, proj, src, b, pad,
                                               bufs)
    if nonfinite:
        raise ValueError(f"points_room_mm must be finite ({nonfinite} points hold NaN or inf)")
    if badmass:
        raise ValueError(f"mass_g must be finite and >= 0 ({badmass} masses are not)")
    if behind:
        raise ValueError(f"points_room_mm: {behind} particles lie at or behind the source "
                         f"plane of view {view.name!r}")
    binned = _reduce_smooth(bufs)
    del bufs
    r0, rf = bin_taps(rows, b, pad)
    c0, cf = bin_taps(cols, b, pad)
    _upsample_add(binned, planes, r0, rf, c0, cf, 1.0 / (b * b), acc)


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
    acc = np.zeros((n_materials, *view.shape), dtype=np.float32)
    _accumulate(acc, pts, mass, mat, counts, view, float(size_mm))
    return (acc * _gain_map(view)).astype(np.float32)


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
    acc = np.zeros((n_materials, *view.shape), dtype=np.float32)
    for index, item in enumerate(sets_and_points):
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
        _accumulate(acc, pts, mass, mat, counts, view, float(pset.size_mm))
    return (acc * _gain_map(view)).astype(np.float32)


_SET_COUNTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per particle set (by identity): its checked uint8 materials and particles per material,
so the material pass runs once per set, not once per view and exposure."""
