"""Motion section: the truth that moves the patient (breathing, spine drift, shifts, traces)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ._base import ScenePath, Section, bounded_vec3, items, resolve_scene_file

__all__ = ["BreathingSettings", "CoughSettings", "MotionSettings", "ShiftEvent",
           "SpineMotionSettings", "TraceSettings"]


_Mm = bounded_vec3(ge=-1000.0, le=1000.0)
"""A translation (mm), each component within ±1 m."""
_Deg = bounded_vec3(ge=-180.0, le=180.0)
"""A rotation rx, ry, rz (deg), each within ±180."""
_MmPerMin = bounded_vec3(ge=-100.0, le=100.0)
"""A translation drift (mm/min), each component within ±100."""
_DegPerMin = bounded_vec3(ge=-30.0, le=30.0)
"""A rotation drift (deg/min), each component within ±30."""
_Direction = bounded_vec3(ge=-1000.0, le=1000.0)
"""A direction (normalized when used), each component within ±1000."""


class BreathingSettings(Section):
    """Lujan breathing model z0 - b cos^2n(pi t / tau - phi) along a direction."""

    enabled: bool = Field(True, description="breathing on or off")
    period_s: float = Field(4.0, ge=1.0, le=20.0, description="mean breathing period (s)")
    amplitude_mm: float = Field(10.0, ge=0.0, le=50.0,
                                description="peak-to-peak external (chest) amplitude (mm)")
    shape_n: int = Field(2, ge=1, le=6, description="Lujan exponent n (asymmetry)")
    direction: _Direction = Field(
        (0.0, -0.3, -1.0),
        description="direction of internal target motion from exhale to inhale (room; "
        "normalized, so not [0, 0, 0]: turn breathing off with `enabled`; default "
        "anterior-inferior)")
    target_amplitude_mm: float = Field(
        2.0, ge=0.0, le=50.0,
        description="peak-to-peak internal target motion along `direction` (mm)")
    period_cv: float = Field(0.2, ge=0.0, le=1.0, description="breath-to-breath period CV")
    amplitude_cv: float = Field(0.3, ge=0.0, le=1.0,
                                description="breath-to-breath amplitude CV")
    baseline_drift_mm_per_min: float = Field(0.0, ge=-10.0, le=10.0,
                                             description="external baseline drift (mm/min)")
    hysteresis_deg: float = Field(
        0.0, ge=-90.0, le=90.0,
        description="phase shift between the internal and external signals (deg of the "
        "breathing cycle; positive: the target leads the chest): a pure time shift, which traces "
        "a hysteresis loop in the internal-vs-external plane; a linear correlation model cannot "
        "follow it, `linear_velocity` can (scenes/phase_shift.yaml)")
    amplitude_ratio_drift_per_min: float = Field(
        0.0, ge=-0.5, le=0.5,
        description="relative change per minute of the internal/external amplitude ratio: the "
        "target amplitude is scaled by 1 + drift * t / 60 (floored at 0), the chest unchanged")
    internal_baseline_shift_mm: _Mm = Field(
        (0.0, 0.0, 0.0), description="baseline shift of the internal target alone (room mm), "
        "from `internal_baseline_shift_time_s` on; the chest signal is unchanged")
    internal_baseline_shift_time_s: float = Field(
        0.0, ge=0.0, le=1e6, description="time of `internal_baseline_shift_mm` (s)")

    @field_validator("direction")
    @classmethod
    def _nonzero_direction(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if math.hypot(*value) < 1e-6:
            raise ValueError("direction must not be zero (it is normalized); set "
                             "`enabled: false` to turn breathing off")
        return value


class CoughSettings(Section):
    """Occasional deep breaths or coughs."""

    rate_per_min: float = Field(0.0, ge=0.0, le=10.0, description="mean events per minute")
    amplitude_mm: float = Field(8.0, ge=0.0, le=50.0, description="extra target excursion (mm)")
    duration_s: float = Field(1.0, gt=0.0, le=10.0, description="event duration (s)")


class ShiftEvent(Section):
    """A sudden rigid shift of the spine at a given time."""

    time_s: float = Field(ge=0.0, description="time of the shift (s)")
    translation_mm: _Mm = Field((0.0, 0.0, 0.0), description="translation (room, mm)")
    rotation_deg: _Deg = Field((0.0, 0.0, 0.0), description="rotation rx, ry, rz (deg)")


class SpineMotionSettings(Section):
    """Slow patient motion of the spine (rigid, about the room origin)."""

    drift_mm_per_min: _MmPerMin = Field(
        (0.1, 0.05, 0.15), description="linear translation drift (room, mm/min)")
    drift_deg_per_min: _DegPerMin = Field(
        (0.0, 0.0, 0.02), description="linear rotation drift rx, ry, rz (deg/min)")
    setup_error_mm: _Mm = Field((0.0, 0.0, 0.0),
                                description="residual set-up translation at t = 0 (mm)")
    setup_error_deg: _Deg = Field((0.0, 0.0, 0.0),
                                  description="residual set-up rotation at t = 0 (deg)")
    shifts: Annotated[tuple[ShiftEvent, ...], items(0, 1000)] = Field(
        (), description="sudden shifts")


class TraceSettings(Section):
    """A recorded motion trace that replaces the breathing model of the target."""

    file: ScenePath | None = Field(None,
                                   description="text/CSV trace; relative to the scene file")
    time_column: int = Field(0, ge=0, description="column holding time (0-based)")
    columns: Annotated[tuple[Annotated[int, Field(ge=0)], ...], items(1, 6)] = Field(
        (1, 2, 3),
        description="columns of the motion (x y z [rx ry rz]; 0-based, not negative)")
    time_unit_s: float = Field(1.0, ge=1e-9, le=3600.0,
                               description="seconds per time unit in the file (0.1 for ds)")
    kind: Literal["target", "external", "paired"] = Field(
        "target",
        description="what the trace measures: `target` (tumour motion; the chest follows its "
        "principal axis), `external` (a 1-D chest signal; the target follows the breathing "
        "model), `paired` (`file` is the tumour motion and `external_file` the chest signal "
        "recorded with it: the target follows the one and the markers the other)")
    external_file: ScenePath | None = Field(
        None, description="`paired` only: the external (surface) trace recorded together with "
        "`file` (time + displacement in mm); relative to the scene file")
    external_time_column: int = Field(0, ge=0,
                                      description="`paired`: column of `external_file` holding "
                                      "time (0-based)")
    external_column: int = Field(1, ge=0, description="`paired`: column of `external_file` "
                                 "holding the displacement (mm, 0-based)")
    external_time_unit_s: float | None = Field(
        None, ge=1e-9, le=3600.0,
        description="`paired`: seconds per time unit in `external_file` (0.1 for tenths of a "
        "second); null: the same as `time_unit_s`")
    external_scale: float = Field(
        1.0, ge=-1000.0, le=1000.0,
        description="`paired`: mm of outward chest motion per unit in `external_file` "
        "(negative when the file's positive direction is inward); not 0")
    max_duration_mismatch: float = Field(
        0.03, ge=0.0, le=0.5,
        description="`paired`: largest accepted relative difference of the two files' "
        "durations (and of their start times, relative to the duration); beyond it the pair is "
        "refused, naming both files (a wrong time unit shows up here)")

    _resolve_file = field_validator("file", "external_file")(resolve_scene_file)

    @model_validator(mode="after")
    def _paired_keys(self) -> TraceSettings:
        if self.kind == "paired" and (self.file is None or self.external_file is None):
            raise ValueError("kind 'paired' needs both `file` (internal) and `external_file`")
        if self.kind != "paired" and self.external_file is not None:
            raise ValueError("`external_file` is only read with kind 'paired'")
        if self.external_scale == 0.0:
            raise ValueError("external_scale must not be 0")
        return self


class MotionSettings(Section):
    """All motion truth."""

    breathing: BreathingSettings = Field(default_factory=BreathingSettings,
                                         description="breathing")
    cough: CoughSettings = Field(default_factory=CoughSettings, description="coughs")
    spine: SpineMotionSettings = Field(default_factory=SpineMotionSettings,
                                       description="spine drift and shifts")
    trace: TraceSettings = Field(default_factory=TraceSettings, description="recorded trace")
    target_moves_with_spine: bool = Field(
        True, description="the target follows the rigid spine motion (drift, shifts) as well "
        "as breathing; false: breathing only")
    breathing_moves_spine: bool = Field(
        True, description="breathing, coughs and a target trace move the imaged vertebrae "
        "rigidly with the target (a spinal target, boolean): the X-ray pair sees that motion and "
        "the registration measures it; false: a soft-tissue target the spine images do not "
        "show, localized at each X-ray pair by a sensor model (true offset + Gaussian noise)")
