"""The patient of a scene: planning CT, target and the planned alignment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from .._npz_cache import NpzCache, source_hash
from ..errors import InputError
from ..geometry import translation
from .io import read_ct
from .phantom import PhantomTruth, make_phantom
from .volume import Volume

if TYPE_CHECKING:  # pragma: no cover
    from ..scene import Scene

__all__ = ["Patient", "load_patient", "planned_room_from_ct"]


def planned_room_from_ct(target_ct_mm) -> NDArray[np.float64]:
    """Planned alignment (DESIGN.md): the pure translation putting the target at the room
    origin, ``room_from_ct`` (4x4, mm)."""
    t = np.asarray(target_ct_mm, dtype=np.float64)
    if t.shape != (3,) or not np.all(np.isfinite(t)):
        raise InputError(f"target_ct_mm must be 3 finite numbers (got {t.tolist()})")
    return translation(-t)


@dataclass(frozen=True, eq=False)
class Patient:
    """Planning CT of a scene with its target.

    Attributes
    ----------
    volume : Volume
        The planning CT (HU, LPS mm).
    target_ct_mm : ndarray, shape (3,)
        Target center in CT mm.
    target_radius_mm : float
        Target radius from the scene (mm).
    truth : PhantomTruth or None
        Phantom ground truth; None for a CT read from a file.
    labels : ndarray (uint8) or None
        Phantom tissue labels (``truth.tissue_labels``); None for a CT file.
    planned_room_from_ct : ndarray, shape (4, 4)
        Pure translation moving the target to the room origin.
    """

    volume: Volume
    target_ct_mm: NDArray[np.float64]
    target_radius_mm: float
    truth: PhantomTruth | None
    labels: NDArray[np.uint8] | None
    planned_room_from_ct: NDArray[np.float64]


def load_patient(scene: Scene) -> Patient:
    """Build the scene's patient: the phantom preset ``scene.patient.phantom`` generated
    with ``scene.simulation.seed``, or the CT file ``scene.patient.ct``.

    The target is the scene's (``target_ct_mm`` in LPS mm, ``target_ras_mm`` in RAS mm or
    ``target_voxel`` as a voxel index), else the phantom's lesion center. Raises InputError
    when the CT cannot be read, the preset is unknown or the target lies outside the CT.
    """
    ps = scene.patient
    truth = None
    labels = None
    if ps.uses_phantom:
        ph = make_phantom(ps.phantom or "default", seed=int(scene.simulation.seed))
        volume, truth, labels = ph.volume, ph.truth, ph.labels
        if scene.room.imaging.live_images == "realistic":
            volume, labels = _acquired_planning_ct(scene, ph.volume, ph.labels)
    else:
        volume = read_ct(ps.ct)
    target = ps.target_lps_mm(volume.ct_from_ijk)
    if target is None:
        target = np.array(truth.target_center_ct_mm, dtype=np.float64)
        if scene.room.imaging.live_images == "realistic":  # where the planning CT shows it
            from ..truth._scene import planning_offset_ct_mm

            target = target + planning_offset_ct_mm(scene)
    if not bool(volume.contains_ct(target)[0]):
        corners = np.round(volume.corners_ct()[[0, -1]], 1).tolist()
        key = next((k for k in ("target_ct_mm", "target_ras_mm", "target_voxel")
                    if getattr(ps, k) is not None), "target_ct_mm")
        raise InputError(f"patient.{key}: the target (LPS mm {np.round(target, 2).tolist()}) "
                         f"lies outside the CT {volume.name} (corner voxels at {corners})")
    target.flags.writeable = False
    room_from_ct = planned_room_from_ct(target)
    room_from_ct.flags.writeable = False
    return Patient(volume=volume, target_ct_mm=target, target_radius_mm=float(ps.target_radius_mm),
                   truth=truth, labels=labels, planned_room_from_ct=room_from_ct)


def _acquired_planning_ct(scene: Scene, painted: Volume, painted_labels: NDArray[np.uint8]
                          ) -> tuple[Volume, NDArray[np.uint8] | None]:
    """The phantom's planning CT as a simulated acquisition of its 4D truth patient
    (``patient.planning_ct``; cached per scene patient, seed and breathing). The painted
    labels are kept when the acquisition grid is the painted grid, else None."""
    key = (scene.patient.phantom, scene.patient.truth, scene.patient.planning_ct,
           int(scene.simulation.seed), scene.motion.breathing, scene.motion.breathing_moves_spine)
    hit = _ACQUIRED.get(key)
    if hit is None:
        from ..truth._scene import _phantom_truth, acquire_planning_ct

        def build() -> Volume:
            model = _phantom_truth(scene.patient.phantom or "default",
                                   int(scene.simulation.seed), scene.patient.truth)
            return acquire_planning_ct(scene, model, painted=painted)

        volume = _PLANNING_CT_CACHE.get_or_build(
            _planning_ct_key(scene, painted), build,
            lambda v: {"hu": np.asarray(v.hu), "ct_from_ijk": v.ct_from_ijk,
                       "name": np.array(v.name)},
            lambda a: Volume(a["hu"], a["ct_from_ijk"], str(a["name"])))
        same_grid = (volume.shape == painted.shape
                     and np.allclose(volume.ct_from_ijk, painted.ct_from_ijk, atol=1e-6))
        hit = (volume, painted_labels if same_grid else None)
        _ACQUIRED.clear()  # one planning CT in memory at a time
        _ACQUIRED[key] = hit
    return hit


_ACQUIRED: dict = {}
_PLANNING_CT_CACHE = NpzCache("planning_ct", switch_env="CKSIM_PLANNING_CT_CACHE")


def _planning_ct_key(scene: Scene, painted: Volume) -> str:
    """Disk-cache key of a phantom's acquired planning CT: everything the acquisition reads
    (phantom, truth, planning-CT settings, seed, breathing, the painted grid) and the code."""
    from .. import __version__

    m, ps = scene.motion, scene.patient
    return NpzCache.key({
        "phantom": ps.phantom, "truth": ps.truth.model_dump(mode="json"),
        "planning_ct": ps.planning_ct.model_dump(mode="json"),
        "seed": int(scene.simulation.seed), "breathing": m.breathing.model_dump(mode="json"),
        "moves_spine": bool(m.breathing_moves_spine), "painted_shape": list(painted.shape),
        "painted_ct_from_ijk": np.asarray(painted.ct_from_ijk).tolist(),
        "version": __version__, "src": source_hash(["truth/*.py", "anatomy/*.py"])})
