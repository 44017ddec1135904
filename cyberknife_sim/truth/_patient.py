"""The truth patient: particle sets, what moves each particle, and a disk cache.

Construct-then-call: ``patient = build_truth_phantom(params, seed=0)`` then
``patient.positions_ct(breath_level, target_offset_ct_mm)`` for each imaging instant.

Cache: building the fine phantom takes seconds, so a built patient is kept in process
(``lru_cache``) and on disk as ``<key>.npz`` under ``$CKSIM_CACHE_DIR/truth`` (else the user
cache folder ``cyberknife_sim/truth``, as :mod:`cyberknife_sim.plan_cache`). The key is a
SHA-256 of the phantom parameters, the seed, the settings that shape the particles, the
package version, :data:`TRUTH_CODE_VERSION`, a hash of the painting sources and the numpy
and scipy versions. ``CKSIM_TRUTH_CACHE=0`` (or ``off``/``false``/``no``) turns the disk
cache off; an unreadable or mismatching entry is rebuilt; entries are written atomically.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from .._cache_dirs import atomic_write_bytes, cache_folder, cache_switch_on
from ..scene._truth import TruthSettings
from ._particles import ParticleSet

if TYPE_CHECKING:
    from ..anatomy._params import PhantomParams
    from ._motion4d import BreathingMotion

__all__ = ["TRUTH_CODE_VERSION", "TruthAnatomy", "TruthPatient", "cached_truth",
           "truth_cache_dir", "truth_cache_enabled"]

TRUTH_CODE_VERSION = 1
"""Bump when the particles of a given (params, seed, settings) change."""
CACHE_SWITCH_ENV = "CKSIM_TRUTH_CACHE"
# settings that only move particles (not in the cache key: motion is computed at load)
_MOTION_ONLY = ("vertebra_motion_spread", "vertebra_rotation_deg", "rib_rotation_deg",
                "chest_wall_amplitude_ratio", "heart_amplitude_ratio", "lung_motion_decay_mm")


@dataclass(frozen=True, eq=False)
class TruthAnatomy:
    """Landmarks the motion needs, all CT mm (LPS) unless stated.

    Attributes
    ----------
    target_ct_mm : ndarray, shape (3,)
        Lesion center (equals ``make_phantom(...).truth.target_center_ct_mm``).
    lesion_level : str
    vertebra_labels : tuple of str
        Painted vertebrae, cranial first (component ``1 + n`` is vertebra ``n``).
    vertebra_centers_ct_mm : ndarray, shape (nv, 3)
        Body centers.
    vertebra_width_depth_mm : ndarray, shape (nv, 2)
    level_motion_z : ndarray, shape (nv,)
        Seeded N(0, 1) draws z_k of the per-level motion (0 at the lesion level).
    level_rotation_axis : ndarray, shape (nv, 3)
        Seeded unit axes of the small per-level rotations.
    rib_components : ndarray of int, shape (nr,)
        Component id of each rib.
    rib_levels : tuple of str
        Vertebra each rib articulates with (may be a level outside the painted ones).
    rib_joint_ct_mm, rib_axis : ndarray, shape (nr, 3)
        Rib head (costovertebral joint) and unit neck axis (toward the costotransverse
        joint; a positive rotation lifts the anterior end).
    sternum_component : int
    cage_center_y_mm, body_center_y_mm, scale, z_dome_mm, body_half_depth_mm : float
        Thorax geometry of the phantom (see ``anatomy._thorax``).
    """

    target_ct_mm: NDArray[np.float64]
    lesion_level: str
    vertebra_labels: tuple[str, ...]
    vertebra_centers_ct_mm: NDArray[np.float64]
    vertebra_width_depth_mm: NDArray[np.float64]
    level_motion_z: NDArray[np.float64]
    level_rotation_axis: NDArray[np.float64]
    rib_components: NDArray[np.int64]
    rib_levels: tuple[str, ...]
    rib_joint_ct_mm: NDArray[np.float64]
    rib_axis: NDArray[np.float64]
    sternum_component: int
    cage_center_y_mm: float
    body_center_y_mm: float
    scale: float
    z_dome_mm: float
    body_half_depth_mm: float

    _ARRAYS = ("target_ct_mm", "vertebra_centers_ct_mm", "vertebra_width_depth_mm",
               "level_motion_z", "level_rotation_axis", "rib_components", "rib_joint_ct_mm",
               "rib_axis")


@dataclass(frozen=True, eq=False)
class TruthPatient:
    """The 4D truth patient (build with :func:`~cyberknife_sim.truth.build_truth_phantom`).

    Attributes
    ----------
    sets : tuple of ParticleSet
        Soft tissue (component 0), vertebrae, ribs and sternum; reference positions at
        exhale (breath_level 0), CT mm.
    components : tuple of (kind, label)
        Component id → ``("soft", "")``, ``("vertebra", "T10")``, ``("rib", "T9 left")``,
        ``("sternum", "")``.
    anatomy : TruthAnatomy
    settings : TruthSettings
    diaphragm_amplitude_mm : float
        Default inferior motion of the diaphragm dome at breath_level 1 (mm; the scene's
        ``motion.breathing.amplitude_mm``).
    """

    sets: tuple[ParticleSet, ...]
    components: tuple[tuple[str, str], ...]
    anatomy: TruthAnatomy
    settings: TruthSettings
    diaphragm_amplitude_mm: float = 10.0

    @property
    def target_ct_mm(self) -> NDArray[np.float64]:
        """Lesion center at exhale, CT mm."""
        return self.anatomy.target_ct_mm

    @functools.cached_property
    def motion(self) -> BreathingMotion:
        """The breathing motion (static fields computed once)."""
        from ._motion4d import BreathingMotion
        return BreathingMotion(self)

    def component_id(self, kind: str, label: str = "") -> int:
        """Id of component ``(kind, label)``; ValueError listing the kinds if absent."""
        try:
            return self.components.index((kind, label))
        except ValueError:
            raise ValueError(f"no component {kind!r} {label!r}; kinds: "
                             f"{sorted({k for k, _ in self.components})}") from None

    def positions_ct(self, breath_level: float, target_offset_ct_mm,
                     *, diaphragm_amplitude_mm: float | None = None
                     ) -> list[tuple[ParticleSet, NDArray[np.float32]]]:
        """Particle positions at one instant.

        Parameters
        ----------
        breath_level : float
            0 at exhale, about 1 at an average inhale (``MotionTruth.breathing(t,
            internal=True)``).
        target_offset_ct_mm : array-like, shape (3,)
            True offset of the target (lesion) vertebra from its planning position (CT mm
            axes; breathing, cough, ...): the lesion vertebra moves by exactly this.
        diaphragm_amplitude_mm : float, optional
            Dome motion at breath_level 1 (mm); default :attr:`diaphragm_amplitude_mm`.

        Returns
        -------
        list of (ParticleSet, ndarray (n, 3) float32)
            Each set with its particles' positions (CT mm), in :attr:`sets` order.
        """
        amp = self.diaphragm_amplitude_mm if diaphragm_amplitude_mm is None else \
            float(diaphragm_amplitude_mm)
        return self.motion.positions_ct(float(breath_level), target_offset_ct_mm, amp)

    def diaphragm_points_ct_mm(self) -> NDArray[np.float64]:
        """Tops of the right and left diaphragm domes at exhale, shape (2, 3), CT mm."""
        a = self.anatomy
        x = 65.0 * a.scale
        return np.array([[-x, a.cage_center_y_mm, a.z_dome_mm + 8.0],
                         [x, a.cage_center_y_mm, a.z_dome_mm]])

    # ---- (de)serialization -------------------------------------------------------------
    def to_npz_bytes(self) -> bytes:
        """The patient as ``.npz`` bytes (see :meth:`from_npz_bytes`)."""
        arrays: dict[str, NDArray] = {}
        for n, s in enumerate(self.sets):
            arrays[f"s{n}_pos"] = s.position_ct_mm
            arrays[f"s{n}_mass"] = s.mass_g
            arrays[f"s{n}_mat"] = s.material
            arrays[f"s{n}_comp"] = s.component
        a = self.anatomy
        for k in TruthAnatomy._ARRAYS:
            arrays[f"a_{k}"] = np.asarray(getattr(a, k))
        meta = {
            "sets": [{"size_mm": s.size_mm, "name": s.name} for s in self.sets],
            "components": [list(c) for c in self.components],
            "anatomy": {k: getattr(a, k) for k in ("lesion_level", "sternum_component",
                                                   "cage_center_y_mm", "body_center_y_mm",
                                                   "scale", "z_dome_mm", "body_half_depth_mm")},
            "vertebra_labels": list(a.vertebra_labels),
            "rib_levels": list(a.rib_levels),
            "settings": self.settings.model_dump(mode="json"),
            "diaphragm_amplitude_mm": self.diaphragm_amplitude_mm,
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_npz_bytes(cls, data: bytes) -> TruthPatient:
        """Inverse of :meth:`to_npz_bytes` (bit-identical arrays)."""
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            sets = tuple(ParticleSet(position_ct_mm=z[f"s{n}_pos"], mass_g=z[f"s{n}_mass"],
                                     material=z[f"s{n}_mat"], component=z[f"s{n}_comp"],
                                     size_mm=float(m["size_mm"]), name=str(m["name"]))
                         for n, m in enumerate(meta["sets"]))
            arr = {k: z[f"a_{k}"] for k in TruthAnatomy._ARRAYS}
        am = meta["anatomy"]
        anatomy = TruthAnatomy(
            **arr, lesion_level=am["lesion_level"], sternum_component=int(am["sternum_component"]),
            cage_center_y_mm=am["cage_center_y_mm"], body_center_y_mm=am["body_center_y_mm"],
            scale=am["scale"], z_dome_mm=am["z_dome_mm"],
            body_half_depth_mm=am["body_half_depth_mm"],
            vertebra_labels=tuple(meta["vertebra_labels"]), rib_levels=tuple(meta["rib_levels"]))
        return cls(sets=sets, components=tuple(tuple(c) for c in meta["components"]),
                   anatomy=anatomy, settings=TruthSettings.model_validate(meta["settings"]),
                   diaphragm_amplitude_mm=float(meta["diaphragm_amplitude_mm"]))


# ---- cache ------------------------------------------------------------------------------
def truth_cache_enabled() -> bool:
    """False when ``CKSIM_TRUTH_CACHE`` is ``0``, ``off``, ``false`` or ``no``."""
    return cache_switch_on(CACHE_SWITCH_ENV)


def truth_cache_dir() -> Path:
    """Folder of the truth-patient cache (``truth/`` beside the plan cache); not created."""
    return cache_folder("truth")


@functools.lru_cache(maxsize=1)
def _source_hash() -> str:
    here = Path(__file__).resolve().parent
    anat = here.parent / "anatomy"
    files = [here / "_phantom4d.py", here / "_particles.py", here / "_materials.py"] + sorted(
        anat / f for f in ("_canvas.py", "_levels.py", "_shapes.py", "_spine.py", "_thorax.py",
                           "_tissues.py", "phantom.py"))
    h = hashlib.sha256()
    for f in files:
        with contextlib.suppress(OSError):
            h.update(f.read_bytes())
    return h.hexdigest()


def _cache_key(params: PhantomParams, seed: int, settings: TruthSettings) -> str:
    import scipy

    from .. import __version__
    shaping = settings.model_dump(mode="json", exclude=set(_MOTION_ONLY))
    blob = json.dumps({"params": params.model_dump(mode="json"), "seed": seed,
                       "settings": shaping, "version": __version__,
                       "code": TRUTH_CODE_VERSION, "src": _source_hash(),
                       "numpy": np.__version__, "scipy": scipy.__version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def cached_truth(params: PhantomParams, seed: int, settings: TruthSettings,
                 build) -> TruthPatient:
    """``build(params, seed, settings)``, cached in process and on disk (module docstring).

    The motion-only settings are not in the disk key: a cached patient gets the caller's
    ``settings``.
    """
    return _cached(params, seed, settings, build)


@functools.lru_cache(maxsize=2)
def _cached(params, seed, settings, build) -> TruthPatient:
    if not truth_cache_enabled():
        return build(params, seed, settings)
    path = truth_cache_dir() / f"{_cache_key(params, seed, settings)}.npz"
    if path.is_file():
        try:
            got = TruthPatient.from_npz_bytes(path.read_bytes())
            return TruthPatient(sets=got.sets, components=got.components,
                                anatomy=got.anatomy, settings=settings)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # corrupt entry: rebuild and rewrite
    patient = build(params, seed, settings)
    atomic_write_bytes(path, patient.to_npz_bytes())
    return patient
