"""The planning CT as a simulated acquisition of the truth patient.

The planning CT that registration uses is NOT the truth: it is a CT scan of it, with the
scanner's partial-volume blur, slice thickness and noise (DESIGN.md, imaging realism).

Image formation (:func:`acquire_ct`). A voxel's value is the truth's linear attenuation
averaged by the scanner's point spread, separable along the grid axes:

* each particle is a uniform cube of its ``size_mm`` (its mass spread evenly in it);
* in-plane (i, j): a box of one pixel (the voxel average; the reconstruction kernel's own
  blur is left out);
* along the slices (k): the slice sensitivity profile (SSP), FWHM = ``slice_mm``:
  ``"triangle"`` (default; helical scanning with 180° linear interpolation gives a nearly
  triangular SSP of FWHM ≈ the nominal thickness) or ``"box"`` (axial step-and-shoot).

So a particle's footprint is box(size) ⊗ box(pixel) in-plane and box(size) ⊗ SSP along k,
sampled at the voxel centres (closed forms from the kernels' cumulative integrals). Each
particle's weights are normalised to sum to one over the whole (unbounded) grid, so mass is
conserved exactly for everything inside the grid (with slice spacing = slice thickness the
raw weights already sum to one: box and triangle SSPs both contain a box of one slice). The
CT number follows from the binned masses (:func:`~cyberknife_sim.truth.masses_to_hu`).

Noise (``noise_texture``): zero-mean Gaussian, ``noise_hu`` standard deviation per voxel,
independent between slices. At a fixed dose (mAs, CTDIvol) the quantum noise variance of a
reconstructed voxel is inversely proportional to the photons it collects, so to the slice
thickness: sigma ∝ 1 / sqrt(slice) (Brooks & Di Chiro, Med Phys 3:237, 1976: sigma² ∝
1 / (w³ h D) for pixel w, slice h, dose D; Goldman, J Nucl Med Technol 35:213, 2007). With
``noise_reference_slice_mm`` the given ``noise_hu`` is the sigma at that thickness and the
acquired slice gets ``noise_hu * sqrt(reference / slice)`` (:func:`noise_sigma_hu`); without
it ``noise_hu`` is used as is (the same sigma at every thickness: a dose that grows as the
slice thins). ``"fbp"`` (default) gives it filtered back-projection's texture: white noise
filtered in each slice so that its noise power spectrum is
``NPS(f) ∝ f · (0.5 + 0.5 cos(π f / f_N))²`` (a ramp times a Hann apodisation, f the radial
frequency, f_N the Nyquist frequency; zero at DC, peak near f_N/3 — the textbook shape of an
FBP NPS); ``"white"`` leaves it uncorrelated. Values are rounded to int16 and clipped at
-1024 HU (as scanners store them).

Slice-grid phase (``slice_phase`` of :func:`acquire_ct`): where the slices fall relative to
the anatomy is arbitrary on a real scanner (the couch start position); a sampled edge (a
vertebral endplate) is displaced by a phase-dependent fraction of a slice that averages to
zero over the phase, so studies of the slice thickness should vary or average it.

Breathing (:func:`planning_positions`): a planning CT is taken at exhale, at inhale (breath
hold), or free-breathing; a free-breathing (or 4D-averaged) CT is modelled as the mean image
of ``n_average`` breathing phases evenly spaced in time over one breath, each weighted
``1/n`` (a slow helical scan over many breaths averages the phases in the same way).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray
from scipy import fft as sfft

from ..anatomy.volume import Volume
from ._materials import REL_ATTEN_CM3_G
from ._particles import ParticleSet

if TYPE_CHECKING:
    from ._userct import TruthModel

__all__ = ["Weighted", "acquire_ct", "acquire_ct_on_grid", "bin_particles",
           "breath_phase_levels", "noise_sigma_hu", "planning_positions", "regular_grid"]

SSP = Literal["box", "triangle"]
NoiseTexture = Literal["white", "fbp"]
Phase = Literal["exhale", "inhale", "average"]
Weighted = tuple[ParticleSet, NDArray[np.float32], float]
"""A particle set, its positions (n, 3) CT mm and the weight of its image."""

_SSP_CODE = {"box": 0, "triangle": 1}
_MAX_TAPS = 64


@njit(cache=True)
def _cdf(y: float, half: float, kind: int) -> float:
    """Cumulative integral of a unit-area kernel (box of width 2*half, or triangle of
    half-base ``half`` = FWHM) from -inf to y."""
    if kind == 0:
        v = (y + half) / (2.0 * half)
        return min(1.0, max(0.0, v))
    if y <= -half:
        return 0.0
    if y >= half:
        return 1.0
    if y < 0.0:
        return (y + half) ** 2 / (2.0 * half * half)
    return 1.0 - (half - y) ** 2 / (2.0 * half * half)


@njit(cache=True)
def _taps(u: float, s: float, half: float, kind: int, n: int, idx, w) -> int:
    """1-D weights of a cube of width ``s`` (voxels) centred at ``u`` (voxel index) seen
    through a kernel; writes voxel indices and normalised weights, returns their count."""
    reach = half + 0.5 * s
    c0 = int(math.ceil(u - reach))
    c1 = int(math.floor(u + reach))
    m = 0
    total = 0.0
    for c in range(c0, c1 + 1):
        x = c - u
        v = (_cdf(x + 0.5 * s, half, kind) - _cdf(x - 0.5 * s, half, kind)) / s
        if v > 0.0 and m < idx.shape[0]:
            idx[m] = c
            w[m] = v
            total += v
            m += 1
    # normalise over the whole grid (in or out) so that the in-grid part is the mass kept
    k = 0
    for q in range(m):
        if 0 <= idx[q] < n:
            idx[k] = idx[q]
            w[k] = w[q] / total
            k += 1
    return k


@njit(cache=True)
def _bin(pos, val, s_vox, origin, step, t_vox, ssp_kind, grid):
    nk, nj, ni = grid.shape
    ii = np.empty(_MAX_TAPS, np.int64)
    wi = np.empty(_MAX_TAPS, np.float64)
    ij = np.empty(_MAX_TAPS, np.int64)
    wj = np.empty(_MAX_TAPS, np.float64)
    ik = np.empty(_MAX_TAPS, np.int64)
    wk = np.empty(_MAX_TAPS, np.float64)
    for p in range(pos.shape[0]):
        u = (pos[p, 0] - origin[0]) / step[0]
        v = (pos[p, 1] - origin[1]) / step[1]
        z = (pos[p, 2] - origin[2]) / step[2]
        mi = _taps(u, s_vox[0], 0.5, 0, ni, ii, wi)
        if mi == 0:
            continue
        mj = _taps(v, s_vox[1], 0.5, 0, nj, ij, wj)
        if mj == 0:
            continue
        half_k = 0.5 * t_vox if ssp_kind == 0 else t_vox
        mk = _taps(z, s_vox[2], half_k, ssp_kind, nk, ik, wk)
        x = val[p]
        for a in range(mk):
            xa = x * wk[a]
            for b in range(mj):
                xb = xa * wj[b]
                for c in range(mi):
                    grid[ik[a], ij[b], ii[c]] += xb * wi[c]


def _axis_aligned(ct_from_ijk: NDArray[np.float64]) -> tuple[NDArray, NDArray]:
    r = ct_from_ijk[:3, :3]
    if not np.allclose(r, np.diag(np.diag(r)), atol=1e-6 * np.abs(r).max()):
        raise ValueError("the CT grid must be axis-aligned with the CT frame (a diagonal "
                         f"ct_from_ijk, signs allowed); got direction columns {r.tolist()}")
    return ct_from_ijk[:3, 3].astype(np.float64), np.diag(r).astype(np.float64)


def _as_weighted(items: Sequence) -> list[Weighted]:
    out: list[Weighted] = []
    for n, item in enumerate(items):
        if len(item) == 2:
            ps, pos = item
            w = 1.0
        elif len(item) == 3:
            ps, pos, w = item
        else:
            raise ValueError(f"item {n}: expected (ParticleSet, positions) or "
                             f"(ParticleSet, positions, weight), got {len(item)} values")
        pos = np.asarray(pos, dtype=np.float32)
        if pos.shape != (len(ps), 3):
            raise ValueError(f"item {n} ({ps.name!r}): positions must have shape "
                             f"({len(ps)}, 3) (got {pos.shape})")
        out.append((ps, pos, float(w)))
    return out


def bin_particles(sets_and_positions: Sequence, ct_from_ijk: ArrayLike,
                  shape: tuple[int, int, int], *, slice_mm: float | None = None,
                  ssp: SSP = "triangle", quantity: Literal["attenuation", "mass"] = "mass",
                  material: int | None = None) -> NDArray[np.float64]:
    """Bin particle masses into the voxels of a CT grid through the scanner's footprint.

    Parameters
    ----------
    sets_and_positions : sequence of (ParticleSet, positions) or (ParticleSet, positions, weight)
        Positions (n, 3) in CT mm; a weight scales the set's masses (default 1).
    ct_from_ijk : array-like, shape (4, 4)
        Voxel (i, j, k) → CT mm; axis-aligned (diagonal direction, signs allowed).
    shape : tuple of int
        Grid shape ``(nk, nj, ni)``.
    slice_mm : float, optional
        SSP FWHM (mm); default the k spacing.
    ssp : {"box", "triangle"}
        Slice sensitivity profile.
    quantity : {"mass", "attenuation"}
        Bin masses (g), or water-equivalent masses ``rel_atten * mass`` (g) from which
        ``HU = -1000 + 1000 * value / voxel volume``.
    material : int, optional
        Bin only particles of this material index.

    Returns
    -------
    ndarray, shape (nk, nj, ni), float64
        Binned quantity per voxel (g).
    """
    if ssp not in _SSP_CODE:
        raise ValueError(f"ssp must be one of {sorted(_SSP_CODE)} (got {ssp!r})")
    if quantity not in ("mass", "attenuation"):
        raise ValueError(f"quantity must be 'mass' or 'attenuation' (got {quantity!r})")
    a = np.asarray(ct_from_ijk, dtype=np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"ct_from_ijk must be 4x4 (got {a.shape})")
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be 3 positive ints (nk, nj, ni) (got {shape})")
    origin, step = _axis_aligned(a)
    spacing = np.abs(step)
    t = spacing[2] if slice_mm is None else float(slice_mm)
    if not t > 0:
        raise ValueError(f"slice_mm must be > 0 (got {slice_mm})")
    grid = np.zeros(shape, np.float64)
    for ps, pos, w in _as_weighted(sets_and_positions):
        s_vox = ps.size_mm / spacing
        reach = s_vox + np.array([1.0, 1.0, 2.0 * t / spacing[2]])
        if np.any(reach + 2 > _MAX_TAPS):
            raise ValueError(f"{ps.name!r}: particles of {ps.size_mm} mm are too large for "
                             f"voxels of {spacing.tolist()} mm")
        mass = ps.mass_g.astype(np.float64) * w
        if quantity == "attenuation":
            mass = mass * REL_ATTEN_CM3_G[ps.material]
        sel = slice(None) if material is None else ps.material == material
        if material is not None and not np.any(sel):
            continue
        _bin(pos[sel], mass[sel], s_vox, origin, step, t / spacing[2], _SSP_CODE[ssp], grid)
    return grid


def _fbp_filter(nj: int, ni: int) -> NDArray[np.float64]:
    """Amplitude filter sqrt(NPS) on the rfft2 grid, scaled to unit output variance."""
    fj = np.fft.fftfreq(nj)[:, None]
    f = np.hypot(fj, np.fft.fftfreq(ni)[None, :])
    nps = np.where(f <= 0.5, f * (0.5 + 0.5 * np.cos(np.pi * f / 0.5)) ** 2, 0.0)
    scale = 1.0 / np.sqrt(nps.mean())
    fr = np.hypot(fj, np.fft.rfftfreq(ni)[None, :])
    nps_r = np.where(fr <= 0.5, fr * (0.5 + 0.5 * np.cos(np.pi * fr / 0.5)) ** 2, 0.0)
    return np.sqrt(nps_r) * scale


def noise_sigma_hu(noise_hu: float, *, slice_mm: float,
                   reference_slice_mm: float | None) -> float:
    """CT noise sigma (HU) of a ``slice_mm`` slice at the dose that gives ``noise_hu`` at
    ``reference_slice_mm``: ``noise_hu * sqrt(reference / slice)`` (quantum noise at fixed
    dose, see the module docstring); ``noise_hu`` itself when the reference is None."""
    if not (np.isfinite(slice_mm) and slice_mm > 0):
        raise ValueError(f"slice_mm must be > 0 (got {slice_mm})")
    if reference_slice_mm is None:
        return float(noise_hu)
    if not (np.isfinite(reference_slice_mm) and reference_slice_mm > 0):
        raise ValueError(f"noise_reference_slice_mm must be > 0 (got {reference_slice_mm})")
    return float(noise_hu) * math.sqrt(reference_slice_mm / slice_mm)


def acquire_ct_on_grid(sets_and_positions: Sequence, ct_from_ijk: ArrayLike,
                       shape: tuple[int, int, int], *, slice_mm: float | None = None,
                       ssp: SSP = "triangle", noise_hu: float = 10.0,
                       noise_texture: NoiseTexture = "fbp",
                       noise_reference_slice_mm: float | None = None,
                       rng: np.random.Generator | None = None, name: str = "acquired CT") -> Volume:
    """Simulated CT of particles on a given axis-aligned grid (see the module docstring).

    Parameters
    ----------
    sets_and_positions : sequence of (ParticleSet, positions[, weight])
        The truth at the moment of the scan (positions (n, 3) CT mm); weights make a mean
        image of several breathing phases (:func:`planning_positions`).
    ct_from_ijk : array-like, shape (4, 4)
        Voxel (i, j, k) → CT mm, diagonal direction (signs allowed).
    shape : tuple of int
        ``(nk, nj, ni)``.
    slice_mm : float, optional
        Slice thickness = SSP FWHM (mm); default the k spacing.
    ssp : {"triangle", "box"}
        Slice sensitivity profile.
    noise_hu : float
        Noise standard deviation per voxel (HU); 0 for none. At ``noise_reference_slice_mm``
        if that is given (then scaled by ``sqrt(reference / slice)``, fixed dose).
    noise_texture : {"fbp", "white"}
        Noise power spectrum in-plane.
    noise_reference_slice_mm : float, optional
        Slice thickness (mm) at which ``noise_hu`` holds; None: ``noise_hu`` at any slice.
    rng : numpy.random.Generator
        Required when ``noise_hu > 0``.
    name : str
        Name of the volume.

    Returns
    -------
    Volume
        int16 HU on the grid.
    """
    if noise_texture not in ("fbp", "white"):
        raise ValueError(f"noise_texture must be 'fbp' or 'white' (got {noise_texture!r})")
    if not (np.isfinite(noise_hu) and noise_hu >= 0):
        raise ValueError(f"noise_hu must be >= 0 (got {noise_hu})")
    if noise_hu > 0 and rng is None:
        raise ValueError("noise_hu > 0 needs rng (a numpy.random.Generator)")
    a = np.asarray(ct_from_ijk, dtype=np.float64)
    t_mm = abs(float(a[2, 2])) if slice_mm is None else float(slice_mm)
    sigma_hu = noise_sigma_hu(noise_hu, slice_mm=t_mm,
                              reference_slice_mm=noise_reference_slice_mm)
    grid = bin_particles(sets_and_positions, a, shape, slice_mm=slice_mm, ssp=ssp,
                         quantity="attenuation")
    vol_cm3 = abs(float(np.linalg.det(a[:3, :3]))) / 1000.0
    hu = -1000.0 + 1000.0 * grid / vol_cm3            # = masses_to_hu, binned in one grid
    if noise_hu > 0:
        noise = rng.standard_normal(hu.shape, dtype=np.float32)
        if noise_texture == "fbp":
            h = _fbp_filter(hu.shape[1], hu.shape[2]).astype(np.float32)
            noise = sfft.irfft2(sfft.rfft2(noise, axes=(1, 2)) * h, s=hu.shape[1:],
                                axes=(1, 2))
        hu += sigma_hu * noise
    out = np.clip(np.rint(hu), -1024, 32767).astype(np.int16)
    return Volume(out, a, name=name)


def regular_grid(origin_ct_mm: ArrayLike, *, pixel_mm: float = 1.0,
                 slice_mm: float = 1.5) -> NDArray[np.float64]:
    """``ct_from_ijk`` of an identity-direction (LPS) grid: voxel (0, 0, 0) at the origin
    (CT mm), spacing ``(pixel, pixel, slice)`` mm."""
    o = np.asarray(origin_ct_mm, dtype=np.float64)
    if o.shape != (3,) or not np.all(np.isfinite(o)):
        raise ValueError(f"origin_ct_mm must be 3 finite numbers (got {o.tolist()})")
    if not (pixel_mm > 0 and slice_mm > 0):
        raise ValueError(f"pixel_mm and slice_mm must be > 0 (got {pixel_mm}, {slice_mm})")
    a = np.diag([pixel_mm, pixel_mm, slice_mm, 1.0])
    a[:3, 3] = o
    return a


def acquire_ct(sets_and_positions: Sequence, *, origin_ct_mm: ArrayLike,
               shape: tuple[int, int, int], pixel_mm: float = 1.0, slice_mm: float = 1.5,
               ssp: SSP = "triangle", noise_hu: float = 10.0,
               noise_texture: NoiseTexture = "fbp",
               noise_reference_slice_mm: float | None = None, slice_phase: float = 0.0,
               rng: np.random.Generator | None = None, name: str = "acquired CT") -> Volume:
    """Simulated planning CT of the truth on a regular LPS grid (see the module docstring).

    Parameters
    ----------
    sets_and_positions : sequence of (ParticleSet, positions[, weight])
        The truth at scan time; positions (n, 3) in CT mm.
    origin_ct_mm : array-like, shape (3,)
        Centre of voxel (0, 0, 0) (CT mm, LPS); the direction is the identity.
    shape : tuple of int
        ``(nk, nj, ni)`` (slices, rows, columns).
    pixel_mm : float
        In-plane pixel (mm), typically 0.5-1.5.
    slice_mm : float
        Slice thickness = slice spacing = SSP FWHM (mm), typically 0.625-3.0.
    ssp, noise_hu, noise_texture, noise_reference_slice_mm, rng, name
        As :func:`acquire_ct_on_grid`.
    slice_phase : float
        Shift of the slice grid along z, as a fraction of ``slice_mm`` in [0, 1): slice k
        is centred at ``origin_z + (k + slice_phase) * slice_mm`` (the arbitrary couch
        position of a real scan; 0: at the origin).

    Returns
    -------
    Volume
        int16 HU.
    """
    if not (np.isfinite(slice_phase) and 0.0 <= slice_phase < 1.0):
        raise ValueError(f"slice_phase must be within [0, 1) (got {slice_phase})")
    o = np.asarray(origin_ct_mm, dtype=np.float64) + [0.0, 0.0, slice_phase * slice_mm]
    a = regular_grid(o, pixel_mm=pixel_mm, slice_mm=slice_mm)
    return acquire_ct_on_grid(sets_and_positions, a, shape, slice_mm=slice_mm, ssp=ssp,
                              noise_hu=noise_hu, noise_texture=noise_texture,
                              noise_reference_slice_mm=noise_reference_slice_mm, rng=rng,
                              name=name)


def breath_phase_levels(n: int, *, inhale_level: float = 1.0,
                        lujan_n: int = 2) -> NDArray[np.float64]:
    """Breath levels of ``n`` phases evenly spaced in time over one breath.

    The breath is the project's Lujan cycle ``level(u) = inhale_level * sin^(2 lujan_n)(pi u)``
    (:mod:`cyberknife_sim.motion`), sampled at ``u = (j + 0.5) / n``; it dwells near exhale.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 (got {n})")
    u = (np.arange(n) + 0.5) / n
    return inhale_level * np.sin(np.pi * u) ** (2 * lujan_n)


