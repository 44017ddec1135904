"""Flat-panel detector pieces: CsI:Tl absorption, fixed-pattern maps, blur, scatter, defects.

Free functions on plain arrays; :class:`~._model.LiveXrayPhysics` strings them together.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numba
import numpy as np
from numpy.typing import NDArray

from ._attenuation import DENSITY_G_PER_CM3, mass_attenuation_cm2_per_g

__all__ = ["COUNT_MAX", "DetectorMaps", "blur", "csi_absorption_efficiency",
           "defect_plan", "detector_maps", "gaussian_kernel", "read_out", "replace_defects",
           "replace_defects_planned", "scatter_signal",
           "wide_blur"]

COUNT_MAX = 65535
"""Full scale of the 16-bit read-out (counts)."""

_MAPS_STREAM = 0x6D617073  # "maps": the detector's fixed-pattern stream, apart from exposures


def csi_absorption_efficiency(energies_kev: NDArray[np.float64], *, thickness_mm: float,
                              packing_fraction: float) -> NDArray[np.float64]:
    """Fraction of normally incident photons that interact in the CsI layer.

    ``η(E) = 1 − exp(−(μ/ρ)_CsI(E) · ρ_CsI · f · t)`` with ρ_CsI = 4.51 g/cm³ and the
    packing (fill) fraction ``f`` of the columnar layer.

    Parameters
    ----------
    energies_kev : ndarray, shape (n,)
        Photon energies (keV).
    thickness_mm : float
        Scintillator thickness (mm).
    packing_fraction : float
        Fill factor, 0–1.

    Returns
    -------
    ndarray, shape (n,)
        Absorption efficiency, 0–1.
    """
    mu = mass_attenuation_cm2_per_g("csi", energies_kev)
    areal = DENSITY_G_PER_CM3["csi"] * packing_fraction * thickness_mm / 10.0  # g/cm²
    return -np.expm1(-mu * areal)


@dataclass(frozen=True, eq=False)
class DetectorMaps:
    """Fixed pattern of one detector (the same every frame).

    Attributes
    ----------
    gain : ndarray, shape (rows, cols), float64
        Relative pixel gain (mean 1).
    offset_counts : ndarray, shape (rows, cols), float64
        Dark offset (counts).
    defect : ndarray, shape (rows, cols), bool
        Defective pixels.
    defect_counts : ndarray, shape (n_defects,), uint16
        What each defective pixel reads (0 or 65535), in ``np.flatnonzero(defect)`` order.
    """

    gain: NDArray[np.float64]
    offset_counts: NDArray[np.float64]
    defect: NDArray[np.bool_]
    defect_counts: NDArray[np.uint16]


def detector_maps(shape: tuple[int, int], *, detector_seed: int, gain_sigma: float,
                  offset_counts: float, offset_sigma_counts: float, dead_fraction: float,
                  dead_mode: str) -> DetectorMaps:
    """Gain, offset and defect maps from the detector's own seed (never the exposure rng).

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)``.
    detector_seed : int
        Identity of the detector: the same seed gives the same maps.
    gain_sigma : float
        Relative gain spread (Gaussian, clipped to ±4 σ).
    offset_counts, offset_sigma_counts : float
        Mean and spread of the dark offset (counts).
    dead_fraction : float
        Fraction of defective pixels (rounded to a whole number of pixels).
    dead_mode : {"zero", "saturate", "mixed"}
        Reading of a defective pixel.
    """
    if dead_mode not in ("zero", "saturate", "mixed"):
        raise ValueError(f"dead_mode must be 'zero', 'saturate' or 'mixed' (got {dead_mode!r})")
    rng = np.random.default_rng([int(detector_seed), _MAPS_STREAM])
    g = 1.0 + gain_sigma * np.clip(rng.standard_normal(shape), -4.0, 4.0)
    off = offset_counts + offset_sigma_counts * rng.standard_normal(shape)
    off = np.clip(off, 0.0, COUNT_MAX)
    n = shape[0] * shape[1]
    n_dead = int(round(dead_fraction * n))
    idx = np.sort(rng.choice(n, size=n_dead, replace=False)) if n_dead else np.zeros(0, int)
    defect = np.zeros(n, dtype=bool)
    defect[idx] = True
    if dead_mode == "zero":
        values = np.zeros(n_dead, dtype=np.uint16)
    elif dead_mode == "saturate":
        values = np.full(n_dead, COUNT_MAX, dtype=np.uint16)
    else:
        values = np.where(rng.random(n_dead) < 0.5, 0, COUNT_MAX).astype(np.uint16)
    for a in (g, off, defect, values):
        a.flags.writeable = False
    return DetectorMaps(g, off, defect.reshape(shape), values)


def gaussian_kernel(sigma_px: float) -> NDArray[np.float64]:
    """Normalized 1-D Gaussian, radius ``ceil(4 σ)`` (``[1.0]`` for σ < 0.05 px)."""
    if sigma_px < 0.05:
        return np.ones(1)
    radius = int(np.ceil(4.0 * sigma_px))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma_px) ** 2)
    return k / k.sum()


def blur(image: NDArray[np.float64], kernel: NDArray[np.float64]) -> NDArray[np.float64]:
    """Separable blur with reflected borders (identity for a one-tap kernel)."""
    if kernel.size == 1:
        return image
    return cv2.sepFilter2D(image, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT)


def wide_blur(image: NDArray[np.float64], sigma_px: float) -> NDArray[np.float64]:
    """Gaussian blur of ``sigma_px``; wide kernels run on an image downsampled to about four
    pixels per sigma, then upsampled bilinearly (the result is smooth anyway)."""
    factor = int(sigma_px // 4)
    if factor < 2:
        return blur(image, gaussian_kernel(sigma_px))
    rows, cols = image.shape
    small_wh = (max(1, -(-cols // factor)), max(1, -(-rows // factor)))
    small = cv2.resize(image, small_wh, interpolation=cv2.INTER_AREA)
    kx = gaussian_kernel(sigma_px * small_wh[0] / cols)
    ky = gaussian_kernel(sigma_px * small_wh[1] / rows)
    small = cv2.sepFilter2D(small, cv2.CV_64F, kx, ky, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (cols, rows), interpolation=cv2.INTER_LINEAR)


def scatter_signal(primary: NDArray[np.float64], source: NDArray[np.float64], *,
                   scatter_fraction: float, sigma_px: float) -> NDArray[np.float64]:
    """Scatter reaching the detector, ``κ · G_σ * (P · L)`` (same units as ``primary``).

    Photons scattered along a path scale with its attenuation ``L`` and the primary ``P``
    that gets through; they reach the detector widely spread (Gaussian of ``sigma_px``).
    ``κ`` is set per image so that ``S / (P + S) = scatter_fraction`` over the central 5 %
    of the detector (an open field has no scatter).

    Parameters
    ----------
    primary : ndarray, shape (rows, cols)
        Primary signal ``P`` (any units).
    source : ndarray, shape (rows, cols)
        ``P · L``, with ``L`` the effective ``−ln`` transmission of the primary (≥ 0).
    scatter_fraction : float
        Scatter-to-total ratio in the center, 0–1.
    sigma_px : float
        Kernel width (pixels).
    """
    if scatter_fraction <= 0:
        return np.zeros_like(primary)
    spread = wide_blur(source, sigma_px)
    rows, cols = primary.shape
    hr, hc = max(1, int(round(rows * 0.112))), max(1, int(round(cols * 0.112)))
    center = (slice(max(0, rows // 2 - hr), rows // 2 + hr + 1),
              slice(max(0, cols // 2 - hc), cols // 2 + hc + 1))
    p_c, s_c = float(primary[center].mean()), float(spread[center].mean())
    if s_c <= 1e-12 * max(p_c, 1e-300):
        return np.zeros_like(primary)
    spread *= scatter_fraction / (1.0 - scatter_fraction) * p_c / s_c
    return spread


def replace_defects(image: NDArray[np.float64], defect: NDArray[np.bool_]) -> NDArray:
    """Replace defective pixels by the median of their valid 8-neighbours (in place).

    A defect with no valid neighbour takes the median of the valid 5×5 neighbourhood, and
    the image median if that is empty too.

    Parameters
    ----------
    image : ndarray, shape (rows, cols), float
        Image to correct.
    defect : ndarray, shape (rows, cols), bool
        Defect map.
    """
    rr, cc = np.nonzero(defect)
    if rr.size == 0:
        return image
    rows, cols = image.shape
    for radius in (1, 2):
        offsets = [(dr, dc) for dr in range(-radius, radius + 1)
                   for dc in range(-radius, radius + 1) if dr or dc]
        vals = np.full((len(offsets), rr.size), np.nan)
        for i, (dr, dc) in enumerate(offsets):
            r2, c2 = rr + dr, cc + dc
            ok = (r2 >= 0) & (r2 < rows) & (c2 >= 0) & (c2 < cols)
            r2c, c2c = np.clip(r2, 0, rows - 1), np.clip(c2, 0, cols - 1)
            ok &= ~defect[r2c, c2c]
            vals[i, ok] = image[r2c[ok], c2c[ok]]
        have = np.any(np.isfinite(vals), axis=0)
        med = np.full(rr.size, np.nan)
        med[have] = np.nanmedian(vals[:, have], axis=0)
        image[rr[have], cc[have]] = med[have]
        rr, cc = rr[~have], cc[~have]
        if rr.size == 0:
            return image
    image[rr, cc] = np.median(image[~defect]) if np.any(~defect) else 0.0
    return image


def defect_plan(defect: NDArray[np.bool_]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The neighbours :func:`replace_defects` reads for each defect of a fixed map.

    Returns the defects' flat indices (``np.nonzero`` order) and, per defect, the flat
    indices of its valid 8-neighbours, or if none its valid 5×5 neighbours (row-major,
    padded with −1; a row of −1: none, the image median is used).
    """
    rr, cc = np.nonzero(defect)
    rows, cols = defect.shape
    nbr = np.full((rr.size, 24), -1, np.int64)
    todo = np.ones(rr.size, bool)
    for radius in (1, 2):
        offsets = [(dr, dc) for dr in range(-radius, radius + 1)
                   for dc in range(-radius, radius + 1) if dr or dc]
        for i in np.nonzero(todo)[0]:
            found = [(rr[i] + dr) * cols + cc[i] + dc for dr, dc in offsets
                     if 0 <= rr[i] + dr < rows and 0 <= cc[i] + dc < cols
                     and not defect[rr[i] + dr, cc[i] + dc]]
            if found:
                nbr[i, :len(found)] = found
                todo[i] = False
    return rr * cols + cc, nbr


