"""Live X-ray physics settings: tube spectrum, heel effect, flat-panel detector, calibration.

Used by :class:`cyberknife_sim.imaging.xrayphysics.LiveXrayPhysics` to turn the truth
patient's per-material areal densities into detector counts. Sources of every default are in
``docs/xray_physics.md``; "unverified default" marks a plausible value not checked against a
CyberKnife system.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ._base import Section

__all__ = ["LiveXraySettings"]


class LiveXraySettings(Section):
    """Physics of the live (truth-patient) X-ray images (unverified defaults unless sourced)."""

    # --- tube -----------------------------------------------------------------------------
    spectrum: Literal["spekpy", "mono"] = Field(
        "spekpy", description="tube spectrum: 'spekpy' (polyenergetic, tungsten anode) or "
        "'mono' (all photons at mono_kev; ablation and tests)")
    kvp: float = Field(120.0, ge=40.0, le=150.0,
                       description="tube peak voltage (kV; unverified default)")
    mono_kev: float = Field(60.0, ge=10.0, le=150.0,
                            description="photon energy of the 'mono' spectrum (keV)")
    mas: float = Field(2.5, gt=0.0, le=100.0,
                       description="tube current-time product per frame (mAs; unverified "
                       "default, as room.imaging.xray.mas)")
    anode_angle_deg: float = Field(12.0, ge=5.0, le=25.0,
                                   description="tungsten anode angle (deg; assumption, "
                                   "spekpy's default)")
    filtration_al_mm: float = Field(2.5, ge=0.0, le=30.0,
                                    description="total (inherent + added) aluminium "
                                    "filtration (mm Al; IEC 60601-1-3 minimum, assumption)")
    filtration_cu_mm: float = Field(0.0, ge=0.0, le=2.0,
                                    description="added copper filtration (mm Cu)")
    energy_bin_kev: float = Field(2.0, ge=0.5, le=10.0,
                                  description="energy bin of the spectral sum (keV, a multiple "
                                  "of 0.5; 2 keV: < 0.1 % error in transmission, see docs)")
    spectral_sum: Literal["lut", "exact"] = Field(
        "lut", description="per-pixel spectral sum: 'exact' (every energy bin) or 'lut' (a "
        "table over three basis materials, within 0.15 % of exact, several times faster)")
    heel_effect: bool = Field(True, description="vary the spectrum along the anode-cathode "
                              "axis (spekpy off-axis spectra); false = central-axis spectrum")
    anode_side: Literal["superior", "inferior"] = Field(
        "superior", description="side of the field (room +z = superior, -z = inferior) the "
        "anode faces; the anode-cathode axis is room z (assumption)")
    heel_nodes: int = Field(9, ge=2, le=65, description="spectra computed across the field "
                            "along the anode-cathode axis, linearly interpolated between")

    # --- detector: CsI:Tl flat panel, energy integrating ------------------------------------
    csi_thickness_mm: float = Field(0.6, gt=0.0, le=2.0,
                                    description="CsI:Tl scintillator thickness (mm; typical "
                                    "0.5-0.6 mm, assumption)")
    csi_packing_fraction: float = Field(0.8, gt=0.0, le=1.0,
                                        description="fill factor of the columnar CsI "
                                        "(0.75-0.85 typical, assumption)")
    gain_counts_per_kev_mm2: float = Field(
        1.4e-3, gt=0.0, le=1.0e3,
        description="counts per keV deposited per mm^2 of pixel (digital binning: a binned "
        "pixel reads the mean of its native pixels; the default puts an open field at about "
        "40000 counts at 120 kV, 2.5 mAs, 3.6 m; unverified default)")
    gain_sigma: float = Field(0.03, ge=0.0, le=0.2,
                              description="pixel-to-pixel gain non-uniformity, relative standard "
                              "deviation (fixed per detector; assumption)")
    offset_counts: float = Field(500.0, ge=0.0, le=30000.0,
                                 description="mean dark offset (counts; assumption)")
    offset_sigma_counts: float = Field(10.0, ge=0.0, le=5000.0,
                                       description="pixel-to-pixel offset spread (counts, "
                                       "fixed per detector; assumption)")
    electronic_noise_counts: float = Field(2.0, ge=0.0, le=1000.0,
                                           description="additive electronic noise standard "
                                           "deviation per frame (counts; assumption)")
    quantum_noise: bool = Field(True, description="Poisson noise on the detected photons "
                                "(false only for tests and ablations)")
    dead_pixel_fraction: float = Field(1.0e-4, ge=0.0, le=0.05,
                                       description="fraction of defective pixels (assumption)")
    dead_pixel_mode: Literal["zero", "saturate", "mixed"] = Field(
        "mixed", description="what a defective pixel reads: 0, 65535, or either (half each)")
    lag_fraction: float = Field(0.01, ge=0.0, lt=1.0,
                                description="fraction of a frame's signal released in the next "
                                "frame instead (frames seconds apart; assumption)")
    detector_blur_sigma_mm: float = Field(0.5, ge=0.0, le=10.0,
                                          description="Gaussian PSF sigma of the scintillator "
                                          "light spread at the detector (mm; assumption, as "
                                          "room.imaging.xray)")

    # --- scatter and grid -----------------------------------------------------------------
    scatter_fraction: float = Field(
        0.3, ge=0.0, lt=1.0,
        description="scatter-to-total ratio before the grid over the central 5 % of the "
        "detector (unverified default, as room.imaging.xray)")
    scatter_kernel_sigma_mm: float = Field(40.0, gt=0.0, le=1000.0,
                                           description="width of the scatter kernel at the "
                                           "detector (mm; assumption)")
    grid: bool = Field(False, description="anti-scatter grid in front of the detector")
    grid_primary_transmission: float = Field(0.75, gt=0.0, le=1.0,
                                             description="grid primary transmission "
                                             "(assumption, typical r = 10 grid)")
    grid_scatter_transmission: float = Field(0.15, ge=0.0, le=1.0,
                                             description="grid scatter transmission "
                                             "(assumption, typical r = 10 grid)")

    # --- calibration ------------------------------------------------------------------------
    calibration_frames: int = Field(16, ge=1, le=1000,
                                    description="frames averaged into each dark and flood "
                                    "calibration image")
    flood_mas: float | None = Field(None, gt=0.0, le=100.0,
                                    description="mAs of the flood frames (null = mas); the "
                                    "log transform scales by mas / flood_mas")

    @model_validator(mode="after")
    def _bin_is_multiple(self) -> LiveXraySettings:
        steps = self.energy_bin_kev / 0.5
        if abs(steps - round(steps)) > 1e-9:
            raise ValueError(f"energy_bin_kev must be a multiple of 0.5 keV "
                             f"(got {self.energy_bin_kev})")
        return self
