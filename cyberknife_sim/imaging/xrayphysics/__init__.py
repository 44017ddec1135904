"""Live X-ray physics, independent of the registration's DRR renderer: spekpy tube spectra
with the heel effect, NIST/ICRU-44 attenuation of the truth materials (xraydb), and an
energy-integrating CsI:Tl flat panel with its clinic calibration (``docs/xray_physics.md``)."""

from ...scene._livexray import LiveXraySettings
from ._attenuation import (
    COMPOSITIONS,
    DENSITY_G_PER_CM3,
    air_kerma_weight,
    attenuation_table,
    half_value_layers_mm,
    mass_attenuation_cm2_per_g,
    mass_energy_absorption_air_cm2_per_g,
)
from ._detector import COUNT_MAX, DetectorMaps, csi_absorption_efficiency, detector_maps
from ._model import LiveXrayPhysics
from ._spectrum import FINE_BIN_KEV, TubeSpectrum, rebin_weights, spekpy_hvl_mm_al, tube_spectrum

__all__ = [
    "COMPOSITIONS",
    "COUNT_MAX",
    "DENSITY_G_PER_CM3",
    "FINE_BIN_KEV",
    "DetectorMaps",
    "LiveXrayPhysics",
    "LiveXraySettings",
    "TubeSpectrum",
    "air_kerma_weight",
    "attenuation_table",
    "csi_absorption_efficiency",
    "detector_maps",
    "half_value_layers_mm",
    "mass_attenuation_cm2_per_g",
    "mass_energy_absorption_air_cm2_per_g",
    "rebin_weights",
    "spekpy_hvl_mm_al",
    "tube_spectrum",
]
