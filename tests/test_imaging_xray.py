"""Live X-ray model: Poisson statistics of a flat field, log transform, scatter, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.errors import InputError
from cyberknife_sim.imaging import XrayModel
from cyberknife_sim.scene import XraySettings

IDEAL = dict(detector_blur_sigma_mm=0.0, scatter_fraction=0.0, electronic_noise_counts=0.0)


def test_photon_budget_from_technique():
    s = XraySettings(kv=120, mas=2.5, photons_per_mas_per_mm2=2.0e4)
    model = XrayModel(s, pixel_spacing_mm=0.8)
    assert model.photons_per_pixel == pytest.approx(2.0e4 * 2.5 * 0.64)
    low_kv = XrayModel(s.model_copy(update={"kv": 60.0}), pixel_spacing_mm=0.8)
    assert low_kv.photons_per_pixel == pytest.approx(model.photons_per_pixel / 4)


@pytest.mark.parametrize("li", [0.0, 2.0])
def test_flat_field_variance_is_poisson(li):
    model = XrayModel(XraySettings(mas=1.0, **IDEAL), pixel_spacing_mm=0.8)
    n0 = model.photons_per_pixel * np.exp(-li)
    img = model.simulate(np.full((400, 400), li), np.random.default_rng(1)).astype(float)
    assert img.mean() == pytest.approx(n0, rel=0.002)
    # + 1/12 count^2 from rounding to integers is negligible here but included
    assert img.var() == pytest.approx(n0 + 1 / 12, rel=0.05)


def test_blurred_noisy_flat_field_variance():
    s = XraySettings(mas=1.0, detector_blur_sigma_mm=0.8, scatter_fraction=0.0,
                     electronic_noise_counts=3.0, gain_counts_per_photon=0.5)
    model = XrayModel(s, pixel_spacing_mm=0.8)
    n0 = model.photons_per_pixel
    img = model.simulate(np.zeros((400, 400)), np.random.default_rng(2)).astype(float)
    noise_power = np.sum(model.psf_kernel**2) ** 2  # separable kernel
    expected = 0.5**2 * n0 * noise_power + 3.0**2 + 1 / 12
    assert img[20:-20, 20:-20].var() == pytest.approx(expected, rel=0.05)
    assert img.mean() == pytest.approx(0.5 * n0, rel=0.002)


def test_log_of_noiseless_image_returns_the_drr():
    model = XrayModel(XraySettings(**IDEAL), pixel_spacing_mm=0.8)
    yy, xx = np.mgrid[0:128, 0:128]
    drr = 6.0 * np.exp(-((xx - 64) ** 2 + (yy - 60) ** 2) / 900.0)
    back = model.to_line_integrals(model.noiseless(drr))
    np.testing.assert_allclose(back, drr, atol=1e-5)
    # after 16-bit rounding it still holds to the rounding error of the darkest pixel
    rounded = np.rint(model.noiseless(drr))
    err = np.abs(model.to_line_integrals(rounded) - drr)
    assert err.max() < 0.5 / rounded.min() + 1e-5


def test_noisy_log_transform_is_unbiased_on_average():
    model = XrayModel(XraySettings(**IDEAL), pixel_spacing_mm=0.8)
    img = model.simulate(np.full((300, 300), 3.0), np.random.default_rng(3))
    assert float(model.to_line_integrals(img).mean()) == pytest.approx(3.0, abs=0.01)


def test_scatter_fraction_at_center():
    s = XraySettings(scatter_fraction=0.3, detector_blur_sigma_mm=0.0,
                     electronic_noise_counts=0.0)
    model = XrayModel(s, pixel_spacing_mm=0.8)
    li = np.full((200, 200), 4.0)
    total = model.expected_photons(li)
    primary = model.photons_per_pixel * np.exp(-4.0)
    c = total[90:110, 90:110]
    assert np.mean((c - primary) / c) == pytest.approx(0.3, rel=0.02)
    # an open field has no scatter
    np.testing.assert_allclose(model.expected_photons(np.zeros((50, 50))),
                               model.photons_per_pixel)


def test_same_seed_same_image_and_saturation():
    model = XrayModel(XraySettings(), pixel_spacing_mm=0.8)
    li = np.linspace(0, 8, 64 * 64).reshape(64, 64)
    a = model.simulate(li, np.random.default_rng(7))
    b = model.simulate(li, np.random.default_rng(7))
    assert a.dtype == np.uint16
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, model.simulate(li, np.random.default_rng(8)))
    bright = XrayModel(XraySettings(mas=100.0), pixel_spacing_mm=0.8)
    assert bright.simulate(np.zeros((8, 8)), np.random.default_rng(0)).max() == 65535


def test_bad_inputs():
    model = XrayModel(XraySettings(), pixel_spacing_mm=0.8)
    with pytest.raises(InputError, match="2-D"):
        model.simulate(np.zeros(5), np.random.default_rng(0))
    with pytest.raises(InputError, match="non-negative"):
        model.simulate(np.full((4, 4), np.nan), np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        model.simulate(np.zeros((4, 4)), 0)
    with pytest.raises(ValueError, match="pixel_spacing_mm"):
        XrayModel(XraySettings(), pixel_spacing_mm=0.0)


def test_wide_scatter_blur_matches_full_kernel():
    """The downsampled wide blur agrees with the direct 401-tap blur to 1 % of the peak."""
    from cyberknife_sim.imaging._xray import _blur

    model = XrayModel(XraySettings(scatter_kernel_sigma_mm=40.0), pixel_spacing_mm=0.8)
    yy, xx = np.mgrid[0:300, 0:300]
    img = 100 * np.exp(-((xx - 120) ** 2 + (yy - 170) ** 2) / 3000.0) + 50.0 * (xx > 150)
    fast = model._wide_blur(img)
    full = _blur(img, model.scatter_kernel)
    assert np.abs(fast - full).max() < 0.01 * full.max()
