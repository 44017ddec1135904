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
    blank_xray_at_s: tuple[float, ...] = Field(
        (), description="fault injection: the first X-ray pair at or after each of these times "
        "(s, >= 0) is blank (tube misfire), which registration must reject")

    @model_validator(mode="after")
    def _step_fits(self) -> SimulationSettings:
        if any(not t >= 0 for t in self.blank_xray_at_s):
            raise ValueError(f"blank_xray_at_s: times must be >= 0 (got {self.blank_xray_at_s})")
        if self.time_step_s > self.duration_s:
            raise ValueError(f"time_step_s must not exceed duration_s (got {self.time_step_s} "
                             f"> {self.duration_s})")
        return self
