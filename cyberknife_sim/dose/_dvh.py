"""Dose-volume histograms and the plan metrics of the target and the organs at risk.

Conventions (voxel-based, every voxel of a mask counts its whole volume ``voxel_cc``):

- the cumulative DVH ``V(d)`` is the volume of voxels receiving at least ``d`` Gy;
- ``D(V)``, the minimum dose to the hottest ``V`` cc, is read from the voxel doses sorted
  hottest first, ``d_1 ≥ d_2 ≥ …``, as the piecewise-linear curve through the points
  ``(n·v, d_n)``: the hottest ``n`` whole voxels have minimum ``d_n``, and a volume between
  ``n·v`` and ``(n+1)·v`` interpolates linearly to ``d_{n+1}``; below one voxel it is the
  maximum, beyond the structure's volume its minimum. For a dose that is constant within each
  voxel this is exact; for a smooth dose sampled at voxel centres it reads high by at most
  half the dose step between neighbouring voxels.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError

__all__ = ["cumulative_dvh", "dose_at_percent_gy", "dose_at_volume_gy", "dvh", "oar_metrics",
           "target_metrics", "volume_at_dose_cc"]


def _doses(dose_gy: ArrayLike, mask: ArrayLike) -> NDArray[np.float64]:
    """Doses of the mask's voxels, sorted hottest first."""
    d = np.asarray(dose_gy)
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        raise InputError(f"dvh: mask must be a bool array (got {m.dtype})")
    if d.shape != m.shape:
        raise InputError(f"dvh: dose shape {d.shape} differs from mask shape {m.shape}")
    v = d[m].astype(np.float64)
    if v.size == 0:
        raise InputError("dvh: the mask selects no voxel")
    if not np.all(np.isfinite(v)):
        raise InputError("dvh: dose holds NaN or infinite values inside the mask")
    return -np.sort(-v)


def _check_voxel(voxel_cc: float) -> float:
    if not (np.isfinite(voxel_cc) and voxel_cc > 0):
        raise InputError(f"dvh: voxel_cc must be positive (got {voxel_cc})")
    return float(voxel_cc)


