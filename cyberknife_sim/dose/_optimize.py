"""Plan MU optimisation: beam MUs from a sparse dose-influence matrix, by linear programming.

Formulation (one LP, solved by scipy's HiGHS; see ``docs/dose_plan.md``)::

    minimise   (1/n_T) Σ_t s_t  +  w_int · mean_T(D x)  +  w_ring · mean_R(D x)  +  w_max · ḡ z
    subject to (D x)_t + s_t ≥ Rx,  s_t ≥ 0           every target voxel t
               (D x)_c ≤ cord_max                      every cord voxel c
               (D x)_c ≤ cord_limit                    cord voxels c in the V10 set
               x_b ≤ z,  mu_min ≤ x_b ≤ mu_max         every beam b

The slack sum is the L1 underdose (a convex surrogate of coverage); the small integral-dose,
ring and max-MU terms make the optimum unique where the underdose alone ties (two mirror
beams get equal MU). The plan is then *normalised* as clinical plans are: scaled so that
``coverage`` of the target gets at least ``Rx``, with the scale capped by the cord limits and
the MU bounds; when a cap stops it, the coverage falls short and the result says which limit
won. The dose-volume limit V10 ≤ 0.35 cc is non-convex; it is handled the standard way: solve,
then constrain every cord voxel except the hottest ``floor(limit_cc / voxel_cc)`` of the last
solution to ≤ ``cord_limit_gy`` and solve again, until the normalised plan meets it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import linprog

from ..errors import InputError

__all__ = ["MuResult", "optimize_mu"]

# Objective weights relative to the mean underdose (Gy). Assumption: small enough that they
# only break ties and trim needless dose, large enough to be resolved by HiGHS (tol 1e-7).
_W_INTEGRAL = 1e-3
_W_RING = 1e-2
_W_MAX_MU = 1e-3
_MAX_ITER = 6
_STRICT = 1.0 - 1e-9  # scale just below a V10 threshold so that a voxel sits under it


@dataclass(frozen=True)
class MuResult:
    """Optimised beam MUs and what they achieve.

    Attributes
    ----------
    mu : ndarray, shape (n_beams,), float64
        Beam MUs.
    dose_gy : ndarray, shape (n_points,), float64
        ``influence @ mu`` (Gy).
    status : {"optimal", "compromise", "infeasible"}
        ``optimal``: coverage and every cord limit met; ``compromise``: the cord limits or the
        MU bounds stop the coverage short of the request (``limiting`` says which);
        ``infeasible``: even the least cord dose the MU bounds allow breaks a cord limit.
    coverage : float
        Fraction of target voxels with dose ≥ the prescription.
    cord_max_gy : float
        Highest cord voxel dose (Gy), 0 without a cord.
    cord_v10_cc : float
        Cord volume with dose ≥ ``cord_limit_gy`` (cc).
    scale : float
        Normalisation factor applied to the LP solution.
    limiting : str or None
        ``"cord_max"``, ``"cord_v10"``, ``"mu_max"`` or ``"mu_min"`` when that limit stopped the
        normalisation; None when the coverage was met.
    iterations : int
        LP solves.
    message : str
        One line saying what was achieved and, when not everything, which limit wins.
    """

    mu: NDArray[np.float64]
    dose_gy: NDArray[np.float64]
    status: str
    coverage: float
    cord_max_gy: float
    cord_v10_cc: float
    scale: float
    limiting: str | None
    iterations: int
    message: str


def _check_index(idx: ArrayLike | None, n: int, name: str) -> NDArray[np.int64]:
    if idx is None:
        return np.zeros(0, dtype=np.int64)
    a = np.asarray(idx)
    if a.dtype == bool:
        if a.shape != (n,):
            raise InputError(f"optimize_mu: {name} mask must have shape ({n},) (got {a.shape})")
        a = np.flatnonzero(a)
    a = np.unique(a.astype(np.int64).reshape(-1))
    if a.size and (a[0] < 0 or a[-1] >= n):
        raise InputError(f"optimize_mu: {name} out of range 0..{n - 1}")
    return a


def _check_inputs(influence, prescription_gy, coverage, cord_max_gy, cord_limit_gy,
                  cord_limit_cc, voxel_cc, mu_min, mu_max) -> sp.csr_matrix:
    if not (sp.issparse(influence) or isinstance(influence, np.ndarray)) or influence.ndim != 2:
        raise InputError("optimize_mu: influence must be a 2-D (n_points, n_beams) matrix")
    d = sp.csr_matrix(influence, dtype=np.float64)
    if d.nnz and (not np.all(np.isfinite(d.data)) or d.data.min() < 0):
        raise InputError("optimize_mu: influence must be finite and non-negative (Gy/MU)")
    for name, v in (("prescription_gy", prescription_gy), ("cord_max_gy", cord_max_gy),
                    ("cord_limit_gy", cord_limit_gy), ("voxel_cc", voxel_cc)):
        if not (np.isfinite(v) and v > 0):
            raise InputError(f"optimize_mu: {name} must be positive (got {v})")
    if not 0.0 < coverage <= 1.0:
        raise InputError(f"optimize_mu: coverage must be in (0, 1] (got {coverage})")
    if not (np.isfinite(cord_limit_cc) and cord_limit_cc >= 0):
        raise InputError(f"optimize_mu: cord_limit_cc must be >= 0 (got {cord_limit_cc})")
    if not (np.isfinite(mu_min) and mu_min >= 0) or (mu_max is not None and mu_max < mu_min):
        raise InputError(f"optimize_mu: need 0 <= mu_min <= mu_max (got {mu_min}, {mu_max})")
    return d


def _solve_lp(d_t, d_c, c_x, rx, cord_max_gy, v10_rows, cord_limit_gy, bounds_x):
    """One LP; returns (x, ok)."""
    n_t, n_b = d_t.shape  # variables: x (n_b), underdose slacks (n_t), max MU z (1)
    c = np.concatenate([c_x, np.full(n_t, 1.0 / n_t), [_W_MAX_MU * _mean_gain(d_t)]])
    blocks = [sp.hstack([-d_t, -sp.identity(n_t), sp.csr_matrix((n_t, 1))])]
    rhs = [np.full(n_t, -rx)]
    if d_c.shape[0]:
        pad = sp.csr_matrix((d_c.shape[0], n_t + 1))
        blocks.append(sp.hstack([d_c, pad]))
        rhs.append(np.full(d_c.shape[0], cord_max_gy))
        if v10_rows.size:
            sub = d_c[v10_rows]
            blocks.append(sp.hstack([sub, sp.csr_matrix((sub.shape[0], n_t + 1))]))
            rhs.append(np.full(sub.shape[0], cord_limit_gy))
    blocks.append(sp.hstack([sp.identity(n_b), sp.csr_matrix((n_b, n_t)), -np.ones((n_b, 1))]))
    rhs.append(np.zeros(n_b))
    a_ub = sp.vstack(blocks, format="csc")
    bounds = [bounds_x] * n_b + [(0.0, None)] * n_t + [(0.0, None)]
    res = linprog(c, A_ub=a_ub, b_ub=np.concatenate(rhs), bounds=bounds, method="highs",
                  options={"presolve": True})
    if res.status != 0:
        return np.full(n_b, bounds_x[0]), False
    return np.clip(res.x[:n_b], bounds_x[0], np.inf if bounds_x[1] is None else bounds_x[1]), True


def _mean_gain(d_t) -> float:
    """Mean target dose per MU over beams (Gy/MU): converts MU to a dose-like unit."""
    return float(np.asarray(d_t.mean(axis=0)).mean())


def _normalise(x, d, t_idx, c_idx, coverage, rx, cord_max_gy, cord_limit_gy, n_allow,
               mu_min, mu_max):
    """Scale x so that ``coverage`` of the target gets ≥ rx, within the caps; (f, limiting)."""
    dose_t = d[t_idx] @ x
    q = float(np.sort(dose_t)[::-1][int(np.ceil(coverage * t_idx.size)) - 1])
    f_cov = rx / q if q > 0 else np.inf
    caps: list[tuple[float, str]] = []
    if c_idx.size:
        dose_c = np.sort(d[c_idx] @ x)[::-1]
        if dose_c[0] > 0:
            caps.append((cord_max_gy / dose_c[0], "cord_max"))
        if n_allow < dose_c.size and dose_c[n_allow] > 0:
            caps.append((_STRICT * cord_limit_gy / dose_c[n_allow], "cord_v10"))
    if mu_max is not None and x.max() > 0:
        caps.append((mu_max / x.max(), "mu_max"))
    f, limiting = f_cov, None
    for cap, name in caps:
        if cap < f:
            f, limiting = cap, name
    pos = x[x > 0]
    if mu_min > 0 and pos.size and f * pos.min() < mu_min:
        f, limiting = mu_min / pos.min(), "mu_min"
    return (0.0 if not np.isfinite(f) else f), limiting


def optimize_mu(influence, *, target_idx: ArrayLike, cord_idx: ArrayLike | None, voxel_cc: float,
                prescription_gy: float = 16.0, coverage: float = 0.95, cord_max_gy: float = 14.0,
                cord_limit_gy: float = 10.0, cord_limit_cc: float = 0.35, mu_min: float = 0.0,
                mu_max: float | None = None, ring_idx: ArrayLike | None = None) -> MuResult:
    """Beam MUs that cover the target with the prescription under the cord limits.

    Linear programme (HiGHS) on the L1 underdose of the target, with the cord point maximum as
    a hard constraint and the V10 dose-volume limit by iterated voxel selection, then clinical
    normalisation (``coverage`` of the target at ≥ ``prescription_gy``), capped by the cord
    limits; see the module docstring. Deterministic: the same input gives the same MU bit
    for bit (HiGHS is deterministic on one thread of one build).

    Parameters
    ----------
    influence : scipy.sparse matrix or ndarray, shape (n_points, n_beams)
        Dose per MU of each beam at each dose point (Gy/MU), non-negative.
    target_idx, cord_idx, ring_idx : array-like of int, or bool mask (n_points,)
        Dose points of the target, the cord (None: no cord) and an optional dose-spill ring
        around the target whose mean dose is lightly penalised.
    voxel_cc : float
        Volume of one dose point (cm³).
    prescription_gy : float
        Prescription dose (Gy).
    coverage : float
        Fraction of the target to receive ≥ ``prescription_gy``, in (0, 1].
    cord_max_gy : float
        Cord point-maximum limit (Gy), a hard constraint.
    cord_limit_gy, cord_limit_cc : float
        Dose-volume limit: at most ``cord_limit_cc`` of cord at ≥ ``cord_limit_gy``
        (TG-101 single fraction: V10 Gy < 0.35 cc). ``cord_limit_cc`` is counted in whole
        voxels, ``floor(cord_limit_cc / voxel_cc)``.
    mu_min, mu_max : float
        Bounds on each beam's MU (``mu_max`` None: unbounded).

    Returns
    -------
    MuResult
        ``status`` ``"optimal"`` when everything was met; otherwise ``message`` names the limit
        that wins over coverage, and the MUs are the best compromise found.

    Raises
    ------
    InputError
        Bad shapes, indices or limits, or no beam reaching the target.
    """
    d = _check_inputs(influence, prescription_gy, coverage, cord_max_gy, cord_limit_gy,
                      cord_limit_cc, voxel_cc, mu_min, mu_max)
    n_p, n_b = d.shape
    t_idx = _check_index(target_idx, n_p, "target_idx")
    c_idx = _check_index(cord_idx, n_p, "cord_idx")
    r_idx = _check_index(ring_idx, n_p, "ring_idx")
    if t_idx.size == 0 or n_b == 0:
        raise InputError("optimize_mu: need at least one target point and one beam")
    d_t, d_c = d[t_idx], d[c_idx]
    if d_t.nnz == 0:
        raise InputError("optimize_mu: no beam deposits dose in the target")
    c_x = _W_INTEGRAL * np.asarray(d_t.mean(axis=0)).ravel()
    if r_idx.size:
        c_x = c_x + _W_RING * np.asarray(d[r_idx].mean(axis=0)).ravel()
    n_allow = int(np.floor(cord_limit_cc / voxel_cc + 1e-9))
    bounds_x = (float(mu_min), None if mu_max is None else float(mu_max))
    v10_rows = np.zeros(0, dtype=np.int64)
    best: tuple[float, int, NDArray[np.float64], float, str | None] | None = None
    it, ok = 0, True
    while it < _MAX_ITER:
        it += 1
        x, ok = _solve_lp(d_t, d_c, c_x, prescription_gy, cord_max_gy, v10_rows, cord_limit_gy,
                          bounds_x)
        if not ok:
            break
        f, limiting = _normalise(x, d, t_idx, c_idx, coverage, prescription_gy, cord_max_gy,
                                 cord_limit_gy, n_allow, mu_min, mu_max)
        cov = float(np.mean(d_t @ (f * x) >= prescription_gy * (1 - 1e-9)))
        if best is None or cov > best[0]:
            best = (cov, it, f * x, f, limiting)
        if limiting != "cord_v10":
            break
        # V10 capped the scale: constrain all but the hottest n_allow cord voxels of this
        # solution to <= cord_limit_gy and solve again
        hot = np.argsort(-(d_c @ x), kind="stable")[:n_allow]
        rows = np.setdiff1d(np.arange(c_idx.size), hot)
        if np.array_equal(rows, v10_rows):
            break
        v10_rows = rows
    if best is None:
        mu, f, limiting = np.full(n_b, float(mu_min)), 0.0, None
    else:
        mu, f, limiting = best[2], best[3], best[4]
    return _result(d, mu, t_idx, c_idx, voxel_cc, prescription_gy, coverage, cord_max_gy,
                   cord_limit_gy, cord_limit_cc, n_allow, f, limiting, it, best is not None)


def _result(d, mu, t_idx, c_idx, voxel_cc, rx, coverage, cord_max_gy, cord_limit_gy,
            cord_limit_cc, n_allow, f, limiting, it, ok) -> MuResult:
    dose = np.asarray(d @ mu).ravel()
    cov = float(np.mean(dose[t_idx] >= rx * (1 - 1e-9)))
    dc = dose[c_idx]
    cmax = float(dc.max()) if dc.size else 0.0
    n10 = int(np.count_nonzero(dc >= cord_limit_gy))
    v10 = n10 * voxel_cc
    cord_ok = cmax <= cord_max_gy * (1 + 1e-9) and n10 <= n_allow
    if not ok or not cord_ok:
        status = "infeasible"
        msg = (f"infeasible: no MUs within the bounds keep the cord under {cord_max_gy:g} Gy "
               f"max and V{cord_limit_gy:g} <= {cord_limit_cc:g} cc; returned every beam at "
               f"mu_min {_mu_text(mu)} (cord Dmax {cmax:.2f} Gy, V{cord_limit_gy:g} {v10:.3f} cc)"
               if not ok else
               f"infeasible: cord Dmax {cmax:.2f} Gy, V{cord_limit_gy:g} {v10:.3f} cc break the "
               f"limits ({limiting} wins)")
    elif limiting is None:
        status = "optimal"
        msg = (f"optimal: {cov:.1%} of the target at >= {rx:g} Gy; cord Dmax {cmax:.2f} Gy, "
               f"V{cord_limit_gy:g} {v10:.3f} cc")
    else:
        status = "compromise"
        msg = (f"compromise: coverage {cov:.1%} (requested {coverage:.1%}) at {rx:g} Gy; the "
               f"{limiting} limit wins (cord Dmax {cmax:.2f}/{cord_max_gy:g} Gy, "
               f"V{cord_limit_gy:g} {v10:.3f}/{cord_limit_cc:g} cc)")
    return MuResult(mu=mu, dose_gy=dose, status=status, coverage=cov, cord_max_gy=cmax,
                    cord_v10_cc=v10, scale=float(f), limiting=limiting, iterations=it,
                    message=msg)


def _mu_text(mu: NDArray[np.float64]) -> str:
    """The smallest MU as text (for messages)."""
    return f"{float(mu.min()):g}" if mu.size else "-"
