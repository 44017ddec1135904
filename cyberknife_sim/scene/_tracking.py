"""Tracking section: imaging schedule, markers, correlation, prediction, interlocks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import Section

__all__ = ["CorrelationSettings", "ImagingScheduleSettings", "InterlockSettings",
           "MarkerSettings", "PredictorSettings", "TrackingSettings"]


class MarkerSettings(Section):
    """External LED markers and the optical camera."""

    count: int = Field(3, ge=1, le=10, description="LED markers on the chest")
    rate_hz: float = Field(26.0, ge=1.0, le=500.0, description="camera sampling rate (Hz)")
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
    drift_prior_mm_per_min: float = Field(
        0.3, ge=0.0, le=100.0, description="prior 1-sigma speed of the model's baseline-drift "
        "term (mm/min; assumption); 0 turns the drift term off")
    point_sigma_mm: float = Field(
        0.2, gt=0.0, le=10.0, description="assumed 1-sigma noise of a measured target position, "
        "which weighs the drift prior (mm; assumption)")


class PredictorSettings(Section):
    """Latency compensation."""

    method: Literal["none", "linear", "nlms", "rls", "kalman", "wlms", "krr", "svr"] = Field(
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
    markers_lost_s: float = Field(0.3, gt=0.0, le=60.0,
                                  description="hold when no valid marker frame arrived for this "
                                  "long (s; assumption)")
    model_range_margin: float = Field(
        0.6, ge=0.0, le=10.0, description="hold when the predicted external signal leaves the "
        "correlation model's fitted range by more than this fraction of the range (assumption)")
    patient_moved_mm: float = Field(
        1.5, gt=0.0, le=100.0, description="hold and take an X-ray pair at once when the marker "
        "centroid moves this far across the breathing direction (room x-z plane) from where it "
        "was at the last accepted pair (mm; assumption)")
    max_hold_s: float = Field(300.0, gt=0.0, le=36000.0,
                              description="stop the treatment when the beam is held "
                              "continuously this long (s; assumption)")


class ImagingScheduleSettings(Section):
    """When X-ray pairs are taken besides the regular interval, and how long they take."""

    model_build_images: int = Field(
        10, ge=1, le=100, description="X-ray pairs taken to build (or rebuild) the correlation "
        "model before treating (spine_breathing mode; assumption)")
    model_build_spacing_s: float = Field(
        1.3, ge=0.5, le=60.0, description="time between those pairs (s; not a multiple of a "
        "breathing period on purpose; assumption)")
    retry_s: float = Field(5.0, ge=0.5, le=600.0,
                           description="time to the next pair after a rejected pair or a hold "
                           "that needs one (s; assumption)")
    processing_s: float = Field(0.5, ge=0.0, le=30.0,
                                description="delay from exposure to the registration result "
                                "being applied (s; assumption)")
    target_localization_sigma_mm: float = Field(
        0.1, ge=0.0, le=10.0, description="soft-tissue targets only "
        "(motion.breathing_moves_spine false): 1-sigma noise per axis of the sensor model that "
        "localizes the target's offset from the spine at each pair (mm; assumption)")


class TrackingSettings(Section):
    """How the loop follows the target."""

    mode: Literal["none", "spine", "spine_breathing"] = Field(
        "spine_breathing", description="none (set-up only), spine (Xsight-style), "
        "spine_breathing (Xsight + Synchrony-style)")
    imaging_interval_s: float = Field(45.0, ge=5.0, le=600.0,
                                      description="time between X-ray pairs (s)")
    imaging: ImagingScheduleSettings = Field(default_factory=ImagingScheduleSettings,
                                             description="imaging schedule")
    markers: MarkerSettings = Field(default_factory=MarkerSettings, description="markers")
    correlation: CorrelationSettings = Field(default_factory=CorrelationSettings,
                                             description="correlation model")
    predictor: PredictorSettings = Field(default_factory=PredictorSettings,
                                         description="predictor")
    interlocks: InterlockSettings = Field(default_factory=InterlockSettings,
                                          description="interlocks")
