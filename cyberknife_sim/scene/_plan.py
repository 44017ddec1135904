"""Plan section: beam nodes, MU and delivery."""

from __future__ import annotations

from pydantic import Field, field_validator

from ._base import ScenePath, Section, resolve_scene_file

__all__ = ["PlanSettings"]


class PlanSettings(Section):
    """Treatment plan: generated from these settings, or read from `file`."""

    file: ScenePath | None = Field(None,
                                   description="plan file (JSON); overrides the generator")
    sad_mm: float = Field(800.0, ge=500.0, le=1200.0, description="source-axis distance (mm)")
    n_beams: int = Field(120, ge=1, le=1000, description="beams of the generated plan")
    total_mu: float = Field(12000.0, gt=0.0, le=1.0e6,
                            description="MU summed over all beams of a generated plan; with "
                            "`dose.enabled` and `dose.optimize_mu` the optimiser sets each "
                            "beam's MU instead")
    dose_rate_mu_per_min: float = Field(1000.0, ge=1.0, le=10000.0,
                                        description="linac dose rate (MU/min)")
    collimator_mm: float = Field(20.0, ge=5.0, le=60.0,
                                 description="circular collimator diameter at SAD (mm)")
    candidate_nodes: int = Field(320, ge=10, le=5000,
                                 description="candidate source positions on the whole SAD "
                                 "sphere (Fibonacci lattice) before the polar-angle cut and the "
                                 "reachability/collision checks")
    max_polar_deg: float = Field(100.0, ge=10.0, le=180.0,
                                 description="largest angle of a candidate node from vertical "
                                 "above the target (room -y), deg")

    _resolve_file = field_validator("file")(resolve_scene_file)
