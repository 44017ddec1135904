"""CT numbers ↔ material masses: how a CT voxel becomes truth particles and back.

The model (after Schneider, Bortfeld & Schlegel, "Correlation between CT numbers and tissue
parameters needed for Monte Carlo simulations of clinical dose distributions", Phys Med
Biol 2000;45:459-478): a voxel's CT number is linear in the masses of the materials in it,

    HU = -1000 + 1000 * sum_m (rel_atten_m * mass_m) / V,

where ``rel_atten_m`` = (mu/rho)_m / mu_water (cm³/g) is the material's mass attenuation
relative to water at the scanner's effective energy. Each material is pinned by one
reference point (density from ICRU Report 44, 1989; CT number from the phantom's
:data:`~cyberknife_sim.anatomy.TISSUE_HU` where it has one):

==============  ================  ==========  ======================================
material        density (g/cm³)   HU          note
==============  ================  ==========  ======================================
soft_tissue     1.06              40          phantom ``soft_tissue``; Schneider ~1.06
adipose         0.95              -100        ICRU-44 adipose; phantom ``fat``
lung            0.26              -745        ICRU-44 inflated lung; same rel_atten as
                                              soft tissue (lung parenchyma is soft tissue)
cortical_bone   1.92              1600        ICRU-44 cortical bone; its CT number at a
                                              120 kVp scanner's effective energy
                                              (65-70 keV: 1720-1560 HU from the NIST
                                              elemental cross sections; calibrations
                                              report 1500-1900 HU)
==============  ================  ==========  ======================================

HU → particles (:func:`hu_to_particles`), piecewise as Schneider's segments:

* ``HU < air_threshold_hu`` (default -950): air, no particle.
* ``air_threshold_hu <= HU < -200``: lung parenchyma at the density the HU says
  (``rho = (1 + HU/1000) / rel_atten_lung``: 0.26 g/cm³ at -745 HU, 0.18 at -820).
* ``-200 <= HU < -100``: adipose diluted by air (partial volume at the skin and fat-air
  borders), density from HU.
* ``-100 <= HU < 40``: a volume mixture of adipose (-100 HU) and soft tissue (40 HU); the
  volume fraction of soft tissue is ``(HU + 100) / 140`` (CT numbers mix linearly by volume).
* ``40 <= HU < 100``: soft tissue at the density the HU says (muscle, liver, blood).
* ``100 <= HU < 1600``: skeletal tissue, a volume mixture of soft tissue (marrow, 40 HU,
  1.06 g/cm³) and cortical bone (1600 HU, 1.92 g/cm³): bone volume fraction
  ``(HU - 40) / 1560``. Each voxel gives TWO particles at the same place.
* ``HU >= 1600``: cortical bone, density from HU (denser bone, teeth, metal clipped by the
  CT range).

Every segment inverts the linear forward model exactly, so hu → particles → hu
(:func:`masses_to_hu`) round-trips to float32 rounding (< 0.01 HU) for every HU at or above
the air threshold; below it the voxel comes back as -1000 HU (no mass).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._particles import MATERIALS, ParticleSet

__all__ = ["DENSITY_G_CM3", "MATERIAL_HU", "REL_ATTEN_CM3_G", "hu_to_masses",
           "hu_to_particles", "masses_to_hu"]

SOFT, ADIPOSE, LUNG, BONE = (MATERIALS.index(m) for m in
                             ("soft_tissue", "adipose", "lung", "cortical_bone"))

DENSITY_G_CM3: NDArray[np.float64] = np.array([1.06, 0.95, 0.26, 1.92])
"""Reference density of each material of :data:`MATERIALS` (g/cm³; ICRU-44, soft tissue as
Schneider 2000)."""

MATERIAL_HU: NDArray[np.float64] = np.array([40.0, -100.0, np.nan, 1600.0])
"""CT number of each material at its reference density (HU); lung is set from its density
with the soft-tissue attenuation (below)."""

_REL = (1.0 + MATERIAL_HU / 1000.0) / DENSITY_G_CM3
_REL[LUNG] = _REL[SOFT]
MATERIAL_HU[LUNG] = 1000.0 * (DENSITY_G_CM3[LUNG] * _REL[LUNG] - 1.0)
REL_ATTEN_CM3_G: NDArray[np.float64] = _REL
"""Mass attenuation of each material relative to water's linear attenuation (cm³/g):
``HU = -1000 + 1000 * sum(rel * mass) / volume``."""

AIR_THRESHOLD_HU = -950.0
_LUNG_MAX_HU = -200.0
_ADIPOSE_HU = -100.0
_SOFT_HU = 40.0
_BONE_MIX_HU = 100.0


def masses_to_hu(mass_per_material_g: ArrayLike, voxel_volume_cm3: float) -> NDArray[np.float64]:
    """CT number of voxels from the mass of each material in them.

    Parameters
    ----------
    mass_per_material_g : array-like, shape (4, ...)
        Mass (g) of each material of :data:`MATERIALS` in each voxel.
    voxel_volume_cm3 : float
        Voxel volume (cm³).

    Returns
    -------
    ndarray, shape (...), float64
        HU (-1000 for an empty voxel).
    """
    m = np.asarray(mass_per_material_g, dtype=np.float64)
    if m.ndim < 1 or m.shape[0] != len(MATERIALS):
        raise ValueError(f"mass_per_material_g must have shape ({len(MATERIALS)}, ...) "
                         f"(got {m.shape})")
    if not voxel_volume_cm3 > 0:
        raise ValueError(f"voxel_volume_cm3 must be > 0 (got {voxel_volume_cm3})")
    atten = np.tensordot(REL_ATTEN_CM3_G, m, axes=(0, 0))
    return -1000.0 + 1000.0 * atten / voxel_volume_cm3


def hu_to_masses(hu: ArrayLike, voxel_volume_cm3: float, *,
                 air_threshold_hu: float = AIR_THRESHOLD_HU) -> NDArray[np.float64]:
    """Mass of each material in voxels of given CT number (the piecewise model above).

    Parameters
    ----------
    hu : array-like, shape (...)
        CT numbers (HU).
    voxel_volume_cm3 : float
        Voxel volume (cm³).
    air_threshold_hu : float
        Below this, air: no mass.

    Returns
    -------
    ndarray, shape (4, ...), float64
        Mass (g) per material of :data:`MATERIALS`.
    """
    h_in = np.asarray(hu, dtype=np.float64)
    if not voxel_volume_cm3 > 0:
        raise ValueError(f"voxel_volume_cm3 must be > 0 (got {voxel_volume_cm3})")
    h = h_in.reshape(-1)
    rel = REL_ATTEN_CM3_G
    out = np.zeros((len(MATERIALS), h.size))
    mu = 1.0 + h / 1000.0                       # linear attenuation relative to water
    lung = (h >= air_threshold_hu) & (h < _LUNG_MAX_HU)
    out[LUNG][lung] = mu[lung] / rel[LUNG]
    fat = (h >= max(air_threshold_hu, _LUNG_MAX_HU)) & (h < _ADIPOSE_HU)
    out[ADIPOSE][fat] = mu[fat] / rel[ADIPOSE]
    mix = (h >= max(air_threshold_hu, _ADIPOSE_HU)) & (h < _SOFT_HU)
    f = (h[mix] - _ADIPOSE_HU) / (_SOFT_HU - _ADIPOSE_HU)
    out[SOFT][mix] = f * DENSITY_G_CM3[SOFT]
    out[ADIPOSE][mix] = (1.0 - f) * DENSITY_G_CM3[ADIPOSE]
    soft = (h >= _SOFT_HU) & (h < _BONE_MIX_HU)
    out[SOFT][soft] = mu[soft] / rel[SOFT]
    hc = MATERIAL_HU[BONE]
    skel = (h >= _BONE_MIX_HU) & (h < hc)
    f = (h[skel] - _SOFT_HU) / (hc - _SOFT_HU)
    out[SOFT][skel] = (1.0 - f) * DENSITY_G_CM3[SOFT]
    out[BONE][skel] = f * DENSITY_G_CM3[BONE]
    bone = h >= hc
    out[BONE][bone] = mu[bone] / rel[BONE]
    return (out * voxel_volume_cm3).reshape((len(MATERIALS),) + h_in.shape)


def hu_to_particles(hu: ArrayLike, ct_from_ijk: ArrayLike, *, component: ArrayLike | None = None,
                    air_threshold_hu: float = AIR_THRESHOLD_HU,
                    name: str = "from CT") -> ParticleSet:
    """Particles at the voxel centres of a CT, one per material present in each voxel.

    Parameters
    ----------
    hu : array-like, shape (nk, nj, ni)
        CT numbers (HU), indexed ``[k, j, i]``.
    ct_from_ijk : array-like, shape (4, 4)
        Voxel indices (i, j, k) → CT mm (LPS). The particle size is the cube root of the
        voxel volume (callers with strongly anisotropic voxels split them first, see
        :func:`cyberknife_sim.truth.truth_from_ct`).
    component : array-like of int, shape (nk, nj, ni), optional
        Component of each voxel's particles (default 0, deforming soft tissue).
    air_threshold_hu : float
        Voxels below this CT number give no particle.
    name : str
        Name of the set.

    Returns
    -------
    ParticleSet
        Ordered by voxel (C order of ``[k, j, i]``), then by material index; a skeletal
        voxel gives a soft-tissue and a cortical-bone particle at the same place.
    """
    h = np.asarray(hu)
    if h.ndim != 3:
        raise ValueError(f"hu must be a 3-D array [k, j, i] (got shape {h.shape})")
    a = np.asarray(ct_from_ijk, dtype=np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"ct_from_ijk must be 4x4 (got {a.shape})")
    comp = np.zeros(h.shape, np.int16) if component is None else np.asarray(component)
    if comp.shape != h.shape:
        raise ValueError(f"component must have the CT's shape {h.shape} (got {comp.shape})")
    vol_mm3 = abs(float(np.linalg.det(a[:3, :3])))
    keep = np.flatnonzero(h.reshape(-1) >= air_threshold_hu)
    masses = hu_to_masses(h.reshape(-1)[keep], vol_mm3 / 1000.0,
                          air_threshold_hu=air_threshold_hu)          # (4, n)
    present = masses > 0.0
    # order by voxel then material: take the transposed (n, 4) view
    present_t = present.T
    vox_idx = np.repeat(keep, present_t.sum(axis=1))
    mat = np.nonzero(present_t)[1].astype(np.uint8)
    mass = masses.T[present_t].astype(np.float32)
    k, j, i = np.unravel_index(vox_idx, h.shape)
    ijk = np.stack([i, j, k], axis=1).astype(np.float64)
    pos = (ijk @ a[:3, :3].T + a[:3, 3]).astype(np.float32)
    return ParticleSet(position_ct_mm=pos, mass_g=mass, material=mat,
                       component=comp.reshape(-1)[vox_idx].astype(np.int16),
                       size_mm=vol_mm3 ** (1.0 / 3.0), name=name)
