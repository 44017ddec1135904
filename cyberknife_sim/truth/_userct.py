"""A user's own CT as the truth patient: particles from its HU plus a synthetic breath.

:func:`truth_from_ct` turns a 3-D CT into particles (:func:`~cyberknife_sim.truth.hu_to_particles`
at each voxel centre) and moves them with a documented synthetic breathing deformation:

* **Anisotropic voxels** are split into sub-particles: along each axis a voxel of spacing
  ``d`` becomes ``round(d / d_min)`` pieces (e.g. 0.8 × 0.8 × 3 mm → 4 sub-particles along
  k at 0.8 × 0.8 × 0.75 mm), each with its share of the mass; the set's ``size_mm`` is the
  cube root of a piece's volume.
* **Spine, rigid per vertebra.** The vertebral body's centre line is tracked slice by slice
  from the target (centroid of bone, HU > 120, within ``body_search_mm`` of the previous
  slice's centre, half-way smoothed). Spine bone = voxels above ``bone_hu`` within
  ``spine_radius_mm`` of that line, kept where 3-D connected to the body core, with holes
  filled slice by slice (the cancellous interior); rib heads within the radius belong to
  their vertebra. Levels are split by axial planes at the intervertebral discs, found as
  minima of the mean HU in a ``core_radius_mm`` disc on the centre line (smoothed 1-2-1;
  prominence = depth below the lower of the two maxima within ``min_level_mm / 2`` on
  either side, at least ``disc_depth_hu``; taken most prominent first, each at least
  ``min_level_mm`` from those already taken); beyond the outermost found discs, and
  wholly when fewer than one disc is found on each side of the target within
  1.6 * ``fallback_level_mm``, planes every ``fallback_level_mm`` (28 mm, a thoracolumbar
  vertebra plus disc). Level ``c`` has
  component ``c`` (1 = most inferior); everything else is component 0.
* **Offsets.** The target's level moves by ``target_offset_ct_mm`` exactly; level ``c``
  moves by ``(1 - level_offset_falloff * |c - c_target|)`` (clipped at 0) times it; every
  other particle by that factor interpolated along z between level centres (so with a
  falloff of 0 the whole patient shifts rigidly).
* **Breathing** (soft tissue and bone off the spine, component 0) at breath level ``L``
  (0 exhale, 1 inhale): ``d = L * (0, -ap_amplitude_mm * a, -diaphragm_amplitude_mm * w) * g * q``

  - ``w(z)``: 1 at the diaphragm ``z_d``, falling (smoothstep) to 0 at the lung apex
    ``z_top`` above it (the lungs stretch, so their particles spread and their density
    falls) and to 0 at ``caudal_decay_mm`` below it (abdominal organs ride on the
    diaphragm, the pelvis does not). ``z_d`` is where the lungs' axial area (HU -950..-400
    inside the body outline) first reaches 25 % of its largest value from below (near the
    dome), unless ``diaphragm_z_ct_mm`` is given; with no lungs in the CT (under 15 cm² on
    every slice), the top of the CT. ``z_top`` is the highest slice with lung, or
    ``z_d + lung_height_mm`` when the lungs leave the CT at its top.
  - ``g``: smoothstep of the in-plane distance ``r`` from the spine centre line, 0 inside
    ``spine_calm_mm[0]``, 1 beyond ``spine_calm_mm[1]`` (tissue near the spine barely moves).
  - ``q``: smoothstep from 0 at 20 mm posterior of the centre line to 1 at 20 mm anterior
    (the back rests on the couch).
  - ``a``: anteriority, ``clip((y_spine - y) / 100 mm, 0, 1)`` (the belly and chest wall
    rise anteriorly, LPS -y).

:func:`truth_from_4dct` makes a truth from a 4D CT: one particle set per phase; a breath
level between two phases is drawn as BOTH phases' sets with linear weights (an image
cross-fade, not a motion interpolation: large phase-to-phase motion shows as a double edge).
Its ``positions_ct`` therefore returns ``(ParticleSet, positions, weight)`` triples; the
acquisition (:func:`~cyberknife_sim.truth.acquire_ct`) sums weighted images and so must the
live projector. The target offset is a rigid shift of the whole patient there.

Resolution: a clinical CT's voxels (e.g. 3 mm) splatted as 3 mm particles make a live image
far blurrier than the trilinear DRRs of the same CT (measured on the example CT: NCC 0.22,
every registration refused). Within ``fine_half_box_mm`` of the target the truth is
therefore the CT's trilinear interpolation sampled at ``fine_mm`` (1 mm) particles, the
continuous model a trilinear DRR also assumes; the CT's own voxels elsewhere
(:class:`CompositeTruth`). It holds no detail the CT lacks: on a user's CT the truth is only
as fine as the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from ..anatomy.io import read_ct
from ..anatomy.volume import Volume
from ..errors import InputError
from ._materials import AIR_THRESHOLD_HU, hu_to_particles
from ._particles import ParticleSet

__all__ = ["FourDCTTruth", "TruthModel", "UserCTSettings", "UserCTTruth", "truth_from_4dct",
           "truth_from_ct"]


@runtime_checkable
class TruthModel(Protocol):
    """What the acquisition and the live projector need from a truth patient."""

    def positions_ct(self, breath_level: float, target_offset_ct_mm: ArrayLike) -> list:
        """(ParticleSet, positions (n, 3) float32 CT mm[, weight]) for a breath level
        (0 exhale, 1 inhale) and a target offset (CT mm)."""
        ...


@dataclass(frozen=True)
class UserCTSettings:
    """Knobs of the user-CT truth (lengths in mm; see the module docstring)."""

    air_threshold_hu: float = AIR_THRESHOLD_HU
    bone_hu: float = 200.0
    spine_radius_mm: float = 45.0
    body_search_mm: float = 15.0
    core_radius_mm: float = 10.0
    disc_depth_hu: float = 30.0
    min_level_mm: float = 20.0
    fallback_level_mm: float = 28.0
    level_offset_falloff: float = 0.25
    diaphragm_amplitude_mm: float = 15.0
    ap_amplitude_mm: float = 5.0
    caudal_decay_mm: float = 200.0
    spine_calm_mm: tuple[float, float] = (20.0, 60.0)
    diaphragm_z_ct_mm: float | None = None
    lung_height_mm: float = 180.0
    fine_mm: float = 1.0
    fine_half_box_mm: float = 60.0


def _smoothstep(t: NDArray) -> NDArray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _split_voxels(ps: ParticleSet, spacing_mm: NDArray, ct_from_ijk: NDArray) -> ParticleSet:
    """Split anisotropic voxels' particles into round(d / d_min) pieces per axis."""
    n_ax = np.maximum(1, np.rint(spacing_mm / spacing_mm.min()).astype(int))
    if np.all(n_ax == 1):
        return ps
    frac = [(np.arange(n) + 0.5) / n - 0.5 for n in n_ax]
    sub_ijk = np.stack(np.meshgrid(*frac, indexing="ij"), -1).reshape(-1, 3)
    sub_ct = sub_ijk @ ct_from_ijk[:3, :3].T                 # (m, 3) offsets in CT mm
    m = len(sub_ct)
    pos = (ps.position_ct_mm[:, None, :] + sub_ct[None].astype(np.float32)).reshape(-1, 3)
    size = float(np.prod(spacing_mm / n_ax)) ** (1.0 / 3.0)
    return ParticleSet(pos.astype(np.float32), np.repeat(ps.mass_g / m, m).astype(np.float32),
                       np.repeat(ps.material, m), np.repeat(ps.component, m), size, ps.name)


