"""Realistic live X-ray pair: the TRUTH patient imaged by its own physics, registered to DRRs
of the PLANNING CT (DESIGN.md, imaging realism).

Per imaging event:

1. The truth patient (``cyberknife_sim.truth``: mass particles of a fine 4D phantom, or a
   user's CT with a synthetic breathing deformation) is put in its state at the exposure:
   soft tissue deformed by the breath level, ribs rotated about their joints, each vertebra
   moved by its own share of the target's breathing offset, then the whole patient placed by
   the true set-up pose (``matrix_from_pose(spine_pose) @ planned_room_from_ct``).
2. Each view's projector (``imaging._splat``, a voxel-driven splatting projector, not the
   registration's ray-driven shear-warp) gives per-material areal densities (g/cm²).
3. Each view's detector (``imaging.xrayphysics``: a spekpy spectrum with the heel effect,
   NIST attenuation, scatter, CsI flat panel with gain/offset maps, dead pixels, lag and
   noise) turns them into 16-bit counts; the clinic's flat-field calibration and log give
   line-integral estimates.
4. ``registration.Registration2D3D`` registers them to DRRs of the planning CT (a separate
   simulated acquisition of the truth, or the user's CT).

Nothing here is shared with the registration but the view geometry.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..anatomy import load_patient, planned_room_from_ct
from ..geometry import apply_transform, matrix_from_pose
from ..imaging import ViewGeometry, imaging_pair
from ..registration import Registration2D3D, RegistrationResult
from ..scene import Scene

__all__ = ["LAG_MEMORY_S", "RealisticXrayChain"]

LAG_MEMORY_S = 2.0
"""A frame this long (s) or longer after the previous exposure carries no detector lag."""


def _view_in(frame_from_room: NDArray[np.float64], view: ViewGeometry) -> ViewGeometry:
    """``view`` expressed in another frame (a rigid transform of its source, detector
    centre and axes); projecting points of that frame with it equals projecting their room
    positions with ``view``."""
    rot, t = frame_from_room[:3, :3], frame_from_room[:3, 3]
    return ViewGeometry(name=view.name, source_room=rot @ view.source_room + t,
                        detector_center_room=rot @ view.detector_center_room + t,
                        row_direction_room=rot @ view.row_direction_room,
                        col_direction_room=rot @ view.col_direction_room,
                        pixel_spacing_mm=view.pixel_spacing_mm, shape=view.shape)


class RealisticXrayChain:
    """Images the truth patient and registers the pair (see the module docstring).

    Parameters
    ----------
    scene : Scene
        Patient (planning CT and truth), room imaging geometry, live X-ray physics.
    """

    def __init__(self, scene: Scene):
        from ..imaging._splat import SplatWorkspace, project_sets_pair
        from ..imaging.xrayphysics import LiveXrayPhysics
        from ..truth import load_truth_patient

        im = scene.room.imaging
        self.patient = load_patient(scene)
        self.truth = load_truth_patient(scene)
        self.views = imaging_pair(im)
        self._project = project_sets_pair
        self._splat_workspace = SplatWorkspace()  # chunk buffers kept between exposures
        seed = int(scene.simulation.seed)
        self.physics = [LiveXrayPhysics(im.live, v, detector_seed=1000 * seed + k)
                        for k, v in enumerate(self.views)]
        for ph in self.physics:  # the clinic's dark/flood calibration, before treatment
            ph.calibrate()
        self._last_exposure_s: float | None = None
        self._mu_water_per_mm = float(im.mu_water_per_mm)
        self._registration: Registration2D3D | None = None
        self.truth_room_from_ct = planned_room_from_ct(self.truth.target_ct_mm)
        self.spine_breathes = bool(scene.motion.breathing_moves_spine)
        self.last_pose: NDArray[np.float64] | None = None

    @property
    def registration(self) -> Registration2D3D:
        """The registration to DRRs of the planning CT (built on first use)."""
        if self._registration is None:
            self._registration = Registration2D3D(
                self.patient.volume, self.views, target_ct_mm=self.patient.target_ct_mm,
                mu_water_per_mm=self._mu_water_per_mm,
                planned_room_from_ct=self.patient.planned_room_from_ct)
        return self._registration

    def areal_densities(self, pose_spine: NDArray[np.float64],
                        offset_room: NDArray[np.float64], breath_level: float
                        ) -> list[NDArray[np.float32]]:
        """Per-view areal density maps (4, rows, cols), g/cm², of the truth patient at the
        given set-up pose (mm, deg), target offset (room mm) and breath level."""
        room_from_ct = matrix_from_pose(pose_spine) @ self.truth_room_from_ct
        rot = room_from_ct[:3, :3]
        offset_ct = rot.T @ np.asarray(offset_room, np.float64) if self.spine_breathes \
            else np.zeros(3)
        states = self.truth.positions_ct(float(breath_level), offset_ct)
        # the rigid set-up pose moves the views into the truth's CT frame (4 vectors) instead
        # of moving ~4 M particles into the room
        ct_from_room = np.linalg.inv(room_from_ct)
        views_ct = [_view_in(ct_from_room, v) for v in self.views]
        groups: dict[float, list] = {}
        for item in states:  # (set, positions) or, for a 4D CT, (set, positions, weight)
            weight = float(item[2]) if len(item) == 3 else 1.0
            groups.setdefault(weight, []).append((item[0], item[1]))
        maps: list[NDArray[np.float32]] | None = None
        for weight, items in groups.items():
            # both views in one pass over the particles; the pixel gain (invariant under the
            # rigid move) from the fixed room views, cached
            part = self._project(items, views_ct, gain_views=self.views,
                                 workspace=self._splat_workspace)
            if maps is None and weight == 1.0:
                maps = part  # 0 + 1·x: the same bits as the weighted sum below
            elif maps is None:
                maps = [np.float32(weight) * p for p in part]
            else:
                for out, p in zip(maps, part, strict=True):
                    out += np.float32(weight) * p
        if maps is None:
            maps = [np.zeros((4, *v.shape), np.float32) for v in self.views]
        return maps

    def live_counts(self, pose_spine: NDArray[np.float64], offset_room: NDArray[np.float64],
                    breath_level: float, *, blank: bool = False, rng: np.random.Generator,
                    time_s: float | None = None) -> list[NDArray[np.uint16]]:
        """The two raw detector frames (uint16 counts) of the truth patient; a blank exposure
        (tube misfire) is a dark frame. Frames more than :data:`LAG_MEMORY_S` after the
        previous exposure carry no lag (the panel's lag decays within about a second)."""
        if time_s is not None:
            if self._last_exposure_s is None or time_s - self._last_exposure_s > LAG_MEMORY_S:
                for ph in self.physics:
                    ph.reset_lag()
            self._last_exposure_s = float(time_s)
        if blank:
            return [ph.acquire_dark(rng) for ph in self.physics]
        maps = self.areal_densities(pose_spine, offset_room, breath_level)
        return [ph.acquire(m, rng) for ph, m in zip(self.physics, maps, strict=True)]

    def live_pair(self, pose_spine: NDArray[np.float64], offset_room: NDArray[np.float64],
                  breath_level: float, *, blank: bool = False, rng: np.random.Generator,
                  time_s: float | None = None) -> list[NDArray[np.float32]]:
        """Two flat-field corrected, log-transformed images (line-integral estimates, what
        the registration receives) of the truth patient; see :meth:`live_counts`."""
        counts = self.live_counts(pose_spine, offset_room, breath_level, blank=blank, rng=rng,
                                  time_s=time_s)
        return [ph.to_line_integrals(c) for ph, c in zip(self.physics, counts, strict=True)]

    def image_and_register(self, pose_spine: NDArray[np.float64],
                           offset_room: NDArray[np.float64], breath_level: float, *,
                           blank: bool = False, rng: np.random.Generator,
                           time_s: float | None = None
                           ) -> tuple[RegistrationResult, NDArray[np.float64]]:
        """Image the truth and register the pair; returns the registration's result and the
        planning target at the registered pose (mm, room)."""
        images = self.live_pair(pose_spine, offset_room, breath_level, blank=blank, rng=rng,
                                time_s=time_s)
        res = self.registration.register(images, initial_pose=self.last_pose)
        if res.accepted:
            self.last_pose = np.array(res.pose, dtype=np.float64)
        target_room = apply_transform(res.room_from_ct, self.patient.target_ct_mm)
        return res, np.asarray(target_room, np.float64)
