"""A scene's truth patient and its planning CT acquisition.

* Phantom scenes: the truth is the fine 4D phantom (:func:`build_truth_phantom`, same preset
  and seed as the painted phantom, same CT frame); the planning CT is a simulated acquisition
  of it (``patient.planning_ct``: phase, slice thickness, pixel, noise) on the painted
  phantom's field of view.
* CT-file scenes: the truth is the user's CT with the documented synthetic breathing
  deformation (:func:`truth_from_ct`), or the 4D CT of ``patient.ct_phases`` (phases
  cross-faded by breath level, :func:`truth_from_4dct`); the planning CT is the file itself.

The diaphragm moves by ``motion.breathing.amplitude_mm`` at breath level 1; the target's
vertebra by the motion truth's target offset (given per call).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:  # pragma: no cover
    from ..anatomy import Volume
    from ..scene import Scene

__all__ = ["SceneTruth", "acquire_planning_ct", "load_truth_patient", "planning_offset_ct_mm"]


@dataclass(frozen=True, eq=False)
class SceneTruth:
    """The truth model of a scene with its breathing amplitude bound.

    Attributes
    ----------
    model : TruthModel
        :class:`TruthPatient` (phantom) or :class:`UserCTTruth` (CT file).
    diaphragm_amplitude_mm : float
        Diaphragm motion at breath level 1 (mm).
    target_ct_mm : ndarray, shape (3,)
        The scene's target in the truth's CT frame at exhale (mm).
    """

    model: Any
    diaphragm_amplitude_mm: float
    target_ct_mm: NDArray[np.float64]

    def positions_ct(self, breath_level: float, target_offset_ct_mm) -> list:
        """(ParticleSet, positions (n, 3) CT mm[, weight]) of the truth at ``breath_level``
        with the target's vertebra moved by ``target_offset_ct_mm``."""
        return self.model.positions_ct(float(breath_level), target_offset_ct_mm,
                                       diaphragm_amplitude_mm=self.diaphragm_amplitude_mm)


def load_truth_patient(scene: Scene) -> SceneTruth:
    """The truth patient of ``scene`` (cached in memory per patient, truth settings, seed
    and breathing amplitude; the phantom's particles also on disk)."""
    from ..anatomy import load_patient

    ps = scene.patient
    patient = load_patient(scene)
    target = np.asarray(patient.target_ct_mm, np.float64)
    if ps.uses_phantom:
        model = _phantom_truth(ps.phantom or "default", int(scene.simulation.seed), ps.truth)
        target = target - planning_offset_ct_mm(scene)  # the truth is at exhale
    elif ps.ct_phases:
        model = _4dct_truth(tuple(str(p) for p in ps.ct_phases), tuple(ps.ct_phase_levels))
    else:
        model = _ct_truth(patient.volume, tuple(target))
    amp = float(scene.motion.breathing.amplitude_mm)
    return SceneTruth(model=model, diaphragm_amplitude_mm=amp, target_ct_mm=target)


@functools.lru_cache(maxsize=2)
def _phantom_truth(preset: str, seed: int, settings):
    from ..anatomy._params import load_preset
    from ._phantom4d import build_truth_phantom

    return build_truth_phantom(load_preset(preset), seed=seed, settings=settings)


@functools.lru_cache(maxsize=2)
def _ct_truth(volume: Volume, target: tuple[float, ...]):
    from ._userct import truth_from_ct

    return truth_from_ct(volume, target_ct_mm=np.asarray(target))


@functools.lru_cache(maxsize=1)
def _4dct_truth(paths: tuple[str, ...], levels: tuple[float, ...]):
    from ._userct import truth_from_4dct

    return truth_from_4dct(paths, levels)


def _inhale_offset_ct_mm(scene: Scene) -> NDArray[np.float64]:
    """The target vertebra's offset at an average inhale (breath level 1; CT mm = room axes
    at the planned alignment); zero when breathing does not move the spine."""
    m = scene.motion
    if not m.breathing_moves_spine:
        return np.zeros(3)
    direction = np.asarray(m.breathing.direction, np.float64)
    return m.breathing.target_amplitude_mm * direction / np.linalg.norm(direction)


def planning_offset_ct_mm(scene: Scene) -> NDArray[np.float64]:
    """Where the target's vertebra sits in the planning CT relative to exhale (CT mm): zero
    at exhale, the breathing offset at inhale (breath level 1), its mean over one breath for
    a free-breathing average; zero when breathing does not move the spine."""
    from ._acquire import breath_phase_levels

    inhale = _inhale_offset_ct_mm(scene)
    phase = scene.patient.planning_ct.phase
    if phase == "exhale":
        return np.zeros(3)
    if phase == "inhale":
        return inhale
    return float(np.mean(breath_phase_levels(8))) * inhale


NOISE_REFERENCE_SLICE_MM = 1.5
"""``patient.planning_ct.noise_hu`` is the noise at this slice thickness; other thicknesses get
``noise_hu * sqrt(1.5 / slice)`` (quantum noise at a fixed dose: Brooks & Di Chiro, Med Phys
1976; Goldman, J Nucl Med Technol 2007)."""


def acquire_planning_ct(scene: Scene, truth_model, *, painted: Volume) -> Volume:
    """The phantom's planning CT: the truth at ``patient.planning_ct.phase`` acquired on the
    painted phantom's field of view at the scene's pixel and slice thickness, with CT noise
    seeded from the scene's seed (int16 HU, identity direction, LPS)."""
    from ._acquire import acquire_ct, planning_positions

    pc = scene.patient.planning_ct
    corners = painted.corners_ct()
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    ni = int(round((hi[0] - lo[0]) / pc.pixel_mm)) + 1
    nj = int(round((hi[1] - lo[1]) / pc.pixel_mm)) + 1
    nk = int(np.floor((hi[2] - lo[2]) / pc.slice_thickness_mm + 1e-6)) + 1
    center = 0.5 * (lo + hi)
    origin = np.array([center[0] - (ni - 1) * pc.pixel_mm / 2,
                       center[1] - (nj - 1) * pc.pixel_mm / 2, lo[2]])
    bound = SceneTruth(model=truth_model,
                       diaphragm_amplitude_mm=float(scene.motion.breathing.amplitude_mm),
                       target_ct_mm=np.zeros(3))
    items = planning_positions(bound, pc.phase,
                               target_offset_at_inhale_ct_mm=_inhale_offset_ct_mm(scene))
    rng = np.random.default_rng([int(scene.simulation.seed), 0x0C7])
    return acquire_ct(items, origin_ct_mm=origin, shape=(nk, nj, ni), pixel_mm=pc.pixel_mm,
                      slice_mm=pc.slice_thickness_mm, noise_hu=pc.noise_hu,
                      noise_reference_slice_mm=NOISE_REFERENCE_SLICE_MM, rng=rng,
                      name=f"planning CT of phantom:{scene.patient.phantom}:seed"
                           f"{scene.simulation.seed} ({pc.phase}, {pc.slice_thickness_mm:g} mm "
                           f"slices)")
