"""Settings of the 4D truth patient: particle resolutions and breathing-motion sizes.

The integrator hangs :class:`TruthSettings` under ``patient.truth`` of the scene; the
diaphragm amplitude comes from ``motion.breathing.amplitude_mm`` (passed to
:meth:`~cyberknife_sim.truth.TruthPatient.positions_ct`), not from here.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ._base import Section

__all__ = ["TruthSettings"]


def _is_multiple(a: float, b: float) -> bool:
    q = a / b
    return abs(q - round(q)) < 1e-6 and round(q) >= 1


class TruthSettings(Section):
    """How finely the truth patient is sampled and how it breathes (assumptions labelled)."""

    vertebra_voxel_mm: float = Field(
        0.5, ge=0.25, le=2.0,
        description="edge of the vertebra particles (mm): vertebrae, their marrow and the "
        "lesion are painted on a grid this fine around the spine; rib_voxel_mm must be a "
        "whole multiple of it")
    rib_voxel_mm: float = Field(
        1.0, ge=0.5, le=4.0,
        description="edge of the rib and sternum particles (mm), also the grid the soft "
        "tissue is painted on before it is gathered into soft_particle_mm blocks")
    soft_particle_mm: float = Field(
        2.0, ge=0.5, le=8.0,
        description="edge of the soft-tissue blocks (mm): one particle per material present "
        "in each block, at that material's center of mass; a whole multiple of rib_voxel_mm")
    vertebra_motion_spread: float = Field(
        0.3, ge=0.0, le=2.0,
        description="per-level spread of the vertebrae's motion: level k moves by the "
        "target offset x (1 + spread * z_k), z_k ~ N(0, 1) seeded by the phantom seed, 0 at "
        "the lesion level (dimensionless, assumption)")
    vertebra_rotation_deg: float = Field(
        0.1, ge=0.0, le=5.0,
        description="rotation of each non-lesion vertebra about its body center at "
        "breath_level 1, about a seeded random axis (deg, assumption)")
    rib_rotation_deg: float = Field(
        3.0, ge=0.0, le=15.0,
        description="rotation of each rib about its neck axis (costovertebral to "
        "costotransverse joint) at breath_level 1 (deg, assumption)")
    chest_wall_amplitude_ratio: float = Field(
        0.4, ge=0.0, le=2.0,
        description="anterior motion of the anterior chest/abdominal wall over the diaphragm "
        "amplitude (dimensionless, assumption)")
    heart_amplitude_ratio: float = Field(
        0.3, ge=0.0, le=1.5,
        description="inferior motion of the heart over the diaphragm amplitude "
        "(dimensionless, assumption)")
    lung_motion_decay_mm: float = Field(
        50.0, ge=5.0, le=500.0,
        description="length over which the lungs' inferior motion falls by 1/e above the "
        "diaphragm (mm, assumption: lower-lobe ~10 mm, upper-lobe ~2 mm motion)")

    @model_validator(mode="after")
    def _check_grids(self) -> TruthSettings:
        if not _is_multiple(self.rib_voxel_mm, self.vertebra_voxel_mm):
            raise ValueError(f"rib_voxel_mm ({self.rib_voxel_mm}) must be a whole multiple of "
                             f"vertebra_voxel_mm ({self.vertebra_voxel_mm})")
        if not _is_multiple(self.soft_particle_mm, self.rib_voxel_mm):
            raise ValueError(f"soft_particle_mm ({self.soft_particle_mm}) must be a whole "
                             f"multiple of rib_voxel_mm ({self.rib_voxel_mm})")
        return self
