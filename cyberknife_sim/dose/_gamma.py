"""Gamma index of an evaluated dose against a reference dose on a dose grid (pymedphys).

Gamma (Low et al., Med Phys 1998;25:656) at a reference point r is
``min over evaluated points e of sqrt(|r - e|² / DTA² + (D_e(e) - D_r(r))² / ΔD²)``, with
``ΔD = dose_percent / 100 × max(reference)`` (global) or ``× D_r(r)`` (local); a point passes when
gamma ≤ 1. The search and the sub-voxel interpolation of the evaluated dose are pymedphys's
(``pymedphys.gamma``), not ours.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputError
from ._grid import DoseGrid

__all__ = ["gamma_pass_rate"]


def _check(reference_gy, evaluated_gy, grid, mask):
    ref = np.asarray(reference_gy, dtype=np.float64)
    ev = np.asarray(evaluated_gy, dtype=np.float64)
    for name, a in (("reference_gy", ref), ("evaluated_gy", ev)):
        if a.shape != grid.shape:
            raise InputError(f"gamma: {name} has shape {a.shape}, the grid {grid.shape}")
        if not np.all(np.isfinite(a)):
            raise InputError(f"gamma: {name} holds non-finite values")
    if ref.max() <= 0:
        raise InputError("gamma: the reference dose is zero everywhere")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != grid.shape:
            raise InputError(f"gamma: mask has shape {mask.shape}, the grid {grid.shape}")
    return ref, ev, mask


def gamma_pass_rate(reference_gy: ArrayLike, evaluated_gy: ArrayLike, grid: DoseGrid, *,
                    dose_percent: float = 3.0, dta_mm: float = 2.0,
                    lower_cutoff_percent: float = 10.0, local: bool = False,
                    mask: ArrayLike | None = None, max_gamma: float = 1.1,
                    interp_fraction: int = 5, random_subset: int | None = None,
                    rng: np.random.Generator | None = None,
                    pass_rate_only: bool = False) -> dict:
    """Gamma pass rate of ``evaluated_gy`` against ``reference_gy`` on the same dose grid.

    Parameters
    ----------
    reference_gy, evaluated_gy : array-like, shape grid.shape ``[k, j, i]``
        Doses (Gy) on ``grid`` (the planned dose is usually the reference).
    grid : DoseGrid
        Gives the coordinates (CT mm): axes ``(z, y, x)`` for the array axes ``(k, j, i)``.
    dose_percent : float
        Dose-difference criterion, percent of the reference maximum (global) or of the
        reference point's dose (``local=True``).
    dta_mm : float
        Distance-to-agreement criterion (mm).
    lower_cutoff_percent : float
        Reference points below this percent of the reference maximum are not evaluated.
    local : bool
        Local instead of global dose normalisation.
    mask : array-like of bool, shape grid.shape, optional
        Evaluate only these reference points (e.g. a structure); the search still runs over
        the whole evaluated dose.
    max_gamma : float
        Search stops at gamma ``max_gamma``; larger values are reported as ``max_gamma``, so
        ``mean`` and ``p95`` are of the capped values. 1.1 suffices for a pass rate.
    interp_fraction : int
        The evaluated dose is interpolated at ``dta_mm / interp_fraction`` steps (pymedphys).
    random_subset : int, optional
        Evaluate only this many reference points, drawn by ``rng`` (default: a generator
        seeded with 0, so repeat calls agree) among those above the cutoff and in ``mask``.
    rng : numpy.random.Generator, optional
        Draws ``random_subset``.
    pass_rate_only : bool
        Skip the distance search at points that pass at zero distance (dose difference
        within the criterion there, so gamma ≤ 1 exactly): the same ``pass_rate``, much
        faster when the doses mostly agree; ``mean``, ``p95`` and ``max`` are then None and
        ``gamma`` holds 0 at those points.

    Returns
    -------
    dict
        ``pass_rate`` (fraction of evaluated points with gamma ≤ 1), ``n_evaluated``,
        ``dose_percent``, ``dta_mm``, ``lower_cutoff_percent``, ``local``, ``mean``, ``p95``,
        ``max`` (of the capped gamma), and ``gamma``: ndarray, shape grid.shape, float64, NaN
        where not evaluated.
    """
    import pymedphys  # heavy import, only here

    ref, ev, mask = _check(reference_gy, evaluated_gy, grid, mask)
    for name, v in (("dose_percent", dose_percent), ("dta_mm", dta_mm),
                    ("max_gamma", max_gamma)):
        if not (np.isfinite(v) and v > 0):
            raise InputError(f"gamma: {name} must be positive (got {v})")
    if not 0.0 <= lower_cutoff_percent < 100.0:
        raise InputError(f"gamma: lower_cutoff_percent must be in [0, 100) "
                         f"(got {lower_cutoff_percent})")
    norm_gy = float(ref.max())
    select = ref >= lower_cutoff_percent / 100.0 * norm_gy
    if mask is not None:
        select &= mask
    if random_subset is not None:
        idx = np.flatnonzero(select)
        if random_subset < 1:
            raise InputError(f"gamma: random_subset must be >= 1 (got {random_subset})")
        rng = np.random.default_rng(0) if rng is None else rng
        keep = rng.choice(idx, size=min(int(random_subset), idx.size), replace=False)
        select = np.zeros(ref.shape, dtype=bool)
        select.flat[keep] = True
    # points left out get a reference dose below the (zero) cutoff, so pymedphys skips them;
    # the reference array is only read at its own points, never interpolated.
    search = select
    if pass_rate_only:
        crit = dose_percent / 100.0 * (np.abs(ref) if local else norm_gy)
        search = select & ~(np.abs(ev - ref) <= crit)
    ref_sel = np.where(search, ref, -1.0)
    x, y, z = grid.axes_ct()
    axes = (z, y, x)
    if search.any():
        gamma = pymedphys.gamma(axes, ref_sel, axes, ev, dose_percent, dta_mm,
                                lower_percent_dose_cutoff=0.0, interp_fraction=int(interp_fraction),
                                max_gamma=float(max_gamma), local_gamma=bool(local),
                                global_normalisation=norm_gy)
    else:  # every evaluated point passed at zero distance
        gamma = np.full(ref.shape, np.nan)
    gamma = np.asarray(gamma, dtype=np.float64)
    gamma[select & ~search] = 0.0  # passed at zero distance (pass_rate_only)
    gamma[~select] = np.nan
    vals = gamma[select]
    vals = vals[np.isfinite(vals)]
    n = int(vals.size)
    return {
        "pass_rate": float(np.mean(vals <= 1.0)) if n else float("nan"),
        "n_evaluated": n,
        "dose_percent": float(dose_percent),
        "dta_mm": float(dta_mm),
        "lower_cutoff_percent": float(lower_cutoff_percent),
        "local": bool(local),
        "mean": None if pass_rate_only else float(np.mean(vals)) if n else float("nan"),
        "p95": None if pass_rate_only else float(np.percentile(vals, 95)) if n else float("nan"),
        "max": None if pass_rate_only else float(np.max(vals)) if n else float("nan"),
        "gamma": gamma,
    }
