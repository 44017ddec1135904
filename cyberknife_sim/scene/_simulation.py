"""Simulation section: clock, duration, seed."""

from __future__ import annotations

from pydantic import Field, model_validator

from ._base import Section

__all__ = ["SimulationSettings"]


class SimulationSettings(Section):
    """The simulation clock."""

    duration_s: float = Field(1800.0, gt=0.0, le=36000.0,
                              description="simulated treatment time (s)")
    time_step_s: float = Field(1.0 / 26.0, gt=0.0, le=1.0,
                               description="loop time step (s)")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of every random generator")

    @model_validator(mode="after")
    def _step_fits(self) -> SimulationSettings:
        if self.time_step_s > self.duration_s:
            raise ValueError(f"time_step_s must not exceed duration_s (got {self.time_step_s} "
                             f"> {self.duration_s})")
        return self
