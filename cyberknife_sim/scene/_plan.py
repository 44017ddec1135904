"""Plan section: beam nodes, MU and delivery."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ._base import Section, resolve_scene_path

__all__ = ["PlanSettings"]


class PlanSettings(Section):
    """Treatment plan: generated from these settings, or read from `file`."""

    file: Path | None = Field(None, description="plan file (JSON); overrides the generator")
    sad_mm: float = Field(800.0, ge=500.0, le=1200.0, description="source-axis distance (mm)")
    n_beams: int = Field(120, ge=1, le=1000, description="beams of the generated plan")
    total_mu: float = Field(12000.0, gt=0.0, description="MU summed over all beams")
    dose_rate_mu_per_min: float = Field(1000.0, gt=0.0, le=10000.0,
                                        description="linac dose rate (MU/min)")
    collimator_mm: float = Field(20.0, ge=5.0, le=60.0,
                                 description="circular collimator diameter at SAD (mm)")

    _resolve_file = field_validator("file")(resolve_scene_path)
