"""The truth patient: what the live X-ray images see, kept apart from the planning CT that
registration uses (DESIGN.md, imaging realism)."""

from ..scene._truth import TruthSettings
from ._acquire import (
    acquire_ct,
    acquire_ct_on_grid,
    bin_particles,
    breath_phase_levels,
    planning_positions,
    regular_grid,
)
from ._materials import (
    DENSITY_G_CM3,
    MATERIAL_HU,
    REL_ATTEN_CM3_G,
    hu_to_masses,
    hu_to_particles,
    masses_to_hu,
)
from ._particles import MATERIALS, ParticleSet
from ._patient import TruthAnatomy, TruthPatient
from ._phantom4d import build_truth_phantom
from ._scene import SceneTruth, acquire_planning_ct, load_truth_patient, planning_offset_ct_mm
from ._userct import (
    FourDCTTruth,
    TruthModel,
    UserCTSettings,
    UserCTTruth,
    truth_from_4dct,
    truth_from_ct,
)

__all__ = [
    "DENSITY_G_CM3",
    "FourDCTTruth",
    "MATERIALS",
    "MATERIAL_HU",
    "REL_ATTEN_CM3_G",
    "ParticleSet",
    "SceneTruth",
    "TruthAnatomy",
    "TruthModel",
    "TruthPatient",
    "TruthSettings",
    "UserCTSettings",
    "UserCTTruth",
    "acquire_ct",
    "acquire_planning_ct",
    "acquire_ct_on_grid",
    "bin_particles",
    "breath_phase_levels",
    "build_truth_phantom",
    "hu_to_masses",
    "load_truth_patient",
    "hu_to_particles",
    "masses_to_hu",
    "planning_offset_ct_mm",
    "planning_positions",
    "regular_grid",
    "truth_from_4dct",
    "truth_from_ct",
]
