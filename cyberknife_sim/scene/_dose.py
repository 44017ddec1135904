"""Dose section: prescription, cord limits, dose grid, MU optimisation, gamma criteria."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ._base import Section, items

__all__ = ["DoseSettings", "GammaCriterion"]


class GammaCriterion(Section):
    """One gamma criterion: dose difference (% of the planned maximum) and distance to
    agreement (mm)."""

    dose_percent: float = Field(..., gt=0.0, le=20.0, description="dose difference (%, global)")
    dta_mm: float = Field(..., gt=0.0, le=10.0, description="distance to agreement (mm)")


class DoseSettings(Section):
    """Planned and delivered dose of the run (see docs/dose.md). The targets and limits
    default to single-fraction spine SBRT: 16 Gy to the target; cord point maximum 14 Gy and
    V10 Gy < 0.35 cc (AAPM TG-101, Benedict et al., Med Phys 2010;37:4078)."""

    enabled: bool = Field(True, description="compute the planned and the delivered dose")
    prescription_gy: float = Field(16.0, gt=0.0, le=100.0,
                                   description="prescription dose to the target (Gy)")
    fractions: int = Field(1, ge=1, le=40, description="fractions (the run simulates one)")
    coverage: float = Field(0.95, gt=0.5, le=1.0,
                            description="fraction of the target volume the plan brings to at "
                            "least the prescription (MU optimisation goal)")
    cord_max_gy: float = Field(14.0, gt=0.0, le=100.0,
                               description="cord point-maximum limit (Gy)")
    cord_limit_gy: float = Field(10.0, gt=0.0, le=100.0,
                                 description="cord dose-volume limit: the dose level (Gy) "
                                 "that at most `cord_limit_cc` of the cord may receive")
    cord_limit_cc: float = Field(0.35, ge=0.0, le=10.0,
                                 description="cord volume allowed above `cord_limit_gy` (cc)")
    optimize_mu: bool = Field(True, description="optimise the MU of a generated plan for the "
                              "prescription under the cord limits (a plan file keeps its MU)")
    grid_spacing_mm: float = Field(2.0, ge=0.5, le=5.0, description="dose grid spacing (mm)")
    margin_mm: float = Field(15.0, ge=0.0, le=100.0,
                             description="dose grid margin around the target and the cord "
                             "near it (mm)")
    cord_extent_mm: float = Field(30.0, ge=0.0, le=200.0,
                                  description="cord included in the grid this far above and "
                                  "below the target (mm, along the CT z axis)")
    delivered: Literal["shift", "exact"] = Field(
        "shift", description="delivered-dose accumulation: shift (each beam's dose moved by "
        "the distribution of its lateral axis offsets; fast) or exact (one dose calculation "
        "per distinct step geometry; slow, for checks)")
    gamma: Annotated[tuple[GammaCriterion, ...], items(0, 6)] = Field(
        (GammaCriterion(dose_percent=3.0, dta_mm=2.0),
         GammaCriterion(dose_percent=2.0, dta_mm=1.0)),
        description="gamma criteria of delivered vs planned dose (global, 10 % low-dose "
        "cutoff)")

    @model_validator(mode="after")
    def _limits_order(self) -> DoseSettings:
        if self.cord_limit_gy > self.cord_max_gy:
            raise ValueError(f"cord_limit_gy ({self.cord_limit_gy:g}) must not exceed "
                             f"cord_max_gy ({self.cord_max_gy:g})")
        return self
