"""Simulation section: clock, duration, seed."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from ._base import Section, items

__all__ = ["MAX_STEPS", "MIN_TIME_STEP_S", "SimulationSettings"]

MAX_STEPS = 2_000_000
"""Most loop steps a run may take (``duration_s / time_step_s``); the loop keeps about 1 kB of
truth and records per step, so this bounds a run's memory to a few gigabytes (the default
scene takes 46,800 steps)."""
MIN_TIME_STEP_S = 1e-3
"""Shortest loop time step (s)."""


_Time = Annotated[float, Field(ge=0.0)]


class SimulationSettings(Section):
    """The simulation clock."""

    duration_s: float = Field(1800.0, gt=0.0, le=36000.0,
                              description="simulated treatment time (s)")
    time_step_s: float = Field(
        1.0 / 26.0, ge=MIN_TIME_STEP_S, le=1.0,
        description=f"loop time step (s); at most `duration_s` and at least "
        f"`duration_s` / {MAX_STEPS:,} (a run takes at most {MAX_STEPS:,} steps)")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of every random generator")
    blank_xray_at_s: Annotated[tuple[_Time, ...], items(0, 1000)] = Field(
        (),
        description="fault injection: the first X-ray pair at or after each of these times "
        "(s, >= 0) is blank (tube misfire), which registration must reject")

    @field_validator("time_step_s")
    @classmethod
    def _step_fits(cls, value: float, info: ValidationInfo) -> float:
        duration_s = info.data.get("duration_s")
        if duration_s is None:  # duration_s itself is invalid and reported
            return value
        if value > duration_s:
            raise ValueError(f"time_step_s must not exceed duration_s ({value:g} > "
                             f"{duration_s:g})")
        if duration_s / value > MAX_STEPS:
            raise ValueError(f"duration_s / time_step_s = {duration_s / value:,.0f} steps, more "
                             f"than {MAX_STEPS:,}: raise time_step_s or shorten duration_s")
        return value