def cumulative_dvh(dose_gy: ArrayLike, mask: ArrayLike, voxel_cc: float, *,
                   bins_gy: float | ArrayLike = 0.01
                   ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Cumulative DVH of one structure.

    Parameters
    ----------
    dose_gy : array-like
        Dose (Gy) on a grid.
    mask : array-like of bool, same shape
        The structure on that grid.
    voxel_cc : float
        Volume of one voxel (cm³).
    bins_gy : float or array-like
        A dose step (Gy; the axis runs from 0 to one step above the maximum), or the dose
        levels themselves (Gy, ascending).

    Returns
    -------
    dose_axis_gy : ndarray, shape (n,)
        Dose levels (Gy).
    volume_cc : ndarray, shape (n,)
        Volume receiving at least each level (cm³); non-increasing.
    """
    v = _check_voxel(voxel_cc)
    d = _doses(dose_gy, mask)
    if np.ndim(bins_gy) == 0:
        step = float(bins_gy)
        if not (np.isfinite(step) and step > 0):
            raise InputError(f"dvh: bins_gy step must be positive (got {bins_gy})")
        axis = step * np.arange(int(np.floor(max(d[0], 0.0) / step)) + 2)
    else:
        axis = np.asarray(bins_gy, dtype=np.float64).ravel()
        if axis.size == 0 or np.any(np.diff(axis) <= 0) or not np.all(np.isfinite(axis)):
            raise InputError("dvh: bins_gy levels must be finite and ascending")
    ascending = d[::-1]
    n_at_least = d.size - np.searchsorted(ascending, axis, side="left")
    return axis, n_at_least * v


dvh = cumulative_dvh
"""Alias of :func:`cumulative_dvh`."""


def _d_at_n(d: NDArray[np.float64], n_vox: float) -> float:
    """D at ``n_vox`` voxels of volume (fractional), on the sorted-hottest-first doses."""
    if n_vox <= 1.0:
        return float(d[0])
    if n_vox >= d.size:
        return float(d[-1])
    lo = int(np.floor(n_vox))
    frac = n_vox - lo
    return float(d[lo - 1] + frac * (d[lo] - d[lo - 1]))


def dose_at_volume_gy(dose_gy: ArrayLike, mask: ArrayLike, voxel_cc: float,
                      volume_cc: float) -> float:
    """Minimum dose to the hottest ``volume_cc`` of the structure (Gy), e.g. D0.035cc.

    Interpolates within voxels (module docstring); a volume below one voxel gives the maximum,
    one beyond the structure gives its minimum.
    """
    v = _check_voxel(voxel_cc)
    if not (np.isfinite(volume_cc) and volume_cc >= 0):
        raise InputError(f"dvh: volume_cc must be >= 0 (got {volume_cc})")
    return _d_at_n(_doses(dose_gy, mask), float(volume_cc) / v)


def dose_at_percent_gy(dose_gy: ArrayLike, mask: ArrayLike, percent: float) -> float:
    """Minimum dose to the hottest ``percent`` % of the structure (Gy), e.g. D95, D2%."""
    if not (np.isfinite(percent) and 0 <= percent <= 100):
        raise InputError(f"dvh: percent must be within 0..100 (got {percent})")
    d = _doses(dose_gy, mask)
    return _d_at_n(d, percent / 100.0 * d.size)


def volume_at_dose_cc(dose_gy: ArrayLike, mask: ArrayLike, voxel_cc: float,
                      level_gy: float) -> float:
    """Volume of the structure receiving at least ``level_gy`` (cm³), e.g. V10Gy."""
    v = _check_voxel(voxel_cc)
    d = _doses(dose_gy, mask)
    return float(np.count_nonzero(d >= level_gy)) * v


def target_metrics(dose_gy: ArrayLike, target_mask: ArrayLike, voxel_cc: float,
                   prescription_gy: float, body_mask: ArrayLike | None = None
                   ) -> dict[str, float | None]:
    """Coverage, DVH points, conformity and gradient of the target.

    Parameters
    ----------
    dose_gy : array-like
        Dose (Gy) on the dose grid.
    target_mask : array-like of bool
        The target (PTV) on that grid.
    voxel_cc : float
        Dose-voxel volume (cm³).
    prescription_gy : float
        The prescription isodose level (Gy).
    body_mask : array-like of bool, optional
        Where isodose volumes are counted (default: the whole grid). The grid must enclose
        the 50 % isodose for the gradient index to mean anything.

    Returns
    -------
    dict
        ``coverage`` (fraction of the target at ≥ prescription), ``d95_gy``, ``d98_gy``,
        ``d2pct_gy``, ``dmean_gy``, ``dmin_gy``, ``dmax_gy``, ``volume_cc`` (target),
        ``piv_cc`` (prescription isodose volume), ``conformity_index_paddick``
        (TV_PIV² / (TV · PIV), Paddick, J Neurosurg 2000;93 Suppl 3:219), ``gradient_index``
        (V(50 % Rx) / PIV, Paddick & Lippitz, J Neurosurg 2006;105 Suppl:194; None when no
        voxel reaches the prescription).
    """
    v = _check_voxel(voxel_cc)
    if not (np.isfinite(prescription_gy) and prescription_gy > 0):
        raise InputError(f"dvh: prescription_gy must be positive (got {prescription_gy})")
    dose = np.asarray(dose_gy)
    tmask = np.asarray(target_mask)
    d = _doses(dose, tmask)
    region = np.ones(dose.shape, dtype=bool) if body_mask is None else np.asarray(body_mask)
    if region.shape != dose.shape or region.dtype != np.bool_:
        raise InputError(f"dvh: body_mask must be bool of shape {dose.shape}")
    rx = float(prescription_gy)
    tv = d.size * v
    tv_piv = float(np.count_nonzero(d >= rx)) * v
    piv = float(np.count_nonzero(region & (dose >= rx))) * v
    v50 = float(np.count_nonzero(region & (dose >= 0.5 * rx))) * v
    return {
        "coverage": tv_piv / tv,
        "d95_gy": _d_at_n(d, 0.95 * d.size),
        "d98_gy": _d_at_n(d, 0.98 * d.size),
        "d2pct_gy": _d_at_n(d, 0.02 * d.size),
        "dmean_gy": float(d.mean()),
        "dmin_gy": float(d[-1]),
        "dmax_gy": float(d[0]),
        "volume_cc": tv,
        "piv_cc": piv,
        "conformity_index_paddick": tv_piv ** 2 / (tv * piv) if piv > 0 else 0.0,
        "gradient_index": v50 / piv if piv > 0 else None,
    }


def _volume_key(limit_gy: float) -> str:
    """``v10gy_cc`` for 10 Gy, ``v12p5gy_cc`` for 12.5 Gy."""
    text = f"{limit_gy:g}".replace(".", "p").replace("-", "m")
    return f"v{text}gy_cc"


def oar_metrics(dose_gy: ArrayLike, mask: ArrayLike, voxel_cc: float, *,
                limit_gy: float = 10.0) -> dict[str, float]:
    """Organ-at-risk metrics (e.g. the cord's, AAPM TG-101: Dmax, D0.035cc, V10Gy).

    Returns
    -------
    dict
        ``dmax_gy``, ``d0035cc_gy`` (minimum dose to the hottest 0.035 cc; the minimum dose
        when the organ is smaller), ``v<limit>gy_cc`` (volume at ≥ ``limit_gy``; ``v10gy_cc``
        for the default), ``dmean_gy``, ``volume_cc``.
    """
    v = _check_voxel(voxel_cc)
    if not math.isfinite(limit_gy):
        raise InputError(f"dvh: limit_gy must be finite (got {limit_gy})")
    d = _doses(dose_gy, mask)
    return {
        "dmax_gy": float(d[0]),
        "d0035cc_gy": _d_at_n(d, 0.035 / v),
        _volume_key(float(limit_gy)): float(np.count_nonzero(d >= limit_gy)) * v,
        "dmean_gy": float(d.mean()),
        "volume_cc": d.size * v,
    }
