"""Tracking section: imaging schedule, markers, correlation, prediction, interlocks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import Section

__all__ = ["CorrelationSettings", "InterlockSettings", "MarkerSettings", "PredictorSettings",
           "TrackingSettings"]


class MarkerSettings(Section):
    """External LED markers and the optical camera."""

    count: int = Field(3, ge=1, le=10, description="LED markers on the chest")
    rate_hz: float = Field(26.0, gt=0.0, le=500.0, description="camera sampling rate (Hz)")
    noise_mm: float = Field(0.1, ge=0.0, le=5.0, description="marker noise, 1 sigma (mm)")
    dropout_probability: float = Field(0.0, ge=0.0, lt=1.0,
                                       description="probability that a frame is dropped")
    latency_s: float = Field(0.015, ge=0.0, le=1.0, description="camera latency (s)")


class CorrelationSettings(Section):
    """External-to-internal correlation model."""

    model: Literal["linear", "quadratic", "dual", "linear_velocity"] = Field(
        "dual", description="model type; linear_velocity: a + b e + c de/dt (hysteresis)")
    n_points: int = Field(12, ge=3, le=100, description="X-ray points kept for the fit")
    max_residual_mm: float = Field(1.5, gt=0.0, le=20.0,
                                   description="residual that flags the model as bad (mm)")


class PredictorSettings(Section):
    """Latency compensation."""

    method: Literal["none", "linear", "nlms", "rls", "kalman"] = Field(
        "rls", description="prediction method")
    latency_s: float = Field(0.115, ge=0.0, le=1.0, description="system latency to hide (s)")


class InterlockSettings(Section):
    """Beam-hold limits."""

    max_translation_mm: float = Field(10.0, gt=0.0, le=100.0,
                                      description="largest correction from set-up (mm)")
    max_rotation_deg: float = Field(1.5, gt=0.0, le=10.0,
                                    description="largest rotation correction from set-up (deg)")
    max_robot_error_mm: float = Field(1.0, gt=0.0, le=50.0,
                                      description="robot following error that holds (mm)")


class TrackingSettings(Section):
    """How the loop follows the target."""

    mode: Literal["none", "spine", "spine_breathing"] = Field(
        "spine_breathing", description="none (set-up only), spine (Xsight-style), "
        "spine_breathing (Xsight + Synchrony-style)")
    imaging_interval_s: float = Field(45.0, ge=5.0, le=600.0,
                                      description="time between X-ray pairs (s)")
    markers: MarkerSettings = Field(default_factory=MarkerSettings, description="markers")
    correlation: CorrelationSettings = Field(default_factory=CorrelationSettings,
                                             description="correlation model")
    predictor: PredictorSettings = Field(default_factory=PredictorSettings,
                                         description="predictor")
    interlocks: InterlockSettings = Field(default_factory=InterlockSettings,
                                          description="interlocks")
