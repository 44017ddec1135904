"""The dose a run delivered: each step's actual beam axis in the moving target's frame.

The loop records, per step, the actual linac source and beam direction (room mm), the beam-on
time, the beam delivering, and the truth: the anatomy's rigid pose ``M`` (room_from_anatomy)
and the breathing offset ``o`` of the target on top of it. The target's frame maps as
``x_room = M x_anat + o``; at pose zero the anatomy frame is the room frame and the planned
alignment is the pure translation ``room_from_ct = T(-target_ct)`` (DESIGN.md), so

    ct_from_room(t) = T(target_ct) · M(t)⁻¹ · T(-o(t)).

The structures (target, cord) are taken to move rigidly with the target's frame: exact for
the spine's own motion, an approximation for the breathing offset of a target that breathes
(the cord is then assumed to breathe with it).

Two accumulations (``dose.delivered`` in the scene):

* ``shift`` (default): per beam, the lateral offsets ``(u, v)`` of each step's actual axis from
  the planned axis, measured in the plane through the planned aim point perpendicular to the
  planned direction, with the step's MU as weights; the beam's dose is
  :meth:`BeamDose.dose_per_mu` over that distribution (the effective depth and inverse square
  of each point stay those of the planned axis, the off-axis ratio moves with the axis).
  Ignores the axis's tilt (the rotation of the anatomy changes the beam's direction in the CT
  frame by the rotation angle, ~0.1-1°) and the shift along the axis.
* ``exact``: one full dose calculation per distinct step geometry (source and aim point
  rounded to 0.01 mm), the reference the shift accumulation is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from ..plan import Beam
    from ..simulation import LoopRecord
    from ._engine import BeamDose, DoseEngine

__all__ = ["axes_in_ct", "beam_offsets_mm", "delivered_dose_gy", "delivered_mu",
           "planned_beam_ct"]


def planned_beam_ct(beam: Beam, target_ct: ArrayLike) -> tuple[NDArray[np.float64],
                                                                NDArray[np.float64]]:
    """The planned source and aim point of ``beam`` in CT mm (planned alignment)."""
    t = np.asarray(target_ct, dtype=np.float64)
    return np.asarray(beam.source_room, dtype=np.float64) + t, \
        np.asarray(beam.aim_room, dtype=np.float64) + t


def axes_in_ct(record: LoopRecord, steps: NDArray[np.int64], target_ct: ArrayLike
               ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Actual source (CT mm) and unit direction (CT) of the beam at ``steps``, in the frame
    of the moving target (module docstring).

    Returns
    -------
    source_ct, direction_ct : ndarray, shape (n, 3)
    """
    m = record.room_from_anatomy[steps]
    if m.shape[0] and not np.all(np.isfinite(m)):
        raise InputError("delivered dose: the record has no truth pose for some beam-on steps")
    rot_t = np.transpose(m[:, :3, :3], (0, 2, 1))  # R^T = R^-1
    rel = record.beam_source[steps] - record.target_offset[steps] - m[:, :3, 3]
    src = np.einsum("nij,nj->ni", rot_t, rel) + np.asarray(target_ct, dtype=np.float64)
    d = np.einsum("nij,nj->ni", rot_t, record.beam_direction[steps])
    return src, d / np.linalg.norm(d, axis=1, keepdims=True)


def beam_offsets_mm(source_ct: NDArray[np.float64], direction_ct: NDArray[np.float64],
                    aim_ct: ArrayLike, plan_direction_ct: ArrayLike, e_u: ArrayLike,
                    e_v: ArrayLike) -> NDArray[np.float64]:
    """Lateral offsets ``(u, v)`` (mm) of actual axes from the planned one: where each axis
    crosses the plane through ``aim_ct`` perpendicular to ``plan_direction_ct``, relative to
    ``aim_ct``, along the unit vectors ``e_u`` and ``e_v``.

    Parameters
    ----------
    source_ct, direction_ct : ndarray, shape (n, 3)
        Actual axes (CT mm, unit directions).
    aim_ct, plan_direction_ct, e_u, e_v : array-like, shape (3,)

    Returns
    -------
    ndarray, shape (n, 2)
    """
    aim = np.asarray(aim_ct, dtype=np.float64)
    n = np.asarray(plan_direction_ct, dtype=np.float64)
    along = (aim - source_ct) @ n / (direction_ct @ n)
    cross = source_ct + along[:, None] * direction_ct - aim
    return np.stack([cross @ np.asarray(e_u, float), cross @ np.asarray(e_v, float)], axis=1)


def _beam_steps(record: LoopRecord, n_beams: int) -> list[NDArray[np.int64]]:
    on = np.flatnonzero((record.beam_on_s > 0) & (record.beam_index >= 0))
    k = record.beam_index[on]
    if k.size and k.max() >= n_beams:
        raise InputError(f"delivered dose: the record delivers beam {int(k.max())} of a "
                         f"{n_beams}-beam plan")
    order = np.argsort(k, kind="stable")
    bounds = np.searchsorted(k[order], np.arange(n_beams + 1))
    return [on[order[bounds[b]:bounds[b + 1]]] for b in range(n_beams)]


