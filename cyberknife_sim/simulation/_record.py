"""What one run records: per-step arrays (room frame, mm, s) and the event log."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ..metrics import COMPONENTS
from ._imaging import ImageResult

__all__ = ["LoopRecord", "perpendicular"]

STEP_ARRAYS = ("time_s", "target_true", "target_commanded", "beam_source", "beam_direction",
               "error_vec", "beam_on_s", "beam_index", "hold_mask", "ext_true",
               "ext_predicted", "robot_error_mm", "room_from_anatomy", "target_offset")
"""The per-step arrays of :class:`LoopRecord` (besides ``components``)."""


def perpendicular(v: NDArray[np.float64], d: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rows of ``v`` (n, 3) without their component along the unit rows of ``d`` (n, 3)."""
    return v - np.sum(v * d, axis=1)[:, None] * d


@dataclass
class LoopRecord:
    """Per-step arrays and the event log of one run (room frame, mm, s).

    Attributes
    ----------
    time_s : ndarray, shape (n,)
        Step times (s).
    target_true : ndarray, shape (n, 3)
        True position of the current beam's aim point (mm, room).
    target_commanded : ndarray, shape (n, 3)
        Target the robot was commanded to (mm, room).
    beam_source, beam_direction : ndarray, shape (n, 3)
        Actual linac source (mm, room) and unit beam direction.
    error_vec : ndarray, shape (n, 3)
        Targeting error: true target to the actual beam axis, perpendicular to it (mm).
    components : dict of str to ndarray, shape (n, 3)
        The error's exact decomposition (``metrics.COMPONENTS``; they sum to ``error_vec``).
    beam_on_s : ndarray, shape (n,)
        Beam-on time within each step (s).
    beam_index : ndarray of int, shape (n,)
        Beam delivering in the step (-1: none).
    hold_mask : ndarray of int, shape (n,)
        Active holds, bit k = ``HOLD_REASONS[k]``.
    ext_true, ext_predicted : ndarray, shape (n,)
        True external signal and the predicted one the command used (mm).
    robot_error_mm : ndarray, shape (n,)
        Robot following error (mm).
    room_from_anatomy : ndarray, shape (n, 4, 4)
        True rigid pose of the anatomy (spine) at each step (truth side; mm).
    target_offset : ndarray, shape (n, 3)
        True breathing offset of the target on top of that pose (room mm): the target's
        frame maps as ``x_room = room_from_anatomy @ x_anat + target_offset``.
    events : list of dict
        ``{"time_s", "kind", ...}`` in time order.
    """

    time_s: NDArray[np.float64]
    target_true: NDArray[np.float64]
    target_commanded: NDArray[np.float64]
    beam_source: NDArray[np.float64]
    beam_direction: NDArray[np.float64]
    error_vec: NDArray[np.float64]
    components: dict[str, NDArray[np.float64]]
    beam_on_s: NDArray[np.float64]
    beam_index: NDArray[np.int64]
    hold_mask: NDArray[np.int64]
    ext_true: NDArray[np.float64]
    ext_predicted: NDArray[np.float64]
    robot_error_mm: NDArray[np.float64]
    room_from_anatomy: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 4, 4)))
    target_offset: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 3)))
    events: list[dict] = field(default_factory=list)
    n_steps: int = 0
    mu_delivered: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    beams_completed: int = 0
    hold_s: float = 0.0
    hold_s_by_reason: dict[str, float] = field(default_factory=dict)
    travel_s: float = 0.0
    stopped_early: str | None = None
    wall_s: float = 0.0
    imaging_wall_s: float = 0.0
    predictor_guard: dict = field(default_factory=dict)
    images: list[ImageResult] = field(default_factory=list)
    snapshots: list[tuple[float, NDArray[np.float64]]] = field(default_factory=list)

    @classmethod
    def empty(cls, n: int, n_beams: int) -> LoopRecord:
        """A record for ``n`` steps and ``n_beams`` beams, NaN-filled."""
        def z3():
            return np.full((n, 3), np.nan)

        return cls(time_s=np.zeros(n), target_true=z3(), target_commanded=z3(),
                   beam_source=z3(), beam_direction=z3(), error_vec=z3(),
                   components={c: z3() for c in COMPONENTS}, beam_on_s=np.zeros(n),
                   beam_index=np.full(n, -1, dtype=np.int64),
                   hold_mask=np.zeros(n, dtype=np.int64), ext_true=np.full(n, np.nan),
                   ext_predicted=np.full(n, np.nan), robot_error_mm=np.full(n, np.nan),
                   room_from_anatomy=np.full((n, 4, 4), np.nan), target_offset=z3(),
                   mu_delivered=np.zeros(n_beams))

    def truncate(self) -> None:
        """Cut the arrays to the steps actually simulated."""
        n = self.n_steps
        for name in STEP_ARRAYS:
            setattr(self, name, getattr(self, name)[:n])
        self.components = {k: v[:n] for k, v in self.components.items()}
