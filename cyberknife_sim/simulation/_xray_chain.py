"""Live X-ray pair of the true anatomy and its fiducial-free registration (the ``"xray"`` seam).

Per imaging event: the planning CT is placed at the TRUE pose of the imaged anatomy
(``room_from_ct = matrix_from_pose(pose_true) @ planned_room_from_ct``; for a spinal target
that pose includes the breathing offset, see :mod:`._imaging`), DRRs of both views
are rendered (``imaging.DrrRenderer``), turned into noisy 16-bit detector counts
(``imaging.XrayModel``), and registered (``registration.Registration2D3D``) starting from
the previous accepted estimate. A blank exposure (fault injection: tube misfire) is a frame
of electronic noise only.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..anatomy import load_patient
from ..geometry import apply_transform, matrix_from_pose
from ..imaging import DrrRenderer, XrayModel, imaging_pair
from ..registration import Registration2D3D, RegistrationResult
from ..scene import Scene

__all__ = ["XrayChain"]


class XrayChain:
    """Images the true anatomy and registers it (see the module docstring).

    Parameters
    ----------
    scene : Scene
        Patient, room imaging geometry and X-ray physics.
    rng : numpy.random.Generator, optional
        Noise of the live images when a call passes none.
    """

    def __init__(self, scene: Scene, *, rng: np.random.Generator | None = None):
        im = scene.room.imaging
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.patient = load_patient(scene)
        self.views = imaging_pair(im)
        target = self.patient.target_ct_mm
        vol = self.patient.volume
        # the live pair sees the whole patient: every tissue along every ray, not a crop
        self.renderer = DrrRenderer(vol, self.views, mu_water_per_mm=im.mu_water_per_mm)
        self.xray = XrayModel(im.xray, pixel_spacing_mm=self.views[0].pixel_spacing_mm)
        self.registration = Registration2D3D(
            vol, self.views, target_ct_mm=target, mu_water_per_mm=im.mu_water_per_mm,
            planned_room_from_ct=self.patient.planned_room_from_ct,
            open_field_counts=self.xray.open_field_counts)
        self.last_pose: NDArray[np.float64] | None = None

    def live_pair(self, pose_true: NDArray[np.float64], *, blank: bool = False,
                  rng: np.random.Generator | None = None) -> list[NDArray[np.uint16]]:
        """Two live images (uint16 counts) of the anatomy at ``pose_true`` (mm, deg), with
        noise from ``rng`` (default: the chain's generator)."""
        rng = self.rng if rng is None else rng
        if blank:
            sigma = self.xray.settings.electronic_noise_counts
            return [np.clip(np.round(rng.normal(0.0, sigma, v.shape)), 0, 65535
                            ).astype(np.uint16) for v in self.views]
        room_from_ct = matrix_from_pose(pose_true) @ self.patient.planned_room_from_ct
        return [self.xray.simulate(li, rng) for li in self.renderer.render(room_from_ct)]

    def image_and_register(self, pose_true: NDArray[np.float64], *, blank: bool = False,
                           rng: np.random.Generator | None = None
                           ) -> tuple[RegistrationResult, NDArray[np.float64]]:
        """Image the anatomy at ``pose_true`` (mm, deg) with noise from ``rng`` and register
        the pair.

        Returns
        -------
        result : RegistrationResult
            The registration's result, unchanged.
        target_room : ndarray, shape (3,)
            The patient's target at the registered pose,
            ``apply_transform(result.room_from_ct, target_ct)`` (mm, room).
        """
        images = self.live_pair(pose_true, blank=blank, rng=rng)
        res = self.registration.register(images, initial_pose=self.last_pose)
        if res.accepted:
            self.last_pose = np.array(res.pose, dtype=np.float64)
        target_room = apply_transform(res.room_from_ct, self.patient.target_ct_mm)
        return res, np.asarray(target_room, np.float64)
