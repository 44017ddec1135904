"""The loop's seams, as typed protocols: what the loop needs from each part it drives.

The loop (:mod:`._loop`) only calls what these protocols declare, so any object that
satisfies one structurally can stand in (the PyBullet robot or a kinematic test double; the
X-ray imager or ideal registration; any correlation model or predictor).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from ..plan import Beam
    from ..tracking import CorrelationStatus
    from ._imaging import ImageResult

__all__ = ["CorrelationSeam", "ImagerSeam", "PredictorSeam", "RobotSeam"]


@runtime_checkable
class RobotSeam(Protocol):
    """The robot that points the linac.

    Attributes
    ----------
    command_latency_s : float
        Delay from a command to the servo acting on it (s); the loop sends commands this
        much earlier so that the whole chain takes the system latency.
    arrived : bool
        At the current beam's node and following its commands.
    following_error_mm : float
        Distance from the commanded target to the actual beam axis (mm).
    """

    command_latency_s: float
    arrived: bool
    following_error_mm: float

    def goto(self, beam: Beam) -> None:
        """Start moving to ``beam``'s node."""

    def command(self, beam: Beam, target_room: NDArray[np.float64],
                rotation_deg: NDArray[np.float64]) -> None:
        """Aim ``beam``'s axis through ``target_room`` (mm), turned by the anatomy rotation
        vector ``rotation_deg`` (deg)."""

    def step(self, t_s: float, dt_s: float) -> None:
        """Advance the robot from ``t_s`` by ``dt_s`` (s)."""

    def beam_axis(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Actual linac source (room mm) and unit beam direction."""

    def joints_deg(self) -> NDArray[np.float64] | None:
        """Joint angles (deg) for the video, or None for a robot without joints."""


@runtime_checkable
class ImagerSeam(Protocol):
    """The X-ray pair and its registration.

    Attributes
    ----------
    method : str
        ``"xray"`` or ``"truth"`` (ablation), reported in the summary.
    localization : str
        How the target position is measured (see ``LOCALIZATION``).
    """

    method: str

    @property
    def localization(self) -> str:
        """How the target position is measured at each pair."""

    def acquire(self, time_s: float, pose_true: NDArray[np.float64],
                target_offset_true_room: NDArray[np.float64]) -> ImageResult:
        """Image the true anatomy at ``time_s`` (spine pose (6,) mm/deg, target offset (3,)
        mm room) and register the pair."""


@runtime_checkable
class CorrelationSeam(Protocol):
    """A rolling correlation model: external signal → target position (room mm)."""

    @property
    def fitted(self) -> bool:
        """True once a point was added."""

    @property
    def ext_range(self) -> tuple[float, float]:
        """Lowest and highest external value of the fitted points (mm)."""

    def add(self, ext: float, internal: ArrayLike, ext_velocity: float = 0.0, *,
            time_s: float = 0.0) -> CorrelationStatus:
        """Add an X-ray point and refit."""

    def predict_one(self, ext: float, ext_velocity: float = 0.0,
                    time_s: float | None = None) -> NDArray[np.float64]:
        """Target position (3,) (mm, room)."""

    def predict(self, ext: ArrayLike, ext_velocity: ArrayLike, time_s: ArrayLike
                ) -> NDArray[np.float64]:
        """Target positions (n, 3) (mm, room) for n samples (truth-side bookkeeping)."""


@runtime_checkable
class PredictorSeam(Protocol):
    """A causal latency predictor of the external signal."""

    horizon_s: float
    dt_s: float

    def update(self, sample: ArrayLike) -> NDArray[np.float64]:
        """Take the newest sample (NaN when dropped); return the prediction ``horizon_s``
        ahead."""

    @property
    def guard_stats(self) -> dict:
        """What the predictor's guard did (``{"guarded": False}`` without one)."""

    @property
    def guard_activity(self) -> tuple[int, int, bool]:
        """(gated samples, steps accepted, in fallback now)."""
