"""Pointing inverse kinematics: linac source at a point, beam axis through a target.

A pointing fixes five degrees of freedom (source position, beam direction); the roll of the
linac about its beam axis is free, so the 6-axis arm has a one-dimensional redundancy. It is
resolved by damped least squares with a null-space pull toward a rest posture (the seed),
which keeps successive solutions smooth and away from joint limits.

:func:`solve_pointing_ik` runs the iteration as one compiled kernel
(:func:`._fastik.solve_pointing`); :func:`pointing_step` is the same step in numpy (the
reference the kernel is tested against).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from . import _fastik
from ._chain import Chain, cross_rows

__all__ = [
    "PointingSolution",
    "pointing_error",
    "pointing_sigma_min",
    "pointing_step",
    "solve_pointing_ik",
]


@dataclass(frozen=True)
class PointingSolution:
    """Result of :func:`solve_pointing_ik`.

    Attributes
    ----------
    q_rad : ndarray, shape (6,)
        Joint angles (rad), inside the limits.
    converged : bool
        Both residuals below the tolerance.
    position_error_mm : float
        Distance from the linac source to the requested source point (mm).
    axis_error_mm : float
        Distance from the target to the beam axis (mm).
    sigma_min : float
        Smallest singular value of the 5×6 pointing Jacobian (mm/rad); small = near a
        singularity.
    at_limit : bool
        Some joint sits on a limit.
    iterations : int
    """

    q_rad: NDArray[np.float64]
    converged: bool
    position_error_mm: float
    axis_error_mm: float
    sigma_min: float
    at_limit: bool
    iterations: int


def _perp_basis(d: NDArray[np.float64]) -> NDArray[np.float64]:
    """Two unit vectors perpendicular to unit ``d`` (rows of a (2, 3) array)."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = cross_rows(d, helper)
    u /= np.linalg.norm(u)
    return np.stack([u, cross_rows(d, u)])


def pointing_error(chain: Chain, q_rad: NDArray[np.float64], base_mm: NDArray[np.float64],
                   source_mm: NDArray[np.float64], target_mm: NDArray[np.float64]
                   ) -> tuple[float, float]:
    """(source position error, target-to-beam-axis distance), both mm, room frame."""
    _, src = chain.frames(q_rad, base_mm)
    p, d = src[:3, 3], src[:3, 2]
    v = target_mm - p
    return float(np.linalg.norm(source_mm - p)), float(np.linalg.norm(v - (v @ d) * d))


def pointing_step(chain: Chain, q_rad: NDArray[np.float64], base_mm: NDArray[np.float64],
                  source_mm: NDArray[np.float64], direction: NDArray[np.float64], *,
                  q_rest_rad: NDArray[np.float64] | None = None, lever_mm: float = 800.0,
                  damping: float = 1e-3, null_gain: float = 0.1,
                  max_step_rad: float = 0.3) -> tuple[NDArray[np.float64], float, float]:
    """One damped Gauss-Newton step of the pointing task (differential IK).

    Parameters
    ----------
    chain : Chain
    q_rad : ndarray, shape (6,)
        Current joints (rad).
    base_mm : ndarray, shape (4, 4)
        ``room_from_base`` (mm).
    source_mm : ndarray, shape (3,)
        Requested source position (room mm).
    direction : ndarray, shape (3,)
        Requested unit beam direction (room).
    q_rest_rad : ndarray, shape (6,), optional
        Posture the redundancy is pulled toward; none: no null-space motion.
    lever_mm : float
        Length that converts direction error (rad) to mm (the SAD).

    Returns
    -------
    dq : ndarray, shape (6,)
        Joint step (rad), before clipping to limits.
    position_error_mm, angle_error_mm : float
        Residuals at ``q_rad`` (angle error scaled by ``lever_mm``).
    """
    p, d, jv, jw = chain.pointing_jacobian(q_rad, base_mm)
    basis = _perp_basis(d)
    e_p = source_mm - p
    e_w = cross_rows(d, direction)
    a = np.vstack([jv, lever_mm * (basis @ jw)])
    e = np.concatenate([e_p, lever_mm * (basis @ e_w)])
    aat = a @ a.T
    lam2 = damping * damping * float(np.trace(aat)) / 5.0
    if q_rest_rad is not None and null_gain > 0.0:
        pull = null_gain * (q_rest_rad - q_rad)
        sol = np.linalg.solve(aat + lam2 * np.eye(5), np.column_stack([e, a @ pull]))
        dq = a.T @ sol[:, 0] + pull - a.T @ sol[:, 1]
    else:
        dq = a.T @ np.linalg.solve(aat + lam2 * np.eye(5), e)
    step = float(np.max(np.abs(dq)))
    if step > max_step_rad:
        dq *= max_step_rad / step
    return dq, float(np.linalg.norm(e_p)), float(np.linalg.norm(e[3:]))


def pointing_sigma_min(chain: Chain, q_rad: NDArray[np.float64], base_mm: NDArray[np.float64],
                       *, lever_mm: float = 800.0) -> float:
    """Smallest singular value of the scaled 5×6 pointing Jacobian (mm/rad).

    Near zero at a singularity (e.g. wrist axes 4 and 6 aligned, arm fully stretched).
    """
    _, d, jv, jw = chain.pointing_jacobian(q_rad, base_mm)
    a = np.vstack([jv, lever_mm * (_perp_basis(d) @ jw)])
    return float(np.linalg.svd(a, compute_uv=False)[-1])


def _array(value: NDArray[np.float64], shape: tuple[int, ...], name: str
           ) -> NDArray[np.float64]:
    """``value`` as a C-contiguous float64 array of ``shape`` (ValueError naming it else)."""
    a = np.ascontiguousarray(value, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
    return a


def solve_pointing_ik(chain: Chain, base_mm: NDArray[np.float64],
                      source_mm: NDArray[np.float64], target_mm: NDArray[np.float64],
                      seed_rad: NDArray[np.float64], *, tol_mm: float = 1e-4,
                      max_iter: int = 100) -> PointingSolution:
    """Joints that put the linac source at ``source_mm`` with the beam through ``target_mm``.

    Parameters
    ----------
    chain : Chain
    base_mm : ndarray, shape (4, 4)
        ``room_from_base`` (mm).
    source_mm, target_mm : ndarray, shape (3,)
        Room mm; they must differ.
    seed_rad : ndarray, shape (6,)
        Start posture (rad), also the rest posture of the redundancy.
    tol_mm : float
        Convergence tolerance on both residuals (mm).

    Returns
    -------
    PointingSolution
    """
    src = _array(source_mm, (3,), "source_mm")
    tgt = _array(target_mm, (3,), "target_mm")
    if float(np.linalg.norm(tgt - src)) < 1.0:
        raise ValueError("source and target are closer than 1 mm: no beam direction")
    q, it, pe, ae, a, at_limit = _fastik.solve_pointing(
        chain.packed, _array(base_mm, (4, 4), "base_mm"), src, tgt,
        _array(seed_rad, (6,), "seed_rad"), float(tol_mm), int(max_iter))
    return PointingSolution(q_rad=q, converged=bool(pe < tol_mm and ae < tol_mm),
                            position_error_mm=float(pe), axis_error_mm=float(ae),
                            sigma_min=float(np.linalg.svd(a, compute_uv=False)[-1]),
                            at_limit=bool(at_limit),
                            iterations=int(it))
