"""The imaging event: one X-ray pair of the TRUE anatomy → registration → estimates.

The loop calls imaging through one seam, :meth:`Imager.acquire`, so the way the spine pose is
measured can be swapped without touching the loop:

* ``"xray"`` — a live X-ray pair of the true anatomy (``cyberknife_sim.imaging``) registered
  to the planning CT by ``cyberknife_sim.registration.Registration2D3D``.
* ``"truth"`` — ideal registration: the true spine pose. Used to measure the other stages
  alone (ablation) and in tests of the loop logic. Never the default.

The breathing offset of the target relative to the spine is not a rigid motion of the CT,
so a rigid DRR/registration chain cannot measure it. The loop therefore models target
localization at each image as the true offset plus Gaussian noise of
``target_localization_sigma_mm`` per axis (an explicit sensor model, drawn from the run's
generator), as Synchrony-style systems localize the target itself in the X-ray pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["IMAGING_METHODS", "ImageResult", "Imager", "make_imager"]

IMAGING_METHODS = ("xray", "truth")
ImagingMethod = Literal["xray", "truth"]


@dataclass(frozen=True)
class ImageResult:
    """What one imaging event reports to the loop.

    Attributes
    ----------
    time_s : float
        Exposure time (s).
    pose : ndarray, shape (6,)
        Estimated spine pose ``(tx, ty, tz, rx, ry, rz)`` (mm, deg; NaN when rejected).
    target_offset_room : ndarray, shape (3,)
        Measured target offset from the spine (mm, room).
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
    target_offset_room: NDArray[np.float64]
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
        Source of the target-localization noise (and of the X-ray noise for ``"xray"``).
    target_localization_sigma_mm : float
        1-sigma noise per axis of the measured target offset (mm).
    blank_times_s : sequence of float
        Fault injection: the first exposure at or after each of these times is blank.
    """

    method = ""

    def __init__(self, *, rng: np.random.Generator, target_localization_sigma_mm: float = 0.1,
                 blank_times_s: tuple[float, ...] = ()):
        self.rng = rng
        self.sigma_mm = float(target_localization_sigma_mm)
        self._pending_blanks = sorted(float(t) for t in blank_times_s)

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
            True target offset from the spine (mm, room).
        """
        blank = bool(self._pending_blanks and self._pending_blanks[0] <= time_s)
        if blank:
            self._pending_blanks.pop(0)
        offset = target_offset_true_room + self.rng.normal(0.0, self.sigma_mm, 3)
        pose, accepted, reason, elapsed_ms = self._register(time_s, pose_true, blank=blank)
        return ImageResult(time_s=float(time_s), pose=np.asarray(pose, dtype=np.float64),
                           target_offset_room=offset, accepted=bool(accepted), reason=reason,
                           elapsed_ms=float(elapsed_ms), blank=blank)

    def _register(self, time_s: float, pose_true: NDArray[np.float64], *, blank: bool
                  ) -> tuple[NDArray[np.float64], bool, str, float]:
        raise NotImplementedError


class TruthImager(Imager):
    """Ideal registration: reports the true pose (a blank exposure still fails)."""

    method = "truth"

    def _register(self, time_s, pose_true, *, blank):
        if blank:
            return np.full(6, np.nan), False, "blank image (tube misfire)", 0.0
        return np.array(pose_true, dtype=np.float64), True, "", 0.0


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

    def _register(self, time_s, pose_true, *, blank):
        return self.chain.image_and_register(pose_true, blank=blank)


def make_imager(method: ImagingMethod, scene, *, rng: np.random.Generator,
                target_localization_sigma_mm: float = 0.1,
                blank_times_s: tuple[float, ...] = ()) -> Imager:
    """An imager by name (``"xray"`` or ``"truth"``), see the module docstring."""
    kwargs = {"rng": rng, "target_localization_sigma_mm": target_localization_sigma_mm,
              "blank_times_s": tuple(blank_times_s)}
    if method == "truth":
        return TruthImager(**kwargs)
    if method == "xray":
        return XrayImager(scene, **kwargs)
    raise ValueError(f"imaging must be one of {', '.join(IMAGING_METHODS)} (got {method!r})")