@dataclass(frozen=True)
class SpineModel:
    """The spine found in a CT: centre line per slice and vertebral-level planes."""

    centre_xy_ct_mm: NDArray[np.float64]     # (nk, 2) body centre line per slice (CT x, y)
    slice_z_ct_mm: NDArray[np.float64]       # (nk,) z of each slice (CT mm)
    boundaries_z_ct_mm: NDArray[np.float64]  # sorted level planes (CT mm)
    discs_found: int                         # planes found as disc minima (rest: fallback)
    target_level: int                        # component of the target's level


def _axial(volume: Volume) -> tuple[NDArray, NDArray]:
    a = volume.ct_from_ijk
    r = a[:3, :3]
    if not np.allclose(r, np.diag(np.diag(r)), atol=1e-6 * np.abs(r).max()):
        raise InputError(f"{volume.name}: the user-CT truth needs an axial CT (diagonal "
                         "direction cosines, signs allowed)")
    return a[:3, 3].copy(), np.diag(r).copy()


def find_spine(volume: Volume, target_ct_mm: ArrayLike, s: UserCTSettings) -> SpineModel:
    """Track the vertebral body's centre line from the target and split the spine into
    levels (see the module docstring)."""
    origin, step = _axial(volume)
    h = np.asarray(volume.hu, dtype=np.float32)
    nk, nj, ni = h.shape
    t = np.asarray(target_ct_mm, dtype=np.float64)
    ijk_t = volume.ct_to_ijk(t)
    k_t = int(np.clip(np.rint(ijk_t[2]), 0, nk - 1))
    xs = origin[0] + step[0] * np.arange(ni)
    ys = origin[1] + step[1] * np.arange(nj)
    zs = origin[2] + step[2] * np.arange(nk)
    centre = np.zeros((nk, 2))
    rr = s.body_search_mm ** 2
    for order in (range(k_t, nk), range(k_t, -1, -1)):
        c = t[:2].copy()
        for k in order:
            d2 = (xs[None, :] - c[0]) ** 2 + (ys[:, None] - c[1]) ** 2
            wgt = np.where((d2 <= rr) & (h[k] > 120.0), h[k] - 120.0, 0.0)
            if wgt.sum() > 0 and k != k_t:
                cen = np.array([np.sum(wgt * xs[None, :]), np.sum(wgt * ys[:, None])]) / wgt.sum()
                c = 0.5 * c + 0.5 * cen
            centre[k] = c
    # body-core profile along the line, discs = its minima
    prof = np.empty(nk)
    for k in range(nk):
        d2 = (xs[None, :] - centre[k, 0]) ** 2 + (ys[:, None] - centre[k, 1]) ** 2
        core = d2 <= s.core_radius_mm ** 2
        prof[k] = float(h[k][core].mean()) if core.any() else -1000.0
    sm = np.convolve(np.pad(prof, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    dz = abs(step[2])
    win = max(1, int(round(s.min_level_mm / dz / 2)))
    cands: list[tuple[float, int]] = []                  # (prominence, slice)
    for k in range(1, nk - 1):
        if not (sm[k] <= sm[k - 1] and sm[k] < sm[k + 1]):
            continue
        lo, hi = max(0, k - win), min(nk, k + win + 1)
        prom = min(sm[lo:k].max(), sm[k + 1:hi].max()) - sm[k]
        if prom >= s.disc_depth_hu:
            cands.append((float(prom), k))
    minima: list[float] = []                             # most prominent first, kept apart
    for _, k in sorted(cands, reverse=True):
        if all(abs(zs[k] - z) >= s.min_level_mm for z in minima):
            minima.append(float(zs[k]))
    zt, lvl = float(t[2]), s.fallback_level_mm
    found = sorted(minima)
    near = [z for z in found if abs(z - zt) <= 1.6 * lvl]
    if not (any(z < zt for z in near) and any(z > zt for z in near)):
        found = []                                     # fallback: fixed slabs on the target
        planes = [zt - lvl / 2, zt + lvl / 2]
    else:
        planes = list(found)
    zmin, zmax = float(zs.min()) - dz, float(zs.max()) + dz
    while planes[0] > zmin:
        planes.insert(0, planes[0] - lvl)
    while planes[-1] < zmax:
        planes.append(planes[-1] + lvl)
    b = np.array(planes)
    return SpineModel(centre, zs, b, len(found), int(np.searchsorted(b, zt)))


def _spine_mask(volume: Volume, spine: SpineModel, s: UserCTSettings) -> NDArray[np.bool_]:
    origin, step = _axial(volume)
    h = volume.hu
    nk, nj, ni = h.shape
    xs = origin[0] + step[0] * np.arange(ni)
    ys = origin[1] + step[1] * np.arange(nj)
    d2 = ((xs[None, None, :] - spine.centre_xy_ct_mm[:, 0, None, None]) ** 2
          + (ys[None, :, None] - spine.centre_xy_ct_mm[:, 1, None, None]) ** 2)
    bone = (h > s.bone_hu) & (d2 <= s.spine_radius_mm ** 2)
    lab, n = ndimage.label(bone)
    core = bone & (d2 <= (s.core_radius_mm + abs(step[0])) ** 2)
    keep = np.unique(lab[core])
    mask = np.isin(lab, keep[keep > 0])
    for k in range(nk):
        if mask[k].any():
            mask[k] = ndimage.binary_fill_holes(mask[k])
    return mask


class UserCTTruth:
    """The truth patient made from one 3-D CT (see :func:`truth_from_ct`)."""

    def __init__(self, particles: ParticleSet, spine: SpineModel, settings: UserCTSettings,
                 diaphragm_z_ct_mm: float, lung_top_z_ct_mm: float, target_ct_mm: NDArray):
        self.particles = particles
        self.spine = spine
        self.settings = settings
        self.diaphragm_z_ct_mm = diaphragm_z_ct_mm
        self.lung_top_z_ct_mm = lung_top_z_ct_mm
        self.target_ct_mm = target_ct_mm
        c = np.arange(len(spine.boundaries_z_ct_mm) + 2)     # component; 0 is unused here
        self.level_factor = np.clip(1.0 - settings.level_offset_falloff
                                    * np.abs(c - spine.target_level), 0.0, None)
        b = spine.boundaries_z_ct_mm
        mids = np.concatenate([[b[0] - settings.fallback_level_mm / 2], (b[1:] + b[:-1]) / 2,
                               [b[-1] + settings.fallback_level_mm / 2]])
        p = particles.position_ct_mm.astype(np.float64)
        soft = particles.component == 0
        self._soft = soft
        z = p[:, 2]
        # per-particle factors (fixed): offset factor and breathing field at level 1
        self._offset_factor = np.where(soft, np.interp(z, mids, self.level_factor[1:]),
                                       self.level_factor[particles.component])
        zs = spine.slice_z_ct_mm
        order = np.argsort(zs)
        cx = np.interp(z, zs[order], spine.centre_xy_ct_mm[order, 0])
        cy = np.interp(z, zs[order], spine.centre_xy_ct_mm[order, 1])
        r = np.hypot(p[:, 0] - cx, p[:, 1] - cy)
        r0, r1 = settings.spine_calm_mm
        g = _smoothstep((r - r0) / max(r1 - r0, 1e-6))
        q = _smoothstep((cy - p[:, 1]) / 40.0 + 0.5)
        a = np.clip((cy - p[:, 1]) / 100.0, 0.0, 1.0)
        zd, ztop = diaphragm_z_ct_mm, lung_top_z_ct_mm
        above = 1.0 - _smoothstep((z - zd) / max(ztop - zd, 1e-6))
        below = _smoothstep(1.0 - (zd - z) / settings.caudal_decay_mm)
        w = np.where(z >= zd, above, below)
        field = np.zeros_like(p)
        field[:, 1] = -settings.ap_amplitude_mm * a * g * q
        field[:, 2] = -settings.diaphragm_amplitude_mm * w * g * q
        field[~soft] = 0.0
        self._field_mm = field.astype(np.float32)
        self._field_si_unit = np.where(soft, -w * g * q, 0.0)      # SI field per mm of dome

    def positions_ct(self, breath_level: float, target_offset_ct_mm: ArrayLike, *,
                     diaphragm_amplitude_mm: float | None = None
                     ) -> list[tuple[ParticleSet, NDArray[np.float32]]]:
        """Particle positions (CT mm) at a breath level (0 exhale, 1 inhale) with the
        target's vertebra shifted by ``target_offset_ct_mm`` (shape (3,)); the SI motion at
        the diaphragm at level 1 is ``diaphragm_amplitude_mm`` (default the settings').

        Returns
        -------
        list of (ParticleSet, positions (n, 3) float32 CT mm)
            One set (vertebra and soft-tissue particles together, told apart by
            ``component``).
        """
        off = np.asarray(target_offset_ct_mm, dtype=np.float64)
        if off.shape != (3,):
            raise ValueError(f"target_offset_ct_mm must have shape (3,) (got {off.shape})")
        field = self._field_mm
        if diaphragm_amplitude_mm is not None:
            field = field.copy()
            field[:, 2] = self._field_si_unit * float(diaphragm_amplitude_mm)
        pos = (self.particles.position_ct_mm.astype(np.float64)
               + float(breath_level) * field
               + self._offset_factor[:, None] * off[None, :])
        return [(self.particles, pos.astype(np.float32))]


def _diaphragm(volume: Volume, s: UserCTSettings) -> tuple[float, float]:
    """z of the diaphragm and of the lung apex (CT mm): lungs = HU -950..-400 inside the
    body outline (HU > -400, holes filled) of each slice."""
    origin, step = _axial(volume)
    zs = origin[2] + step[2] * np.arange(volume.shape[0])
    h = volume.hu
    area = np.zeros(len(zs))
    for k in range(len(zs)):
        body = ndimage.binary_fill_holes(h[k] > -400)
        area[k] = np.count_nonzero(body & (h[k] >= -950) & (h[k] <= -400))
    area *= abs(step[0] * step[1])                          # mm²
    order = np.argsort(zs)
    zs, area = zs[order], area[order]
    if area.max() < 1500.0:                                # no lungs in the CT
        top = float(zs[-1])
        zd = s.diaphragm_z_ct_mm if s.diaphragm_z_ct_mm is not None else top
        return float(zd), max(top, float(zd)) + 1.0
    big = np.flatnonzero(area >= 0.25 * area.max())
    zd = float(zs[big[0]]) if s.diaphragm_z_ct_mm is None else float(s.diaphragm_z_ct_mm)
    has = np.flatnonzero(area >= 0.02 * area.max())
    top = float(zs[has[-1]])
    if has[-1] == len(zs) - 1:                 # the lungs leave the CT: assume the apex
        top = max(top, zd + s.lung_height_mm)
    return zd, max(top, zd + 1.0)


def truth_from_ct(volume: Volume, *, target_ct_mm: ArrayLike,
                  settings: UserCTSettings | None = None) -> UserCTTruth:
    """A truth patient from a user's CT (see the module docstring).

    Parameters
    ----------
    volume : Volume
        The CT (HU), axial (diagonal direction; signs allowed).
    target_ct_mm : array-like, shape (3,)
        The spine target (CT mm), in or next to a vertebral body.
    settings : UserCTSettings, optional
        Segmentation and breathing knobs.

    Returns
    -------
    UserCTTruth
        ``positions_ct(breath_level, target_offset_ct_mm)`` → [(ParticleSet, positions)].
    """
    s = settings or UserCTSettings()
    t = np.asarray(target_ct_mm, dtype=np.float64)
    if t.shape != (3,) or not np.all(np.isfinite(t)):
        raise InputError(f"target_ct_mm must be 3 finite numbers (got {t.tolist()})")
    if not volume.contains_ct(t)[0]:
        raise InputError(f"{volume.name}: target {t.tolist()} mm lies outside the CT")
    spine = find_spine(volume, t, s)
    mask = _spine_mask(volume, spine, s)
    _, step = _axial(volume)
    zs = spine.slice_z_ct_mm
    level_of_slice = (np.searchsorted(spine.boundaries_z_ct_mm, zs) + 1).astype(np.int16)
    comp = np.where(mask, level_of_slice[:, None, None], 0).astype(np.int16)
    fine_block = _fine_block(volume, t, s)
    hu = volume.hu
    if fine_block is not None:  # the coarse voxels the fine particles replace carry no mass
        hu = np.array(hu)
        hu[fine_block] = -1024
    ps = hu_to_particles(hu, volume.ct_from_ijk, component=comp,
                         air_threshold_hu=s.air_threshold_hu, name=f"user CT {volume.name}")
    ps = _split_voxels(ps, np.abs(step), volume.ct_from_ijk)
    zd, top = _diaphragm(volume, s)
    spine = SpineModel(spine.centre_xy_ct_mm, spine.slice_z_ct_mm, spine.boundaries_z_ct_mm,
                       spine.discs_found, spine.target_level + 1)
    coarse = UserCTTruth(ps, spine, s, zd, top, t)
    if fine_block is None:
        return coarse
    fine = UserCTTruth(_fine_particles(volume, comp, fine_block, s), spine, s, zd, top, t)
    return CompositeTruth((fine, coarse), t)


def _fine_block(volume: Volume, target_ct_mm: NDArray, s: UserCTSettings):
    """Index slices ``[k, j, i]`` of the voxels within ``fine_half_box_mm`` of the target,
    or None when the CT is already as fine as ``fine_mm``."""
    spacing = np.abs(np.asarray(volume.spacing_mm, np.float64))
    if s.fine_half_box_mm <= 0 or spacing.max() <= s.fine_mm * 1.01:
        return None
    c = volume.ct_to_ijk(target_ct_mm[None])[0]            # (i, j, k)
    half = s.fine_half_box_mm / spacing
    shape_ijk = volume.shape[::-1]
    lo = np.clip(np.floor(c - half).astype(int), 0, None)
    hi = np.minimum(np.ceil(c + half).astype(int) + 1, shape_ijk)
    return (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))


def _fine_particles(volume: Volume, comp: NDArray, block, s: UserCTSettings) -> ParticleSet:
    """Particles at ``fine_mm`` filling the voxels of ``block`` exactly, their CT numbers the
    CT's trilinear interpolation (the continuous model a trilinear DRR also assumes) and
    their components the containing voxel's."""
    from scipy.ndimage import map_coordinates

    spacing = np.abs(np.asarray(volume.spacing_mm, np.float64))
    n = np.maximum(1, np.rint(spacing / s.fine_mm).astype(int))   # sub-samples per axis (i, j, k)
    axes = []  # sub-sample index coordinates along i, j, k
    for m, sl in zip(n, (block[2], block[1], block[0]), strict=True):
        axes.append(sl.start - 0.5 + (np.arange((sl.stop - sl.start) * m) + 0.5) / m)
    gi, gj, gk = axes
    kk, jj, ii = np.meshgrid(gk, gj, gi, indexing="ij")
    coords = np.stack([kk.ravel(), jj.ravel(), ii.ravel()])
    hu_f = map_coordinates(np.asarray(volume.hu, np.float32), coords, order=1,
                           mode="nearest").reshape(kk.shape)
    comp_f = map_coordinates(comp, np.rint(coords), order=0, mode="nearest").reshape(kk.shape)
    a = np.asarray(volume.ct_from_ijk, np.float64)
    fine_from_ijk = np.diag([1.0 / n[0], 1.0 / n[1], 1.0 / n[2], 1.0])
    fine_from_ijk[:3, 3] = [gi[0], gj[0], gk[0]]
    return hu_to_particles(hu_f, a @ fine_from_ijk, component=comp_f.astype(np.int16),
                           air_threshold_hu=s.air_threshold_hu,
                           name=f"user CT {volume.name} (fine, about the target)")


class CompositeTruth:
    """Several user-CT truth parts moved by one breathing model (the fine particles about
    the target and the CT's own voxels elsewhere); :meth:`positions_ct` concatenates
    theirs."""

    def __init__(self, parts: tuple, target_ct_mm: NDArray):
        self.parts = tuple(parts)
        self.target_ct_mm = target_ct_mm

    def positions_ct(self, breath_level: float, target_offset_ct_mm: ArrayLike, *,
                     diaphragm_amplitude_mm: float | None = None) -> list:
        """Every part's (ParticleSet, positions) at this state (see
        :meth:`UserCTTruth.positions_ct`)."""
        out = []
        for part in self.parts:
            out += part.positions_ct(breath_level, target_offset_ct_mm,
                                     diaphragm_amplitude_mm=diaphragm_amplitude_mm)
        return out


class FourDCTTruth:
    """A truth patient from a 4D CT (see :func:`truth_from_4dct`)."""

    def __init__(self, sets: Sequence[ParticleSet], phase_levels: Sequence[float]):
        lv = np.asarray(phase_levels, dtype=np.float64)
        order = np.argsort(lv)
        self.sets = [sets[i] for i in order]
        self.phase_levels = lv[order]

    def positions_ct(self, breath_level: float, target_offset_ct_mm: ArrayLike, *,
                     diaphragm_amplitude_mm: float | None = None
                     ) -> list[tuple[ParticleSet, NDArray[np.float32], float]]:
        """The two phases bracketing ``breath_level`` (clamped to the phases' range) with
        linear weights summing to 1, all shifted by ``target_offset_ct_mm`` (CT mm).
        ``diaphragm_amplitude_mm`` is accepted for the interface's sake and ignored: the
        motion is the 4D CT's own.

        Returns
        -------
        list of (ParticleSet, positions (n, 3) float32 CT mm, weight)
            One triple at a phase's own level, else two.
        """
        off = np.asarray(target_offset_ct_mm, dtype=np.float32)
        if off.shape != (3,):
            raise ValueError(f"target_offset_ct_mm must have shape (3,) (got {off.shape})")
        lv = self.phase_levels
        x = float(np.clip(breath_level, lv[0], lv[-1]))
        hi = int(np.clip(np.searchsorted(lv, x, side="left"), 0, len(lv) - 1))
        if lv[hi] == x or hi == 0:
            picks = [(hi, 1.0)]
        else:
            f = (x - lv[hi - 1]) / (lv[hi] - lv[hi - 1])
            picks = [(hi - 1, 1.0 - f), (hi, f)]
        return [(self.sets[i], self.sets[i].position_ct_mm + off, w) for i, w in picks if w > 0]


def truth_from_4dct(paths: Sequence[str | Path], phase_levels: Sequence[float], *,
                    air_threshold_hu: float = AIR_THRESHOLD_HU) -> FourDCTTruth:
    """A truth patient from a 4D CT given as one file (or DICOM folder) per phase.

    Parameters
    ----------
    paths : sequence of path
        One CT per phase (read with :func:`~cyberknife_sim.anatomy.read_ct`).
    phase_levels : sequence of float
        Breath level of each phase (0 exhale, 1 inhale), distinct.
    air_threshold_hu : float
        Voxels below it give no particles.

    Returns
    -------
    FourDCTTruth
        ``positions_ct`` returns (ParticleSet, positions, weight) triples (module docstring).
    """
    if len(paths) != len(phase_levels) or len(paths) < 1:
        raise InputError(f"4D CT: {len(paths)} phase files for {len(phase_levels)} phase "
                         "levels (need one level per file, at least one)")
    if len(set(float(x) for x in phase_levels)) != len(phase_levels):
        raise InputError(f"4D CT: phase levels must be distinct (got {list(phase_levels)})")
    sets = []
    for path, lv in zip(paths, phase_levels, strict=True):
        v = read_ct(path)
        _, step = _axial(v)
        ps = hu_to_particles(v.hu, v.ct_from_ijk, air_threshold_hu=air_threshold_hu,
                             name=f"4D CT phase {lv:g} ({Path(path).name})")
        sets.append(_split_voxels(ps, np.abs(step), v.ct_from_ijk))
    return FourDCTTruth(sets, phase_levels)
