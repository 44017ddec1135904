"""Room section: the orthogonal kV imaging pair, the robot base and the couch."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from ._base import Section, bounded_vec3, items
from ._livexray import LiveXraySettings

__all__ = ["CouchSettings", "ImagingSettings", "RobotSettings", "RoomSettings", "ViewSettings",
           "XraySettings"]


class ViewSettings(Section):
    """One kV source / flat-panel detector pair."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=64,
                      description="view name, used in file names")
    source_angle_deg: float = Field(
        ge=-90.0, le=90.0,
        description="angle of the source from vertical (room -y, the ceiling) in the room x-y "
        "plane, positive toward room +x (patient left); the detector is opposite",
    )


_Size = bounded_vec3(gt=0.0, le=5000.0)
"""A box size (mm): each side positive, at most 5 m."""
_Position = bounded_vec3(ge=-10000.0, le=10000.0)
"""A position in the room (mm): each component within ±10 m."""


def _int_only(value: object) -> object:
    """Refuse a bool or a float where a choice of integers is expected (``Literal[1, 2]``
    would take ``true`` as 1 and ``2.0`` as 2, even in strict mode)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("Input should be an integer")
    return value


def _default_views() -> tuple[ViewSettings, ...]:
    return (ViewSettings(name="A", source_angle_deg=45.0),
            ViewSettings(name="B", source_angle_deg=-45.0))


class XraySettings(Section):
    """Technique and detector physics of the live X-ray images (unverified defaults)."""

    kv: float = Field(120.0, ge=40.0, le=150.0, description="tube voltage (kV)")
    mas: float = Field(2.5, gt=0.0, le=100.0, description="tube current-time product (mAs)")
    photons_per_mas_per_mm2: float = Field(
        2.0e4, gt=0.0, le=1.0e8,
        description="unattenuated photon fluence at the detector per mAs at 120 kV "
        "(photons/mm^2/mAs, unverified default); scales as (kV/120)^2")
    detector_blur_sigma_mm: float = Field(
        0.5, ge=0.0, le=10.0, description="Gaussian detector PSF sigma at the detector (mm)")
    scatter_fraction: float = Field(
        0.3, ge=0.0, lt=1.0,
        description="scatter-to-total ratio over the central 5 % of the detector (scatter is "
        "a wide blur of the attenuated beam; 0 = none)")
    scatter_kernel_sigma_mm: float = Field(
        40.0, gt=0.0, le=1000.0,
        description="width of the smooth scatter kernel at the detector (mm)")
    electronic_noise_counts: float = Field(
        2.0, ge=0.0, le=65535.0,
        description="standard deviation of additive electronic noise (counts)")
    gain_counts_per_photon: float = Field(
        1.0, gt=0.0, le=1.0e4, description="detector gain (16-bit counts per detected photon)")


class ImagingSettings(Section):
    """Geometry of the orthogonal kV pair (CyberKnife-like, unverified defaults)."""

    source_to_isocenter_mm: float = Field(2200.0, gt=100.0, le=10000.0,
                                          description="source to imaging center (mm)")
    isocenter_to_detector_mm: float = Field(1400.0, gt=0.0, le=10000.0,
                                            description="imaging center to detector (mm)")
    detector_rows: int = Field(1024, ge=16, le=8192, description="native detector rows")
    detector_cols: int = Field(1024, ge=16, le=8192, description="native detector columns")
    pixel_spacing_mm: float = Field(0.4, ge=0.01, le=10.0,
                                    description="native pixel pitch (mm)")
    binning: Annotated[Literal[1, 2, 4, 8], BeforeValidator(_int_only)] = Field(
        2, description="render at native size / binning (2 → 512² at 0.8 mm)")
    mu_water_per_mm: float = Field(0.0206, gt=0.0, le=1.0,
                                   description="linear attenuation of water at the effective "
                                   "energy (1/mm, 0.0206 ≈ 60 keV)")
    views: Annotated[tuple[ViewSettings, ...], items(2, 2)] = Field(
        default_factory=_default_views, description="the two views")
    live_images: Literal["realistic", "ideal"] = Field(
        "realistic", description="how the live pair is made: realistic (the 4D truth "
        "patient, its own projector and polyenergetic physics, registered to a separately "
        "acquired planning CT) or ideal (ablation only: DRRs of the planning CT itself plus "
        "the simple detector model `xray`, the inverse crime)")
    live: LiveXraySettings = Field(default_factory=LiveXraySettings,
                                   description="live image physics of the realistic path")
    xray: XraySettings = Field(default_factory=XraySettings,
                               description="detector model of the ideal path (ablation)")

    @model_validator(mode="after")
    def _distinct_names(self) -> ImagingSettings:
        names = [v.name for v in self.views]
        if len(set(names)) != len(names):
            raise ValueError(f"view names must be distinct (got {names})")
        for r, c in ((self.detector_rows, "detector_rows"), (self.detector_cols, "detector_cols")):
            if r % self.binning:
                raise ValueError(f"{c} must be divisible by binning {self.binning} (got {r})")
        return self


class RobotSettings(Section):
    """The robot carrying the linac."""

    base_position_mm: _Position = Field((0.0, 800.0, 1700.0),
                                   description="robot base (floor mount) in the room frame (mm)")
    base_yaw_deg: float = Field(180.0, ge=-180.0, le=180.0,
                                description="rotation of the base about the room vertical (deg)")
    servo_lag_s: float = Field(0.03, ge=0.0, le=1.0,
                               description="first-order servo time constant (s)")
    encoder_noise_deg: float = Field(0.0, ge=0.0, le=0.1,
                                     description="joint repeatability noise, 1 sigma (deg)")
    command_latency_s: float = Field(0.0, ge=0.0, le=1.0,
                                     description="delay from command to motion start (s)")
    collision_margin_mm: float = Field(20.0, ge=0.0, le=200.0,
                                       description="clearance the robot and linac must keep "
                                       "from the couch, patient, imagers and themselves (mm)")


class CouchSettings(Section):
    """The treatment couch (a box under the patient)."""

    top_y_mm: float = Field(130.0, ge=-500.0, le=1000.0,
                            description="height of the couch top in room y (+y is toward the "
                            "floor), mm")
    size_mm: _Size = Field((520.0, 60.0, 2000.0),
                          description="couch width (x), thickness (y), length (z), mm")
    center_z_mm: float = Field(-300.0, ge=-3000.0, le=3000.0,
                               description="couch center along room z (mm)")
    patient_size_mm: _Size = Field((420.0, 240.0, 1750.0),
                                  description="patient volume lying on the couch top (a box "
                                  "collision body): width (x), thickness (y), length (z), mm")
    patient_center_z_mm: float = Field(-300.0, ge=-3000.0, le=3000.0,
                                       description="patient volume center along room z (mm)")


class RoomSettings(Section):
    """Everything fixed to the treatment room."""

    imaging: ImagingSettings = Field(default_factory=ImagingSettings,
                                     description="the orthogonal kV pair")
    robot: RobotSettings = Field(default_factory=RobotSettings, description="robot placement")
    couch: CouchSettings = Field(default_factory=CouchSettings, description="treatment couch")
