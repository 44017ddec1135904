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

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from ..geometry import matrix_from_pose
from ..registration import RegistrationResult
from ..scene import Scene

__all__ = ["IMAGING_METHODS", "LOCALIZATION", "ImageResult", "Imager", "TruthImager",
           "make_imager", "truth_registration"]

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
    registration : RegistrationResult
        The registration's own result, passed through unchanged (pose, ``room_from_ct``,
        verdict, quality measures, timings). For ideal registration (``"truth"``) it holds
        the true pose.
    pose_true : ndarray, shape (6,)
        True pose of the imaged anatomy (mm, deg): the spine pose plus the breathing offset
        when that moves the vertebrae (truth, for error bookkeeping only).
    target_room : ndarray, shape (3,)
        Measured target position at the planned target point (mm, room): the registered
        anatomy transform applied to the target, plus the sensor-model offset for a
        soft-tissue target (NaN when rejected).
    blank : bool
        True when the exposure was a fault-injected tube misfire.
    """

    time_s: float
    registration: RegistrationResult
    pose_true: NDArray[np.float64]
    target_room: NDArray[np.float64]
    blank: bool = False

    @property
    def pose(self) -> NDArray[np.float64]:
        """Registered pose ``(tx, ty, tz, rx, ry, rz)`` (mm, deg)."""
        return self.registration.pose

    @property
    def accepted(self) -> bool:
        """False when the registration is judged to have failed."""
        return bool(self.registration.accepted)

    @property
    def reason(self) -> str:
        """Why the pair was rejected ("" when accepted)."""
        return "" if self.registration.accepted else self.registration.reason

    @property
    def elapsed_ms(self) -> float:
        """Wall-clock time of the registration (informational; the loop never uses it, so
        runs stay deterministic)."""
        return float(self.registration.elapsed_ms)


class Imager:
    """Base of the imaging seam; subclasses implement :meth:`_register`.

    Parameters
    ----------
    rng : numpy.random.Generator
        One seed is drawn from it here; exposure ``k`` draws its X-ray noise and its
        sensor-model noise from generators keyed by (that seed, ``k``), so an image's noise
        does not depend on what earlier images drew (nor on the run's length).
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
        self._seed = int(rng.integers(0, 2**63 - 1))
        self.exposures = 0
        self.breathing_moves_spine = bool(breathing_moves_spine)
        self.sigma_mm = float(target_localization_sigma_mm)
        self._pending_blanks = sorted(float(t) for t in blank_times_s)
        self.exposure_pose_spine = np.zeros(6)
        self.exposure_offset_room = np.zeros(3)

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
        k = self.exposures
        self.exposures += 1
        # what the pose is made of, for imagers of a deforming patient (the realistic path)
        self.exposure_pose_spine = np.asarray(pose_true, np.float64)
        self.exposure_offset_room = np.asarray(target_offset_true_room, np.float64)
        reg, target_room = self._register(time_s, imaged, blank=blank,
                                          rng=np.random.default_rng([self._seed, k, 0]))
        if not self.breathing_moves_spine:
            sensor = np.random.default_rng([self._seed, k, 1])
            target_room = target_room + target_offset_true_room \
                + sensor.normal(0.0, self.sigma_mm, 3)
        return ImageResult(time_s=float(time_s), registration=reg, pose_true=imaged,
                           target_room=np.asarray(target_room, np.float64), blank=blank)

    def _register(self, time_s: float, pose_imaged: NDArray[np.float64], *, blank: bool,
                  rng: np.random.Generator
                  ) -> tuple[RegistrationResult, NDArray[np.float64]]:
        """The registration result of a pair of the anatomy at ``pose_imaged`` and the
        measured target at the planned target point (3,) (mm, room); ``rng`` is this
        exposure's noise. ``pose_imaged`` is the set-up pose :attr:`exposure_pose_spine`
        plus, for a spinal target, the breathing offset :attr:`exposure_offset_room` (both
        set by :meth:`acquire` before this call)."""
        raise NotImplementedError


class TruthImager(Imager):
    """Ideal registration: reports the true imaged pose (a blank exposure still fails).

    The planned target is at the room origin (DESIGN.md), so the measured target position
    is the pose's translation.
    """

    method = "truth"

    def _register(self, time_s, pose_imaged, *, blank, rng):
        return truth_registration(pose_imaged, blank=blank)


class XrayImager(Imager):
    """Live X-ray pair + fiducial-free 2D/3D registration to the planning CT.

    ``room.imaging.live_images`` says how the pair is made: ``realistic`` images the 4D
    truth patient at the exposure's breath level with its own projector and physics
    (:class:`~._live_chain.RealisticXrayChain`); ``ideal`` (ablation) renders the planning CT
    itself at the imaged pose (:class:`~._xray_chain.XrayChain`).

    Parameters
    ----------
    scene : Scene
        Room imaging geometry, X-ray physics, patient.
    breathing : callable, optional
        ``breathing(t_s) -> breath level`` (0 exhale, ~1 inhale) of the internal anatomy; the
        realistic path needs it (default: always exhale).
    **kwargs
        See :class:`Imager`.
    """

    method = "xray"

    def __init__(self, scene: Scene, *, breathing=None, **kwargs):
        super().__init__(**kwargs)
        self.live_images = scene.room.imaging.live_images
        self.breathing = breathing
        if self.live_images == "realistic":
            from ._live_chain import RealisticXrayChain  # heavy imports only when used

            self.chain = RealisticXrayChain(scene)
        else:
            from ._xray_chain import XrayChain

            self.chain = XrayChain(scene)

    def _register(self, time_s, pose_imaged, *, blank, rng):
        if self.live_images == "realistic":
            level = 0.0 if self.breathing is None else \
                float(np.asarray(self.breathing(np.array([time_s])))[0])
            return self.chain.image_and_register(
                self.exposure_pose_spine, self.exposure_offset_room, level, blank=blank,
                rng=rng, time_s=time_s)
        return self.chain.image_and_register(pose_imaged, blank=blank, rng=rng)


def truth_registration(pose: NDArray[np.float64], *, blank: bool = False
                       ) -> tuple[RegistrationResult, NDArray[np.float64]]:
    """Ideal registration of the anatomy at ``pose`` (mm, deg), and the target it measures.

    ``room_from_ct`` is the anatomy's motion relative to the planned alignment
    (``matrix_from_pose(pose)``: the ideal imager does not load the CT). A blank exposure is
    rejected with NaN results.
    """
    if blank:
        nan = np.full(6, np.nan)
        return RegistrationResult(pose=nan, room_from_ct=np.full((4, 4), np.nan),
                                  accepted=False, reason="blank image (tube misfire)",
                                  quality={"method": "truth"}, elapsed_ms=0.0), np.full(3, np.nan)
    pose = np.array(pose, dtype=np.float64)
    reg = RegistrationResult(pose=pose, room_from_ct=matrix_from_pose(pose), accepted=True,
                             reason="ok", quality={"method": "truth"}, elapsed_ms=0.0)
    return reg, pose[:3].copy()


def make_imager(method: ImagingMethod, scene: Scene, *, rng: np.random.Generator,
                breathing=None) -> Imager:
    """An imager by name (``"xray"`` or ``"truth"``), see the module docstring.

    What the pair shows follows ``scene.motion.breathing_moves_spine``; the sensor model's
    noise is ``scene.tracking.imaging.target_localization_sigma_mm`` and the fault-injected
    blank exposures are ``scene.simulation.blank_xray_at_s``.
    """
    kwargs = {"rng": rng,
              "target_localization_sigma_mm":
                  scene.tracking.imaging.target_localization_sigma_mm,
              "blank_times_s": tuple(scene.simulation.blank_xray_at_s),
              "breathing_moves_spine": scene.motion.breathing_moves_spine}
    if method == "truth":
        return TruthImager(**kwargs)
    if method == "xray":
        return XrayImager(scene, breathing=breathing, **kwargs)
    raise ValueError(f"imaging must be one of {', '.join(IMAGING_METHODS)} (got {method!r})")