def planning_positions(truth: TruthModel, phase: Phase, *, n_average: int = 8,
                       inhale_level: float = 1.0,
                       target_offset_at_inhale_ct_mm: ArrayLike = (0.0, 0.0, 0.0),
                       ) -> list[Weighted]:
    """The truth as a planning CT sees it, ready for :func:`acquire_ct`.

    Parameters
    ----------
    truth : TruthModel
        Anything with ``positions_ct(breath_level, target_offset_ct_mm)`` returning
        (ParticleSet, positions) pairs or (ParticleSet, positions, weight) triples.
    phase : {"exhale", "inhale", "average"}
        Exhale (level 0, no offset), inhale breath hold (``inhale_level``, the full offset),
        or a free-breathing mean of ``n_average`` phases of one breath
        (:func:`breath_phase_levels`), each at its level with the offset scaled by
        ``level / inhale_level``, each weighted ``1 / n_average``.
    n_average : int
        Phases in the average.
    inhale_level : float
        Breath level at inhale.
    target_offset_at_inhale_ct_mm : array-like, shape (3,)
        Target displacement at inhale (CT mm).

    Returns
    -------
    list of (ParticleSet, positions (n, 3) float32 CT mm, weight)
    """
    if phase not in ("exhale", "inhale", "average"):
        raise ValueError(f"phase must be one of 'exhale', 'inhale', 'average' (got {phase!r})")
    off = np.asarray(target_offset_at_inhale_ct_mm, dtype=np.float64)
    if off.shape != (3,):
        raise ValueError(f"target_offset_at_inhale_ct_mm must have shape (3,) (got {off.shape})")
    if phase == "exhale":
        plan = [(0.0, 1.0)]
    elif phase == "inhale":
        plan = [(inhale_level, 1.0)]
    else:
        plan = [(lv, 1.0 / n_average)
                for lv in breath_phase_levels(n_average, inhale_level=inhale_level)]
    out: list[Weighted] = []
    for level, w in plan:
        scale = level / inhale_level if inhale_level else 0.0
        for ps, pos, w0 in _as_weighted(truth.positions_ct(float(level), off * scale)):
            out.append((ps, pos, w0 * w))
    return out

