"""Breathing motion of the truth patient: a smooth field for soft tissue, rigid bones.

At breathing level ``b`` (0 exhale, ~1 average inhale), diaphragm amplitude ``A`` (mm) and
target offset ``o`` (CT mm, the lesion vertebra's true offset):

* **Soft tissue** (component 0): ``u = b A (1 - w_s) U(p) + w_s s(z) o`` with

  - ``U_z = -w_v f``: inside the rib cage (``w_v``, a smooth in-plane weight, 16 mm ramp at
    the cage's inner surface) everything below the diaphragm surface (the phantom's two
    domes) moves inferior by ``A`` (``f = 1``: liver and abdomen translate with the dome;
    assumption, no damping toward the pelvis); above it the lungs' motion falls as
    ``f = exp(-h / lung_motion_decay_mm)`` with the height ``h`` above the diaphragm
    (assumption, so lower lobes move ~A and upper lobes a few mm, as Seppenwoolde et al.,
    IJROBP 2002;53:822 report for lung tumours). The heart (the phantom's mediastinal
    ellipse from 0-20 mm above the diaphragm up to 100-130 mm, smooth edges) moves
    ``heart_amplitude_ratio`` × A instead (assumption).
  - ``U_y = -chest_wall_amplitude_ratio g``: anterior expansion growing linearly from 0 at
    the vertebral body center to 1 at the anterior body surface (assumption).
  - ``w_s``: near the spine (vertebral body ± 2 mm, canal, discs, and paraspinal muscle up
    to 45 mm lateral behind the rib heads) particles follow the local vertebra motion
    ``s(z) o``, ``s`` interpolated along z between the levels' scales ``1 + spread z_k``;
    Gaussian fall-off (8 mm) outside, so the field is continuous (no tearing).

* **Vertebrae**: rigid. The lesion level moves by exactly ``o``; level ``k`` by
  ``o (1 + vertebra_motion_spread z_k)``, ``z_k ~ N(0, 1)`` seeded per phantom seed, and
  rotates about its body center by ``vertebra_rotation_deg × b`` about a seeded axis.

* **Ribs**: rigid rotation by ``rib_rotation_deg × b`` about the rib's neck axis (rib head
  → costotransverse joint; rotation about this one axis lifts upper ribs "pump-handle" and
  lower ribs "bucket-handle", De Troyer, Kirkwood & Wilson, Physiol Rev 2005;85:717), then
  the motion of its vertebra (the joint stays on the vertebra; levels outside the painted
  ones translate by ``s(z_joint) o``).

* **Sternum**: rigid translation by the soft-tissue field at its center of mass (moves
  with the anterior chest wall).

Static fields are computed once per patient; each call is a few fused array operations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from ..anatomy._thorax import diaphragm_z_mm, heart_q, rib_radius

if TYPE_CHECKING:
    from ..scene._truth import TruthSettings
    from ._particles import ParticleSet
    from ._patient import TruthAnatomy, TruthPatient

__all__ = ["BreathingMotion", "soft_field"]

_CHUNK = 400_000
_SPINE_SIGMA_MM = 8.0
_PARASPINAL_HALF_MM = 45.0
_END_TAPER_MM = 40.0  # SI motion tapers to 0 this close to the phantom's cut ends (mm)


def _smoothstep(e0: float, e1: float, x: NDArray) -> NDArray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _level_profile(a: TruthAnatomy, s: TruthSettings):
    order = np.argsort(a.vertebra_centers_ct_mm[:, 2])
    c = a.vertebra_centers_ct_mm[order]
    wd = a.vertebra_width_depth_mm[order]
    scale = 1.0 + s.vertebra_motion_spread * a.level_motion_z[order]
    return c, wd, scale


def soft_field(p_ct_mm: NDArray, a: TruthAnatomy, s: TruthSettings):
    """Static parts of the soft-tissue motion at reference points.

    Parameters
    ----------
    p_ct_mm : ndarray, shape (n, 3)
        Reference positions, CT mm.
    a, s : TruthAnatomy, TruthSettings

    Returns
    -------
    u : ndarray, shape (n, 3), float64
        Breathing displacement per mm of diaphragm amplitude at breath_level 1 (mm/mm),
        before the spine blend.
    w_spine : ndarray, shape (n,)
        Weight of the local vertebra motion (0..1).
    s_level : ndarray, shape (n,)
        Local vertebra motion per unit target offset (``1 + spread z_k`` interpolated).
    """
    p = np.asarray(p_ct_mm, dtype=np.float64)
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    cy = a.cage_center_y_mm
    r = np.hypot(x, y - cy)
    phi = np.degrees(np.arctan2(np.abs(x), y - cy))
    # cage inner surface; posteromedially (phi < 30 deg, where the rib radius turns sharply
    # toward the spine) held at its 30-deg value so the weight stays smooth
    inner = rib_radius(np.maximum(phi, 30.0), a.scale) - 5.0
    w_visc = _smoothstep(-8.0, 8.0, inner - r)
    # the phantom's diaphragm with its right dome's 8 mm step at the midline smoothed over
    # 30 mm (the midline is mediastinum, not lung)
    h = z - (diaphragm_z_mm(np.abs(x), y, cy_mm=cy, z_dome_mm=a.z_dome_mm, scale=a.scale)
             + 8.0 * (1.0 - _smoothstep(-15.0, 15.0, x)))
    f_lung = np.exp(-np.maximum(h, 0.0) / s.lung_motion_decay_mm)
    w_heart = ((1.0 - _smoothstep(0.8, 1.2, heart_q(x, y, y_body_mm=a.body_center_y_mm,
                                                    scale=a.scale)))
               * _smoothstep(0.0, 20.0, h) * (1.0 - _smoothstep(100.0, 130.0, h)))
    f = (1.0 - w_heart) * f_lung + w_heart * s.heart_amplitude_ratio
    yb0 = a.body_center_y_mm
    g = np.clip((yb0 - y) / (yb0 + a.body_half_depth_mm), 0.0, 1.0)
    # the phantom is a truncated trunk: its cut end faces must not slide along z (the body
    # continues beyond them), so the superior-inferior motion tapers to 0 over the last
    # _END_TAPER_MM at each end of the points given (the whole soft-tissue set)
    end = (_smoothstep(0.0, _END_TAPER_MM, z - z.min()) if z.size else 1.0) * \
        (_smoothstep(0.0, _END_TAPER_MM, z.max() - z) if z.size else 1.0)
    u = np.stack([np.zeros_like(x), -s.chest_wall_amplitude_ratio * g, -w_visc * f * end],
                 axis=1)

    c, wd, lvl = _level_profile(a, s)
    xb = np.interp(z, c[:, 2], c[:, 0])
    yb = np.interp(z, c[:, 2], c[:, 1])
    half_w = np.interp(z, c[:, 2], wd[:, 0]) / 2 + 2.0
    depth = np.interp(z, c[:, 2], wd[:, 1])
    half_x = half_w + np.clip((y - yb - 25.0) / 20.0, 0.0, 1.0) * (_PARASPINAL_HALF_MM - half_w)
    dx = np.maximum(np.abs(x - xb) - half_x, 0.0)
    dy = np.maximum((yb - depth / 2 - 4.0) - y, 0.0)
    w_spine = np.exp(-(dx * dx + dy * dy) / _SPINE_SIGMA_MM**2)
    s_level = np.interp(z, c[:, 2], lvl)
    return u, w_spine, s_level


@njit(cache=True)
def _soft_kernel(ref, v, sl, k, off, out):  # pragma: no cover - compiled
    # out = ref + k v + sl off (float32; exact at k = 0, off = 0)
    for i in range(ref.shape[0]):
        for a in range(3):
            out[i, a] = ref[i, a] + (k * v[i, a] + sl[i] * off[a])


@njit(cache=True)
def _rigid_kernel(ref, start, stop, mt, c0, out):  # pragma: no cover - compiled
    # out = ref + (ref @ mt + c0) on rows start:stop (mt = (M - I).T; exact at identity)
    for i in range(start, stop):
        x, y, z = ref[i, 0], ref[i, 1], ref[i, 2]
        for a in range(3):
            out[i, a] = ref[i, a] + (x * mt[0, a] + y * mt[1, a] + z * mt[2, a] + c0[a])


def _slices(component: NDArray) -> dict[int, slice]:
    ids, starts = np.unique(component, return_index=True)
    ends = list(starts[1:]) + [component.size]
    return {int(i): slice(int(a), int(b)) for i, a, b in zip(ids, starts, ends, strict=True)}


class BreathingMotion:
    """The truth patient's motion model (module docstring); built once per patient."""

    def __init__(self, patient: TruthPatient):
        self.patient = patient
        a, s = patient.anatomy, patient.settings
        self._a, self._s = a, s
        self._soft: dict[int, tuple[NDArray, NDArray]] = {}
        self._rigid: dict[int, dict[int, slice]] = {}
        for n, ps in enumerate(patient.sets):
            if np.all(ps.component == 0):
                v = np.empty((len(ps), 3), dtype=np.float32)
                sl = np.empty(len(ps), dtype=np.float32)
                for i in range(0, len(ps), _CHUNK):
                    u, w, lv = soft_field(ps.position_ct_mm[i:i + _CHUNK], a, s)
                    v[i:i + _CHUNK] = (1.0 - w)[:, None] * u
                    sl[i:i + _CHUNK] = w * lv
                self._soft[n] = (v, sl)
            else:
                self._rigid[n] = _slices(ps.component)
        c, _, lvl = _level_profile(a, s)
        self._z_profile = (c[:, 2], lvl)
        st = [ps for ps in patient.sets if np.any(ps.component == a.sternum_component)]
        if st:
            m = st[0].component == a.sternum_component
            com = np.average(st[0].position_ct_mm[m].astype(np.float64), axis=0,
                             weights=st[0].mass_g[m].astype(np.float64))
            u, w, lv = soft_field(com[None], a, s)
            self._sternum = ((1.0 - w[0]) * u[0], float(w[0] * lv[0]))
        else:
            self._sternum = (np.zeros(3), 0.0)
        self._kind = {i: k for i, (k, _) in enumerate(patient.components)}
        self._rib_index = {int(cid): i for i, cid in enumerate(a.rib_components)}

    # ---- rigid transforms: p' = p + (p - c) @ (M - I).T + t -----------------------------
    def vertebra_transform(self, n: int, breath_level: float, offset: NDArray
                           ) -> tuple[NDArray, NDArray, NDArray]:
        """``(M, c, t)`` of vertebra ``n`` (index into ``vertebra_labels``): rotation (3, 3),
        center (CT mm) and translation (mm); ``p' = M (p - c) + c + t``."""
        a, s = self._a, self._s
        c = a.vertebra_centers_ct_mm[n]
        if a.vertebra_labels[n] == a.lesion_level:
            return np.eye(3), c, offset.copy()
        t = offset * (1.0 + s.vertebra_motion_spread * a.level_motion_z[n])
        ang = np.radians(s.vertebra_rotation_deg * breath_level)
        m = Rotation.from_rotvec(a.level_rotation_axis[n] * ang).as_matrix()
        return m, c, t

    def rib_transform(self, cid: int, breath_level: float, offset: NDArray
                      ) -> tuple[NDArray, NDArray, NDArray]:
        """``(M, j, t)`` of the rib with component id ``cid``: ``p' = M (p - j) + j + t``
        with ``j`` its joint (rib head, CT mm)."""
        a, s = self._a, self._s
        i = self._rib_index[cid]
        j = a.rib_joint_ct_mm[i]
        level = a.rib_levels[i]
        if level in a.vertebra_labels:
            mv, cv, tv = self.vertebra_transform(a.vertebra_labels.index(level), breath_level,
                                                 offset)
        else:
            zs, lvl = self._z_profile
            mv, cv, tv = np.eye(3), j, offset * float(np.interp(j[2], zs, lvl))
        j_moved = mv @ (j - cv) + cv + tv
        ang = np.radians(s.rib_rotation_deg * breath_level)
        mr = Rotation.from_rotvec(a.rib_axis[i] * ang).as_matrix()
        return mv @ mr, j, j_moved - j

    def positions_ct(self, breath_level: float, target_offset_ct_mm,
                     amplitude_mm: float) -> list[tuple[ParticleSet, NDArray[np.float32]]]:
        """See :meth:`TruthPatient.positions_ct`."""
        off = np.asarray(target_offset_ct_mm, dtype=np.float64)
        if off.shape != (3,) or not np.all(np.isfinite(off)):
            raise ValueError(f"target_offset_ct_mm must be 3 finite numbers (got shape "
                             f"{off.shape})")
        if not np.isfinite(breath_level) or not np.isfinite(amplitude_mm):
            raise ValueError("breath_level and diaphragm amplitude must be finite")
        k = breath_level * amplitude_mm
        off32 = off.astype(np.float32)
        out = []
        for n, ps in enumerate(self.patient.sets):
            ref = ps.position_ct_mm
            pos = np.empty_like(ref)
            if n in self._soft:
                v, sl = self._soft[n]
                _soft_kernel(ref, v, sl, np.float32(k), off32, pos)
            else:
                for cid, sli in self._rigid[n].items():
                    m, c, t = self._rigid_of(cid, breath_level, off, k)
                    mt = (m - np.eye(3)).T       # p' = p + (p - c) (M - I)^T + t
                    c0 = t - c @ mt
                    _rigid_kernel(ref, sli.start, sli.stop, mt.astype(np.float32),
                                  c0.astype(np.float32), pos)
            out.append((ps, pos))
        return out

    def _rigid_of(self, cid: int, breath_level: float, off: NDArray, k: float):
        kind = self._kind[cid]
        if kind == "vertebra":
            return self.vertebra_transform(cid - 1, breath_level, off)
        if kind == "rib":
            return self.rib_transform(cid, breath_level, off)
        if kind == "sternum":
            u, w = self._sternum
            return np.eye(3), np.zeros(3), k * u + w * off
        raise ValueError(f"component {cid} ({kind}) is not rigid")
