"""Dose: beam data, the cone dose engine, structures, plan MU optimisation, DVH, gamma and
the delivered dose of a run (see docs/dose.md)."""

from ._beamdata import DEFAULT_BEAM_DATA, BeamData
from ._delivered import axes_in_ct, beam_offsets_mm, delivered_dose_gy, planned_beam_ct
from ._density import relative_electron_density
from ._dvh import cumulative_dvh, oar_metrics, target_metrics
from ._engine import BeamDose, DoseEngine
from ._gamma import gamma_pass_rate
from ._grid import DoseGrid
from ._io import read_dose_nifti, read_rtdose, write_dose_nifti, write_rtdose
from ._optimize import MuResult, optimize_mu
from ._plan_dose import (
    PlanDose,
    dose_grid_for,
    influence_matrix,
    plan_dose,
    run_dose,
    write_dose_files,
)
from ._result import DoseResult
from ._structures import (
    Structure,
    StructureSet,
    load_structures,
    phantom_structures,
    structure_mask_on_grid,
    structures_from_labelmap,
    structures_from_rtstruct,
)

__all__ = [
    "DEFAULT_BEAM_DATA",
    "BeamData",
    "BeamDose",
    "DoseEngine",
    "DoseGrid",
    "DoseResult",
    "MuResult",
    "PlanDose",
    "Structure",
    "StructureSet",
    "axes_in_ct",
    "beam_offsets_mm",
    "cumulative_dvh",
    "delivered_dose_gy",
    "dose_grid_for",
    "gamma_pass_rate",
    "influence_matrix",
    "load_structures",
    "oar_metrics",
    "optimize_mu",
    "phantom_structures",
    "plan_dose",
    "planned_beam_ct",
    "read_dose_nifti",
    "read_rtdose",
    "relative_electron_density",
    "run_dose",
    "structure_mask_on_grid",
    "structures_from_labelmap",
    "structures_from_rtstruct",
    "target_metrics",
    "write_dose_files",
    "write_dose_nifti",
    "write_rtdose",
]
