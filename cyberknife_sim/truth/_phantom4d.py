"""The truth patient painted at fine resolution from the procedural phantom's recipe.

Three nested grids share the phantom's CT frame (LPS mm; the layout is drawn first from the
phantom's generator, so vertebra centers and the lesion center equal
:func:`~cyberknife_sim.anatomy.make_phantom`'s :class:`PhantomTruth`):

* grid M (``rib_voxel_mm``, default 1 mm, isotropic, whole field of view): body, fat,
  lungs, diaphragm, liver, ribs, sternum, discs, canal and cord. Rib and sternum voxels become
  particles one by one (a marrow voxel gives a soft-tissue and a cortical-bone particle at the
  same place); the other tissues are gathered into ``soft_particle_mm`` blocks of M voxels,
  one particle per material present in a block at that material's center of mass.
* grid F (``vertebra_voxel_mm``, default 0.5 mm, a box around the spine, nested in M: each M
  voxel is r³ F voxels): the vertebrae (cortical shell, trabecular core), the canal carved
  out of them and the lesion; every bone voxel becomes one or two particles.
* Where F holds vertebral bone, the M tissue under it is removed by the bone fraction of each
  M voxel, so the two grids neither overlap nor leave gaps (mass is conserved).

Masses: the project's one HU → material model (``truth._materials``: Schneider et al. 2000
segments, ICRU-44 densities) applied to the painted CT numbers: each voxel's own HU for lung
and the bone/marrow mixtures (their texture is anatomy), the label's nominal HU
(``anatomy._tissues.TISSUE_HU``) for the other tissues (the painted CT noise is not). So a
planning CT acquired from the truth shows the painted phantom's HU again.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..anatomy._canvas import Canvas
from ..anatomy._params import PhantomParams
from ..anatomy._spine import paint_canal, paint_discs, paint_vertebra, vertebra_bounds_ct
from ..anatomy._thorax import (
    _RIB_PHI_END,
    cage_center_y_mm,
    paint_body,
    paint_ribs,
    paint_sternum,
    paint_viscera,
    rib_radius,
)
from ..anatomy._tissues import TISSUE_HU, TISSUE_LABELS
from ..anatomy.phantom import (
    lesion_center_ct_mm,
    paint_lesion,
    phantom_layout,
    sternum_y_mm,
)
from ..scene._truth import TruthSettings
from ._materials import hu_to_masses
from ._particles import MATERIALS, ParticleSet
from ._patient import TruthAnatomy, TruthPatient, cached_truth

__all__ = ["build_truth_phantom", "label_masses_g"]

_L = TISSUE_LABELS
_SOFT, _FAT, _LUNG, _CORT = (MATERIALS.index(m) for m in
                             ("soft_tissue", "adipose", "lung", "cortical_bone"))

_BONE_LABELS = ("cortical_bone", "cancellous_bone", "lesion", "rib_marrow")
# Masses follow the project's one HU <-> material mapping (truth._materials, Schneider 2000):
# the painted phantom's CT numbers define its tissues, so a planning CT acquired from the
# truth shows the painted HU again. Textured tissues use each voxel's HU; the others their
# label's nominal HU (the painted CT noise is not anatomy).
_HU_FROM_VOXEL = np.array([_L[n] for n in ("lung", *_BONE_LABELS)], dtype=np.uint8)
_NOMINAL_HU = np.full(256, TISSUE_HU["air"])
for _name, _label in _L.items():
    _NOMINAL_HU[_label] = TISSUE_HU.get(_name, TISSUE_HU["soft_tissue"])


def label_masses_g(labels: NDArray, hu: NDArray, voxel_mm3: float) -> NDArray[np.float64]:
    """Mass of each material in each voxel of a phantom label map.

    Parameters
    ----------
    labels : ndarray of uint8, any shape
        Tissue labels (:data:`~cyberknife_sim.anatomy.TISSUE_LABELS`).
    hu : ndarray, same shape
        CT numbers (HU): they set the lung density (linear to soft tissue: 1.06 g/cm³ at
        40 HU) and the bone fraction of marrow mixtures.
    voxel_mm3 : float
        Voxel volume (mm³).

    Returns
    -------
    ndarray, shape labels.shape + (4,), float64
        Mass (g) per material of :data:`MATERIALS`; air is massless.
    """
    cm3 = voxel_mm3 * 1e-3
    h = np.where(np.isin(labels, _HU_FROM_VOXEL), hu, _NOMINAL_HU[labels])
    return np.moveaxis(hu_to_masses(h, cm3), 0, -1)


def _paint_tracked(cv: Canvas, comp: NDArray[np.int16], cid: int, paint) -> None:
    """Run ``paint(cv)``; the voxels it labels get component ``cid`` (labels it leaves
    alone keep theirs)."""
    before = cv.labels.copy()
    cv.labels.fill(0)
    paint(cv)
    new = cv.labels != 0
    comp[new] = cid
    np.copyto(cv.labels, before, where=~new)


def _grid_m(p: PhantomParams, lay, dm: float, block: int) -> Canvas:
    ni = int(np.ceil(p.fov_mm[0] / dm / block)) * block
    nj = int(np.ceil(p.fov_mm[1] / dm / block)) * block
    nk = int(np.ceil(((lay.z_hi_mm - lay.z_lo_mm) / dm + 1) / block)) * block
    origin = (-(ni - 1) * dm / 2, -(nj - 1) * dm / 2, lay.z_lo_mm)
    return Canvas.create(origin, (dm, dm, dm), (ni, nj, nk), fill_hu=TISSUE_HU["air"])


def _rib_geometry(v, side: float, scale: float):
    """Joint (rib head, CT mm), unit neck axis and far-end point of one rib."""
    cy = cage_center_y_mm(v, scale)
    z_head = float(v.center[2]) + 0.3 * v.dims.height

    def point(phi):
        r = float(rib_radius(phi, scale))
        frac = np.clip((phi - 20.0) / 120.0, 0.0, 1.0)
        return np.array([side * r * np.sin(np.radians(phi)), cy + r * np.cos(np.radians(phi)),
                         z_head - 45.0 * frac**1.5])

    joint, neck, tip = point(20.0), point(35.0), point(_RIB_PHI_END[v.label])
    axis = (neck - joint) / np.linalg.norm(neck - joint)
    if np.cross(axis, tip - joint)[2] < 0:   # a positive angle lifts the anterior end
        axis = -axis
    return joint, axis


def _soft_blocks(cv: Canvas, soft_mass: NDArray, block: int):
    """Gather per-voxel material masses ``(nk, nj, ni, 4)`` of grid M (``nk`` a multiple of
    ``block``) into blocks: per block and material present, total mass and center of mass
    (blocks ordered k, j, i, then material)."""
    nk, nj, ni, nm = soft_mass.shape
    bj, bi = nj // block, ni // block
    kk, jj, ii, mm = np.nonzero(soft_mass > 0)
    w = soft_mass[kk, jj, ii, mm]
    key = (((kk // block) * bj + jj // block) * bi + ii // block) * nm + mm
    n = (nk // block) * bj * bi * nm
    tot = np.bincount(key, weights=w, minlength=n)
    sums = [np.bincount(key, weights=w * ax[idx].astype(np.float64), minlength=n)
            for ax, idx in ((cv.x, ii), (cv.y, jj), (cv.z, kk))]
    keep = np.nonzero(tot > 0)[0]
    t = tot[keep]
    pos = np.stack([sm[keep] / t for sm in sums], axis=1)
    return pos, t, (keep % nm).astype(np.uint8)


def _gather_blocks(pos: NDArray, mass: NDArray, comp: NDArray, size_mm: float):
    """Soft-tissue particles gathered per (cube of ``size_mm``, component) at their centre of
    mass: positions, masses, materials (soft tissue), components."""
    blk = np.floor((pos - pos.min(axis=0)) / size_mm).astype(np.int64)
    dims = blk.max(axis=0) + 1
    n_comp = int(comp.max()) + 1
    key = ((blk[:, 2] * dims[1] + blk[:, 1]) * dims[0] + blk[:, 0]) * n_comp + comp
    uniq, inv = np.unique(key, return_inverse=True)
    tot = np.bincount(inv, weights=mass)
    centre = np.stack([np.bincount(inv, weights=mass * pos[:, a]) / tot for a in range(3)],
                      axis=1)
    return (centre, tot, np.full(uniq.size, _SOFT, np.uint8),
            (uniq % n_comp).astype(np.int16))


def _voxel_particles(x, y, z, labels, hu, weight, comp, vox_mm3):
    """Particles of bone voxels (flattened arrays): cortical → one, marrow → two."""
    masses = label_masses_g(labels, hu, vox_mm3) * weight[:, None]
    vi, mi = np.nonzero(masses > 0)
    pos = np.stack([x[vi], y[vi], z[vi]], axis=1)
    return pos, masses[vi, mi], mi, comp[vi]


def _set(name, pos, mass, mat, comp, size_mm) -> ParticleSet:
    order = np.argsort(comp, kind="stable")
    return ParticleSet(position_ct_mm=np.ascontiguousarray(pos[order], dtype=np.float32),
                       mass_g=np.ascontiguousarray(mass[order], dtype=np.float32),
                       material=np.ascontiguousarray(mat[order], dtype=np.uint8),
                       component=np.ascontiguousarray(comp[order], dtype=np.int16),
                       size_mm=float(size_mm), name=name)


def _build(p: PhantomParams, seed: int, s: TruthSettings) -> TruthPatient:
    rng = np.random.default_rng(seed)
    lay = phantom_layout(p, rng)          # same draws as make_phantom: same frame and spine
    painted = lay.painted
    labels_v = tuple(v.label for v in painted)
    dm, df = s.rib_voxel_mm, s.vertebra_voxel_mm
    block = int(round(s.soft_particle_mm / dm))
    r = int(round(dm / df))

    # component table: 0 soft, vertebrae, ribs (per thoracic level and side), sternum
    components: list[tuple[str, str]] = [("soft", "")]
    components += [("vertebra", lab) for lab in labels_v]
    rib_poses = [v for v in lay.poses if v.dims.thoracic]
    rib_ids, joints, axes, rib_levels = {}, [], [], []
    for v in rib_poses:
        for side, name in ((-1.0, "right"), (1.0, "left")):
            rib_ids[(v.label, side)] = len(components)
            components.append(("rib", f"{v.label} {name}"))
            j, a = _rib_geometry(v, side, lay.scale)
            joints.append(j)
            axes.append(a)
            rib_levels.append(v.label)
    sternum_id = len(components)
    components.append(("sternum", ""))

    # grid M: trunk, ribs and sternum tracked, discs, canal
    cv = _grid_m(p, lay, dm, block)
    comp_m = np.zeros(cv.labels.shape, dtype=np.int16)
    paint_body(cv, half_width_mm=p.body_half_width_mm, half_depth_mm=p.body_half_depth_mm,
               fat_mm=p.fat_thickness_mm)
    paint_viscera(cv, lay.ref, z_dome_mm=lay.z_dome_mm, z_liver_end_mm=lay.z_of("L2"),
                  scale=lay.scale)
    xpos = cv.x[None, None, :] > 0
    for v in rib_poses:
        scratch = np.zeros_like(comp_m)
        _paint_tracked(cv, scratch, 1, lambda c, v=v: paint_ribs(c, [v], scale=lay.scale))
        hit = scratch == 1
        comp_m[hit & ~xpos] = rib_ids[(v.label, -1.0)]
        comp_m[hit & xpos] = rib_ids[(v.label, 1.0)]
    _paint_tracked(cv, comp_m, sternum_id,
                   lambda c: paint_sternum(c, y_mm=sternum_y_mm(p, lay), z_low_mm=lay.z_of("T9"),
                                           scale=lay.scale))
    paint_discs(cv, lay.poses)
    cord_end = lay.cord_end_z_mm
    paint_canal(cv, lay.poses, cord_end_z_mm=cord_end)

    # grid F: vertebrae, canal and lesion, nested in M
    target = lesion_center_ct_mm(p, lay)
    boxes = [vertebra_bounds_ct(v) for v in painted]
    lo = np.min([b[0] for b in boxes], axis=0)
    hi = np.max([b[1] for b in boxes], axis=0)
    i0, j0, k0 = (max(int(np.floor((lo[a] - ax[0]) / dm)) - 1, 0)
                  for a, ax in enumerate((cv.x, cv.y, cv.z)))
    i1, j1, k1 = (min(int(np.ceil((hi[a] - ax[0]) / dm)) + 2, ax.size)
                  for a, ax in enumerate((cv.x, cv.y, cv.z)))
    f_origin = [float(ax[i]) - dm / 2 + df / 2 for ax, i in zip((cv.x, cv.y, cv.z),
                                                                 (i0, j0, k0), strict=True)]
    fv = Canvas.create(f_origin, (df, df, df), ((i1 - i0) * r, (j1 - j0) * r, (k1 - k0) * r),
                       fill_hu=TISSUE_HU["air"])
    comp_f = np.zeros(fv.labels.shape, dtype=np.int16)
    for n, v in enumerate(painted):
        _paint_tracked(fv, comp_f, 1 + n, lambda c, v=v: paint_vertebra(
            c, v, rng, cortical_mm=p.cortical_thickness_mm))
    paint_canal(fv, lay.poses, cord_end_z_mm=cord_end)
    paint_lesion(fv, p, target)
    bone_f = np.isin(fv.labels, [_L[b] for b in _BONE_LABELS]) & (comp_f > 0)
    frac = bone_f.reshape(k1 - k0, r, j1 - j0, r, i1 - i0, r).mean(axis=(1, 3, 5))
    keep_m = np.ones(cv.labels.shape, dtype=np.float32)
    keep_m[k0:k1, j0:j1, i0:i1] -= frac.astype(np.float32)
    del frac

    # vertebra particles (F)
    kk, jj, ii = np.nonzero(bone_f)
    pos, mass, mat, comp = _voxel_particles(
        fv.x[ii], fv.y[jj], fv.z[kk], fv.labels[kk, jj, ii], fv.hu[kk, jj, ii],
        np.ones(kk.size), comp_f[kk, jj, ii], df**3)
    # the vertebrae's mineral (cortical-bone material) at F; their marrow (soft tissue, a
    # low-contrast filler) gathered into blocks of M's size: half the particles to project
    soft = mat == _SOFT
    vert_set = _set(f"vertebrae {df:g} mm", pos[~soft], mass[~soft], mat[~soft], comp[~soft], df)
    marrow_set = _set(f"vertebral marrow {dm:g} mm",
                      *_gather_blocks(pos[soft], mass[soft], comp[soft], dm), dm)
    del fv, comp_f, bone_f

    # rib and sternum particles (M)
    bone_m = (comp_m > 0) & np.isin(cv.labels, [_L["cortical_bone"], _L["rib_marrow"]])
    kk, jj, ii = np.nonzero(bone_m)
    pos, mass, mat, comp = _voxel_particles(
        cv.x[ii], cv.y[jj], cv.z[kk], cv.labels[kk, jj, ii], cv.hu[kk, jj, ii],
        keep_m[kk, jj, ii].astype(np.float64), comp_m[kk, jj, ii], dm**3)
    rib_set = _set(f"ribs and sternum {dm:g} mm", pos, mass, mat, comp, dm)

    # soft tissue (M → blocks)
    soft_lab = np.where(bone_m, np.uint8(0), cv.labels)
    del bone_m, comp_m
    parts = []
    step = block * max(1, 16 // block)
    for a in range(0, soft_lab.shape[0], step):
        sl = slice(a, a + step)
        m = label_masses_g(soft_lab[sl], cv.hu[sl], dm**3)
        m *= keep_m[sl][..., None]
        sub = Canvas(cv.x, cv.y, cv.z[sl], cv.hu[sl], soft_lab[sl])
        parts.append(_soft_blocks(sub, m, block))
    pos = np.concatenate([q[0] for q in parts])
    mass = np.concatenate([q[1] for q in parts])
    mat = np.concatenate([q[2] for q in parts])
    soft_set = _set(f"soft tissue {s.soft_particle_mm:g} mm", pos, mass, mat,
                    np.zeros(mass.size, dtype=np.int16), s.soft_particle_mm)

    # seeded per-level motion draws (own stream: the phantom's draws are untouched)
    mrng = np.random.default_rng([seed, 13])
    z_k = mrng.standard_normal(len(painted))
    z_k[labels_v.index(p.lesion_level)] = 0.0
    rot_axis = mrng.standard_normal((len(painted), 3))
    rot_axis /= np.linalg.norm(rot_axis, axis=1, keepdims=True)

    anatomy = TruthAnatomy(
        target_ct_mm=np.asarray(target, dtype=np.float64),
        lesion_level=p.lesion_level,
        vertebra_labels=labels_v,
        vertebra_centers_ct_mm=np.array([v.center for v in painted], dtype=np.float64),
        vertebra_width_depth_mm=np.array([[v.dims.width, v.dims.depth] for v in painted]),
        level_motion_z=z_k,
        level_rotation_axis=rot_axis,
        rib_components=np.array(list(rib_ids.values()), dtype=np.int64),
        rib_levels=tuple(rib_levels),
        rib_joint_ct_mm=np.array(joints),
        rib_axis=np.array(axes),
        sternum_component=sternum_id,
        cage_center_y_mm=cage_center_y_mm(lay.ref, lay.scale),
        body_center_y_mm=float(lay.ref.center[1]),
        scale=lay.scale,
        z_dome_mm=lay.z_dome_mm,
        body_half_depth_mm=p.body_half_depth_mm,
    )
    return TruthPatient(sets=(soft_set, vert_set, rib_set, marrow_set),
                        components=tuple(components),
                        anatomy=anatomy, settings=s)


def build_truth_phantom(params: PhantomParams, *, seed: int,
                        settings: TruthSettings | None = None) -> TruthPatient:
    """The 4D truth patient of phantom ``params`` (cached in memory and on disk).

    Parameters
    ----------
    params : PhantomParams
        The phantom (as for :func:`~cyberknife_sim.anatomy.make_phantom`).
    seed : int
        The phantom seed: the same seed gives the same spine, lesion and CT frame as
        ``make_phantom(params, seed=seed)``, and bit-identical particles.
    settings : TruthSettings, optional
        Resolutions and motion sizes (defaults when omitted).

    Returns
    -------
    TruthPatient
        Its particle sets (soft tissue, vertebrae, ribs and sternum), component table and
        breathing motion.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
    settings = settings if settings is not None else TruthSettings()
    return cached_truth(params, int(seed), settings, _build)
