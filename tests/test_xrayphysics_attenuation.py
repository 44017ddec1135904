"""Attenuation data and the monoenergetic limit of the live X-ray physics, against NIST."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.errors import InputError
from cyberknife_sim.imaging import imaging_pair
from cyberknife_sim.imaging.xrayphysics import (
    COMPOSITIONS,
    LiveXrayPhysics,
    LiveXraySettings,
    mass_attenuation_cm2_per_g,
    mass_energy_absorption_air_cm2_per_g,
)
from cyberknife_sim.scene import ImagingSettings
from cyberknife_sim.truth import MATERIALS

MU_WATER_DRR_PER_MM = 0.0206  # the DRR's default μ_water (DESIGN.md), about 60 keV


def small_view(binning: int = 16):
    """View A of the default pair at 64 × 64 (6.4 mm pixels, the same 41 cm field)."""
    return imaging_pair(ImagingSettings(), binning=1)[0].with_binning(binning)


IDEAL = dict(quantum_noise=False, electronic_noise_counts=0.0, scatter_fraction=0.0,
             detector_blur_sigma_mm=0.0, gain_sigma=0.0, offset_sigma_counts=0.0,
             dead_pixel_fraction=0.0, lag_fraction=0.0)


@pytest.mark.parametrize(("material", "energy_kev", "nist_cm2_per_g"), [
    # NIST XCOM / X-ray mass attenuation coefficient tables (Hubbell & Seltzer), with coherent
    ("water", 60.0, 0.2059), ("water", 80.0, 0.1837), ("water", 100.0, 0.1707),
    ("aluminium", 60.0, 0.2778), ("aluminium", 100.0, 0.1704),
    ("soft_tissue", 60.0, 0.2048), ("cortical_bone", 60.0, 0.3148),
])
def test_mass_attenuation_matches_nist_tables(material, energy_kev, nist_cm2_per_g):
    mu = mass_attenuation_cm2_per_g(material, [energy_kev])[0]
    assert mu == pytest.approx(nist_cm2_per_g, rel=0.015)


@pytest.mark.parametrize(("energy_kev", "nist"), [(30.0, 0.1537), (60.0, 0.03041),
                                                   (100.0, 0.02325)])
def test_air_energy_absorption_matches_nist(energy_kev, nist):
    assert mass_energy_absorption_air_cm2_per_g([energy_kev])[0] == pytest.approx(nist, rel=0.03)


def test_compositions_are_mass_fractions_and_cover_the_truth_materials():
    for name, comp in COMPOSITIONS.items():
        assert sum(comp.values()) == pytest.approx(1.0, abs=2e-6), name
    assert set(MATERIALS) <= set(COMPOSITIONS)
    with pytest.raises(ValueError, match="unknown material"):
        mass_attenuation_cm2_per_g("unobtainium", [60.0])


@pytest.fixture(scope="module", params=["lut", "exact"])
def mono(request):
    s = LiveXraySettings(spectrum="mono", mono_kev=60.0, spectral_sum=request.param, **IDEAL)
    return LiveXrayPhysics(s, small_view(), detector_seed=3)


def test_mono_log_transmission_is_the_sum_of_mu_times_areal_density(mono):
    rng = np.random.default_rng(7)
    areal = np.zeros((4, 64, 64), np.float32)
    areal[0] = rng.uniform(0, 40, (64, 64))
    areal[1] = rng.uniform(0, 5, (64, 64))
    areal[2] = rng.uniform(0, 8, (64, 64))
    areal[3] = rng.uniform(0, 6, (64, 64))
    offset = mono.settings.offset_counts
    i0 = mono.expected_counts(np.zeros_like(areal)) - offset
    i = mono.expected_counts(areal) - offset
    mu = np.array([mass_attenuation_cm2_per_g(m, [60.0])[0] for m in MATERIALS])
    want = np.tensordot(mu, areal.astype(np.float64), axes=1)
    np.testing.assert_allclose(-np.log(i / i0), want, rtol=2e-4, atol=1e-5)


def test_mono_water_equivalent_tissue_matches_the_drr_mu_water(mono):
    thickness_mm, rho = 200.0, 1.0
    areal = np.zeros((4, 64, 64), np.float32)
    areal[0] = rho * thickness_mm / 10.0  # g/cm²
    offset = mono.settings.offset_counts
    li = -np.log((mono.expected_counts(areal) - offset)
                 / (mono.expected_counts(np.zeros_like(areal)) - offset))
    want = MU_WATER_DRR_PER_MM * rho * thickness_mm
    np.testing.assert_allclose(li, want, rtol=0.02)
    assert mono.effective_mu_per_mm("soft_tissue", 200.0, density_g_per_cm3=1.0) == \
        pytest.approx(MU_WATER_DRR_PER_MM, rel=0.02)


def test_mono_clinic_log_transform_recovers_the_line_integral(mono):
    areal = np.zeros((4, 64, 64), np.float32)
    areal[0] = 15.0
    areal[3, 20:40, 20:40] = 2.0
    li = mono.to_line_integrals(mono.expected_counts(areal))
    mu = mass_attenuation_cm2_per_g("soft_tissue", [60.0])[0] * 15.0
    mub = mu + mass_attenuation_cm2_per_g("cortical_bone", [60.0])[0] * 2.0
    # counts are not rounded here, the calibration frames are (noise off): ~1e-4
    assert li[5, 5] == pytest.approx(mu, abs=2e-3)
    assert li[30, 30] == pytest.approx(mub, abs=2e-3)


@pytest.mark.parametrize(("bad", "match"), [
    (np.zeros((3, 64, 64)), "expected shape"), (np.zeros((4, 64, 63)), "expected shape"),
    (np.full((4, 64, 64), np.nan), "NaN"), (np.full((4, 64, 64), -1.0), "non-negative"),
])
def test_bad_areal_density_is_an_input_error(mono, bad, match):
    with pytest.raises(InputError, match=match):
        mono.expected_counts(bad)
    with pytest.raises(InputError, match=match):
        mono.acquire(bad, np.random.default_rng(0))


def test_rng_must_be_a_generator(mono):
    with pytest.raises(TypeError, match="Generator"):
        mono.acquire(np.zeros((4, 64, 64)), 0)
