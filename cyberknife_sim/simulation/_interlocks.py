"""The interlocks that hold the beam, one small pure function each.

Each takes the numbers it judges and the scene's limit and returns whether the beam must be
held (or, for the patient-motion check, how far the patient moved). The loop
(:mod:`._loop`) keeps the set of active holds; bit ``k`` of ``LoopRecord.hold_mask`` is
``HOLD_REASONS[k]``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from ..tracking import outside_range

__all__ = ["HOLD_REASONS", "correction_limit", "hold_mask", "hold_too_long", "markers_lost",
           "model_residual", "outside_model_range", "patient_moved_mm", "registration_failed",
           "robot_following"]

HOLD_REASONS = ("setup", "registration_failed", "correction_limit", "model_residual",
                "outside_model_range", "markers_lost", "patient_moved", "robot_following")
"""Interlocks that hold the beam; bit i of ``LoopRecord.hold_mask`` is ``HOLD_REASONS[i]``."""

_BIT = {name: 1 << k for k, name in enumerate(HOLD_REASONS)}


def hold_mask(holds: set[str] | frozenset[str]) -> int:
    """Bit mask of the active holds (bit i: ``HOLD_REASONS[i]``)."""
    mask = 0
    for name in holds:
        mask |= _BIT[name]
    return mask


def registration_failed(accepted: bool) -> bool:
    """Hold after a pair the registration rejected, until a pair is accepted."""
    return not accepted


def correction_limit(pose: NDArray[np.float64], *, max_translation_mm: float,
                     max_rotation_deg: float) -> bool:
    """Hold when the registered correction from set-up is beyond the limits.

    ``pose`` is ``(tx, ty, tz, rx, ry, rz)`` (mm, deg); the translation is judged by its
    length, the rotation by its largest component.
    """
    t = math.sqrt(pose[0] * pose[0] + pose[1] * pose[1] + pose[2] * pose[2])
    r = max(abs(pose[3]), abs(pose[4]), abs(pose[5]))
    return bool(t > max_translation_mm or r > max_rotation_deg)


def model_residual(model_ok: bool) -> bool:
    """Hold while the correlation model's residual (or a new point's error) is over its
    limit; the loop rebuilds the model."""
    return not model_ok


def markers_lost(now_s: float, last_valid_frame_s: float, *, camera_latency_s: float,
                 limit_s: float) -> bool:
    """Hold when the newest valid marker frame that can have arrived is older than
    ``limit_s`` (s)."""
    return bool(now_s - last_valid_frame_s - camera_latency_s > limit_s)


def outside_model_range(ext_mm: float, ext_range_mm: tuple[float, float], *,
                        margin_fraction: float) -> bool:
    """Hold when the predicted external signal ``ext_mm`` leaves the model's fitted range
    ``(lo, hi)`` by more than ``margin_fraction`` of the range — the same rule by which the
    model clamps its input (:func:`cyberknife_sim.tracking.outside_range`); a NaN signal does
    not hold: the marker interlock covers it."""
    return outside_range(ext_mm, ext_range_mm, margin_fraction)


def patient_moved_mm(centroid_xz_mm: NDArray[np.float64],
                     reference_xz_mm: NDArray[np.float64]) -> float:
    """How far the marker centroid moved across the breathing direction (room x-z plane)
    from where it was at the last accepted pair (mm); the loop holds and images at once when
    this exceeds ``tracking.interlocks.patient_moved_mm``."""
    return math.hypot(centroid_xz_mm[0] - reference_xz_mm[0],
                      centroid_xz_mm[1] - reference_xz_mm[1])


def robot_following(at_node: bool, following_error_mm: float, *, limit_mm: float) -> bool:
    """Hold while the robot, at its node, lags the commanded target by more than
    ``limit_mm`` (mm)."""
    return bool(at_node and following_error_mm > limit_mm)


def hold_too_long(now_s: float, hold_started_s: float | None, *, max_hold_s: float) -> bool:
    """Stop the treatment when the beam has been held continuously for over ``max_hold_s``."""
    return hold_started_s is not None and now_s - hold_started_s > max_hold_s