@numba.njit(cache=True)
def _replace_planned(flat, index, nbr):  # pragma: no cover
    """Median of the listed neighbours into each defect (in place); returns the defects
    with no neighbour listed (−1), left for the caller."""
    left = np.zeros(index.size, np.bool_)
    vals = np.empty(nbr.shape[1])
    out = np.empty(index.size)
    for i in range(index.size):
        k = 0
        while k < nbr.shape[1] and nbr[i, k] >= 0:
            vals[k] = flat[nbr[i, k]]
            k += 1
        if k == 0:
            left[i] = True
            continue
        v = np.sort(vals[:k])
        out[i] = v[k // 2] if k % 2 else (v[k // 2 - 1] + v[k // 2]) / 2.0
    for i in range(index.size):  # all medians from the uncorrected image, as the reference
        if not left[i]:
            flat[index[i]] = out[i]
    return left


def replace_defects_planned(image: NDArray[np.float64],
                            plan: tuple[NDArray[np.int64], NDArray[np.int64]],
                            defect: NDArray[np.bool_]) -> NDArray[np.float64]:
    """:func:`replace_defects` with the neighbour lists of :func:`defect_plan` (in place;
    the same values, without searching the map each frame).

    Parameters
    ----------
    image : ndarray, shape (rows, cols), float64, C-contiguous
        Image to correct.
    plan : tuple
        ``defect_plan(defect)``.
    defect : ndarray, shape (rows, cols), bool
        The defect map the plan was made from.
    """
    index, nbr = plan
    if index.size == 0:
        return image
    left = _replace_planned(image.reshape(-1), index, nbr)
    if left.any():
        image.flat[index[left]] = np.median(image[~defect]) if np.any(~defect) else 0.0
    return image


@numba.njit(parallel=True, cache=True)
def _read_out(signal, previous, lag, offset, gain, noise, sigma, out):  # pragma: no cover
    rows, cols = signal.shape
    has_prev = previous.shape[0] == rows
    has_noise = noise.shape[0] == rows
    for r in numba.prange(rows):
        for c in range(cols):
            rec = (1.0 - lag) * signal[r, c]
            if has_prev:
                rec += lag * previous[r, c]
            v = offset[r, c] + gain[r, c] * rec
            if has_noise:
                v += sigma * noise[r, c]
            v = np.rint(v)
            out[r, c] = 0 if v < 0.0 else (65535 if v > 65535.0 else int(v))


def read_out(signal_kev: NDArray[np.float64], previous_kev: NDArray[np.float64] | None, *,
             lag: float, offset_counts: NDArray[np.float64],
             gain_counts_per_kev: NDArray[np.float64], noise: NDArray[np.float32] | None,
             sigma_counts: float) -> NDArray[np.uint16]:
    """Lag, gain, offset, electronic noise, rounding and 16-bit clipping in one pass.

    ``counts = rint(offset + gain · ((1 − lag) · signal + lag · previous) + σ · noise)``,
    clipped to 0…65535.

    Parameters
    ----------
    signal_kev, previous_kev : ndarray, shape (rows, cols)
        This frame's and the previous frame's detected signal (keV; previous may be None).
    lag : float
        Fraction of a frame's signal released in the next frame.
    offset_counts, gain_counts_per_kev : ndarray, shape (rows, cols)
        Offset map (counts) and per-pixel gain (counts per keV).
    noise : ndarray, shape (rows, cols), float32, or None
        Standard normal draws for the electronic noise.
    sigma_counts : float
        Electronic noise standard deviation (counts).

    Returns
    -------
    ndarray, shape (rows, cols), uint16
    """
    empty = np.zeros((0, 0))
    out = np.empty(signal_kev.shape, dtype=np.uint16)
    _read_out(np.ascontiguousarray(signal_kev, dtype=np.float64),
              empty if previous_kev is None else previous_kev, float(lag), offset_counts,
              gain_counts_per_kev, np.zeros((0, 0), np.float32) if noise is None else noise,
              float(sigma_counts), out)
    return out