def delivered_mu(beams: Sequence[Beam], record: LoopRecord, *,
                 rate_mu_per_s: float | None = None) -> NDArray[np.float64]:
    """MU each beam of the plan delivered in the run of ``record`` (shape (n_beams,)):
    its beam-on time × its dose rate (or ``rate_mu_per_s``)."""
    out = np.zeros(len(beams))
    for k, steps in enumerate(_beam_steps(record, len(beams))):
        rate = (beams[k].dose_rate_mu_per_min / 60.0) if rate_mu_per_s is None else rate_mu_per_s
        out[k] = float(np.sum(record.beam_on_s[steps])) * rate
    return out

def delivered_dose_gy(engine: DoseEngine, beams: Sequence[Beam], record: LoopRecord, *,
                      target_ct: ArrayLike, points_ct: ArrayLike | None = None,
                      beam_doses: Sequence[BeamDose] | None = None,
                      rate_mu_per_s: float | None = None,
                      method: Literal["shift", "exact"] = "shift") -> NDArray[np.float64]:
    """Dose (Gy) the run of ``record`` delivered at ``points_ct`` (CT mm of the moving
    target's frame; see the module docstring).

    Parameters
    ----------
    engine : DoseEngine
        On the planning CT.
    beams : sequence of Beam
        The plan the run delivered (room frame, planned alignment).
    record : LoopRecord
        The run's record (possibly stopped early: only its steps count).
    target_ct : array-like, shape (3,)
        Planned target (CT mm): the room origin at pose zero.
    points_ct : array-like, shape (N, 3), optional
        Dose points (CT mm). Needed unless ``beam_doses`` are given.
    beam_doses : sequence of BeamDose, optional
        The planned beams' doses at the points (``engine.beam`` of each planned axis), when
        already computed (the plan dose's).
    rate_mu_per_s : float, optional
        MU per beam-on second; default each beam's dose rate.
    method : {"shift", "exact"}

    Returns
    -------
    ndarray, shape (N,)
    """
    if method not in ("shift", "exact"):
        raise InputError(f"delivered dose: method must be shift or exact (got {method!r})")
    if beam_doses is None:
        if points_ct is None:
            raise InputError("delivered dose: give points_ct or beam_doses")
        pts = np.asarray(points_ct, dtype=np.float64)
        beam_doses = [engine.beam(*planned_beam_ct(b, target_ct), b.collimator_mm, pts)
                      for b in beams]
    elif len(beam_doses) != len(beams):
        raise InputError(f"delivered dose: {len(beam_doses)} beam doses for {len(beams)} beams")
    if method == "exact" and points_ct is None:
        raise InputError("delivered dose: the exact method needs points_ct")
    n_points = beam_doses[0].n_points if beam_doses else 0
    if points_ct is not None:
        pts = np.asarray(points_ct, dtype=np.float64)
    total = np.zeros(n_points)
    for k, steps in enumerate(_beam_steps(record, len(beams))):
        if steps.size == 0:
            continue
        beam, bd = beams[k], beam_doses[k]
        rate = (beam.dose_rate_mu_per_min / 60.0) if rate_mu_per_s is None else rate_mu_per_s
        mu = record.beam_on_s[steps] * rate
        src, d = axes_in_ct(record, steps, target_ct)
        if method == "shift":
            _, aim = planned_beam_ct(beam, target_ct)
            uv = beam_offsets_mm(src, d, aim, bd.direction, bd.e_u, bd.e_v)
            total[bd.index] += mu.sum() * bd.dose_per_mu(uv, mu / mu.sum())
        else:
            total += _exact(engine, beam, bd, src, d, mu, target_ct, pts)
    return total


def _exact(engine: DoseEngine, beam: Beam, bd: BeamDose, src: NDArray[np.float64],
           d: NDArray[np.float64], mu: NDArray[np.float64], target_ct: ArrayLike,
           pts: NDArray[np.float64]) -> NDArray[np.float64]:
    """Sum over distinct step geometries of a full dose calculation (module docstring)."""
    _, aim = planned_beam_ct(beam, target_ct)
    along = (aim - src) @ bd.direction / (d @ bd.direction)
    aims = src + along[:, None] * d  # where each actual axis crosses the aim plane
    key = np.round(np.hstack([src, aims]), 2)
    uniq, inverse = np.unique(key, axis=0, return_inverse=True)
    weights = np.bincount(inverse.ravel(), weights=mu, minlength=len(uniq))
    out = np.zeros(len(pts))
    for g, w in zip(uniq, weights, strict=True):
        out += w * engine.dose_per_mu(g[:3], g[3:], beam.collimator_mm, pts)
    return out
