"""The imaging event: one X-ray pair of the TRUE anatomy → registration → estimates.

The loop calls imaging through one seam, :meth:`Imager.acquire`, so the way the anatomy pose
is measured can be swapped without touching the loop:

* ``"xray"`` — a live X-ray pair of the true anatomy (``cyberknife_sim.imaging``) registered
  to the planning CT by ``cyberknife_sim.registration.Registration2D3D``.
* ``"truth"`` — ideal registration: the true pose of the imaged anatomy. Used to measure the
  other stages alone (ablation) and in tests of the loop logic. Never the default.

What the pair shows (``motion.breathing_moves_spine``):

* ``True`` (a spinal target, the default): breathing (and coughs, a target trace) moves the
  imaged vertebrae rigidly with the target, so the pair is rendered at the full true anatomy
  pose ``translation(o(t)) @ matrix_from_pose(spine_pose(t)) @ planned_room_from_ct`` and the
  registration measures the target: ``target_room = apply_transform(room_from_ct, target_ct)``.
  Nothing is taken from truth.
* ``False`` (a soft-tissue target the spine images do not show): the pair is rendered at the
  spine pose only and the target's offset from the spine is localized by an explicit SENSOR
  MODEL, the true offset plus Gaussian noise of ``target_localization_sigma_mm`` per axis
  (drawn from the run's generator). Runs label this in ``summary.json``
  (``target_localization``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["IMAGING_METHODS", "LOCALIZATION", "ImageResult", "Imager", "TruthImager",
           "make_imager"]

IMAGING_METHODS = ("xray", "truth")
ImagingMethod = Literal["xray", "truth"]


LOCALIZATION = {
    True: "registration (the X-ray pair images the target's motion with the spine)",
    False: "sensor model (soft-tissue target: true offset from the spine + Gaussian noise)",
}
"""How the target position is measured at an X-ray pair, by ``breathing_moves_spine``."""


@dataclass(frozen=True)
class ImageResult:
    """What one imaging event reports to the loop.

    Attributes
    ----------
    time_s : float
        Exposure time (s).
    pose : ndarray, shape (6,)
        Registered pose ``(tx, ty, tz, rx, ry, rz)`` of the imaged anatomy (mm, deg; NaN
        when rejected).
    pose_true : ndarray, shape (6,)
        True pose of the imaged anatomy (mm, deg): the spine pose plus the breathing offset
        when that moves the vertebrae (truth, for error bookkeeping only).
    target_room : ndarray, shape (3,)
        Measured target position at the planned target point (mm, room): the registered
        anatomy transform applied to the target, plus the sensor-model offset for a
        soft-tissue target (NaN when rejected).
    accepted : bool
        False when the registration is judged to have failed.
    reason : str
        Why it was rejected ("" when accepted).
    elapsed_ms : float
        Wall-clock time of the registration (informational; not used by the loop, so runs
        stay deterministic).
    blank : bool
        True when the exposure was a fault-injected tube misfire.
    """

    time_s: float
    pose: NDArray[np.float64]
    pose_true: NDArray[np.float64]
    target_room: NDArray[np.float64]
    accepted: bool
    reason: str = ""
    elapsed_ms: float = 0.0
    blank: bool = False
    extra: dict = field(default_factory=dict)


class Imager:
    """Base of the imaging seam; subclasses implement :meth:`_register`.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the sensor-model noise (and of the X-ray noise for ``"xray"``).
    breathing_moves_spine : bool
        True: the pair images the breathing offset with the vertebrae (spinal target);
        False: it shows the spine only and the offset is measured by the sensor model.
    target_localization_sigma_mm : float
        1-sigma noise per axis of the sensor model (mm; soft-tissue targets only).
    blank_times_s : sequence of float
        Fault injection: the first exposure at or after each of these times is blank.
    """

    method = ""

    def __init__(self, *, rng: np.random.Generator, breathing_moves_spine: bool = True,
                 target_localization_sigma_mm: float = 0.1,
                 blank_times_s: tuple[float, ...] = ()):
        self.rng = rng
        self.breathing_moves_spine = bool(breathing_moves_spine)
        self.sigma_mm = float(target_localization_sigma_mm)
        self._pending_blanks = sorted(float(t) for t in blank_times_s)

    @property
    def localization(self) -> str:
        """How the target is measured (see :data:`LOCALIZATION`)."""
        return LOCALIZATION[self.breathing_moves_spine]

    def acquire(self, time_s: float, pose_true: NDArray[np.float64],
                target_offset_true_room: NDArray[np.float64]) -> ImageResult:
        """Image the true anatomy at ``time_s`` and register it.

        Parameters
        ----------
        time_s : float
            Exposure time (s).
        pose_true : ndarray, shape (6,)
            True spine pose (mm, deg) at that time.
        target_offset_true_room : ndarray, shape (3,)
            True target offset from the spine (breathing, cough, trace; mm, room).
        """
        blank = bool(self._pending_blanks and self._pending_blanks[0] <= time_s)
        if blank:
            self._pending_blanks.pop(0)
        imaged = np.array(pose_true, dtype=np.float64)
        if self.breathing_moves_spine:  # translation(o) @ matrix_from_pose(p): adds o to t
            imaged[:3] += target_offset_true_room
        pose, target_room, accepted, reason, elapsed_ms = self._register(time_s, imaged,
                                                                          blank=blank)
        if not self.breathing_moves_spine:
            target_room = target_room + target_offset_true_room \
                + self.rng.normal(0.0, self.sigma_mm, 3)
        return ImageResult(time_s=float(time_s), pose=np.asarray(pose, dtype=np.float64),
                           pose_true=imaged, target_room=np.asarray(target_room, np.float64),
                           accepted=bool(accepted), reason=reason,
                           elapsed_ms=float(elapsed_ms), blank=blank)

    def _register(self, time_s: float, pose_imaged: NDArray[np.float64], *, blank: bool
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64], bool, str, float]:
        """(pose (6,), target at the planned target point (3,) mm room, accepted, reason,
        elapsed ms) of a pair of the anatomy at ``pose_imaged``."""
        raise NotImplementedError


class TruthImager(Imager):
    """Ideal registration: reports the true imaged pose (a blank exposure still fails).

    The planned target is at the room origin (DESIGN.md), so the measured target position
    is the pose's translation.
    """

    method = "truth"

    def _register(self, time_s, pose_imaged, *, blank):
        if blank:
            return np.full(6, np.nan), np.full(3, np.nan), False, \
                "blank image (tube misfire)", 0.0
        pose = np.array(pose_imaged, dtype=np.float64)
        return pose, pose[:3].copy(), True, "", 0.0


class XrayImager(Imager):
    """Live X-ray pair of the true anatomy + fiducial-free 2D/3D registration.

    Parameters
    ----------
    scene : Scene
        Room imaging geometry, X-ray physics, patient.
    **kwargs
        See :class:`Imager`.
    """

    method = "xray"

    def __init__(self, scene, **kwargs):
        super().__init__(**kwargs)
        from ._xray_chain import XrayChain  # heavy imports only when used

        self.chain = XrayChain(scene, rng=self.rng)

    def _register(self, time_s, pose_imaged, *, blank):
        return self.chain.image_and_register(pose_imaged, blank=blank)


def make_imager(method: ImagingMethod, scene, *, rng: np.random.Generator,
                target_localization_sigma_mm: float = 0.1,
                blank_times_s: tuple[float, ...] = ()) -> Imager:
    """An imager by name (``"xray"`` or ``"truth"``), see the module docstring; what the pair
    shows follows ``scene.motion.breathing_moves_spine``."""
    kwargs = {"rng": rng, "target_localization_sigma_mm": target_localization_sigma_mm,
              "blank_times_s": tuple(blank_times_s),
              "breathing_moves_spine": scene.motion.breathing_moves_spine}
    if method == "truth":
        return TruthImager(**kwargs)
    if method == "xray":
        return XrayImager(scene, **kwargs)
    raise ValueError(f"imaging must be one of {', '.join(IMAGING_METHODS)} (got {method!r})")
