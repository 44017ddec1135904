"""Flat-panel detector: fixed pattern, lag, noise, scatter and the clinic calibration."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from cyberknife_sim.errors import InputError
from cyberknife_sim.imaging import imaging_pair
from cyberknife_sim.imaging.xrayphysics import LiveXrayPhysics, LiveXraySettings
from cyberknife_sim.scene import ImagingSettings

QUIET = dict(quantum_noise=False, electronic_noise_counts=0.0, scatter_fraction=0.0,
             detector_blur_sigma_mm=0.0, lag_fraction=0.0)
SHAPE = (4, 64, 64)


def small_view():
    """View A of the default pair at 64 × 64 (6.4 mm pixels, the same 41 cm field)."""
    return imaging_pair(ImagingSettings(), binning=1)[0].with_binning(16)


def make(seed=0, **kw):
    return LiveXrayPhysics(LiveXraySettings(**kw), small_view(), detector_seed=seed)


def slab(soft_g_per_cm2=20.0):
    a = np.zeros(SHAPE, np.float32)
    a[0] = soft_g_per_cm2
    return a


def test_fixed_pattern_is_the_detector_own_and_the_same_every_frame():
    a, b, c = make(7, dead_pixel_fraction=0.01), make(7, dead_pixel_fraction=0.01), \
        make(8, dead_pixel_fraction=0.01)
    for name in ("gain", "offset_counts", "defect", "defect_counts"):
        np.testing.assert_array_equal(getattr(a.maps, name), getattr(b.maps, name))
    assert not np.array_equal(a.maps.gain, c.maps.gain)
    assert not np.array_equal(a.maps.defect, c.maps.defect)
    # noise off: frames with different exposure seeds are identical (fixed pattern only)
    q = make(7, dead_pixel_fraction=0.01, **QUIET)
    f1 = q.acquire(slab(), np.random.default_rng(1))
    f2 = q.acquire(slab(), np.random.default_rng(2))
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(f1, np.clip(np.rint(q.expected_counts(slab())), 0, 65535))
    dead = q.maps.defect
    assert dead.sum() == round(0.01 * 64 * 64)
    assert set(np.unique(f1[dead])) <= {0, 65535}


def test_same_exposure_seed_gives_the_same_image_bit_for_bit():
    p, q = make(3), make(3)
    i1 = p.acquire(slab(), np.random.default_rng(11))
    i2 = q.acquire(slab(), np.random.default_rng(11))
    i3 = q.acquire(slab(), np.random.default_rng(12))
    assert i1.dtype == np.uint16 and i1.shape == (64, 64)
    np.testing.assert_array_equal(i1, i2)
    assert not np.array_equal(i2, i3)


@pytest.mark.parametrize("lag", [0.02, 0.1])
def test_lag_a_bright_frame_leaves_the_stated_fraction_in_the_next(lag):
    p = make(0, gain_sigma=0.0, dead_pixel_fraction=0.0, **{**QUIET, "lag_fraction": lag})
    rng = np.random.default_rng(0)
    p.reset_lag()
    bright = p.acquire(np.zeros(SHAPE, np.float32), rng).astype(float) - p.maps.offset_counts
    dark = p.acquire_dark(rng).astype(float) - p.maps.offset_counts
    signal = bright / (1.0 - lag)  # the first frame after a reset keeps lag in the detector
    np.testing.assert_allclose(dark / signal, lag, atol=2e-5 + 1.0 / signal.min())
    again = p.acquire_dark(rng).astype(float) - p.maps.offset_counts
    np.testing.assert_allclose(again, 0.0, atol=0.5 + 1e-9)  # one-frame lag only
    p.reset_lag()
    np.testing.assert_allclose(p.acquire_dark(rng).astype(float) - p.maps.offset_counts, 0.0,
                               atol=0.5 + 1e-9)


def test_quantum_noise_is_poisson_in_photons_for_a_mono_beam():
    kev, sigma_e = 60.0, 3.0
    p = make(0, spectrum="mono", mono_kev=kev, scatter_fraction=0.0, detector_blur_sigma_mm=0.0,
             gain_sigma=0.0, offset_sigma_counts=0.0, dead_pixel_fraction=0.0, lag_fraction=0.0,
             electronic_noise_counts=sigma_e)
    a = slab(25.0)  # ~ e^-5: a few thousand counts
    mean = p.expected_counts(a)
    g = p.settings.gain_counts_per_kev_mm2 / p.view.pixel_spacing_mm ** 2
    var = g * kev * (mean - p.settings.offset_counts) + sigma_e ** 2 + 1.0 / 12.0
    rng = np.random.default_rng(4)
    z = np.concatenate([((p.acquire(a, rng) - mean) / np.sqrt(var)).ravel() for _ in range(4)])
    assert abs(z.mean()) < 0.05
    assert z.std() == pytest.approx(1.0, abs=0.03)


def test_polyenergetic_noise_uses_an_effective_energy_within_the_spectrum():
    p = make(0, scatter_fraction=0.0, detector_blur_sigma_mm=0.0, gain_sigma=0.0,
             offset_sigma_counts=0.0, dead_pixel_fraction=0.0, lag_fraction=0.0,
             electronic_noise_counts=0.0)
    a = slab(25.0)
    mean = p.expected_counts(a)
    g = p.settings.gain_counts_per_kev_mm2 / p.view.pixel_spacing_mm ** 2
    rng = np.random.default_rng(5)
    frames = np.stack([p.acquire(a, rng) for _ in range(6)]).astype(float)
    e_eff = (frames.var(axis=0, ddof=1) / (g * (mean - p.settings.offset_counts))).mean()
    assert 50.0 < e_eff < 110.0  # keV: behind 25 g/cm² of tissue, 120 kVp, CsI-weighted


def test_scatter_fraction_and_grid():
    sf, tp, ts = 0.3, 0.75, 0.15
    base = dict(quantum_noise=False, electronic_noise_counts=0.0, detector_blur_sigma_mm=0.0)
    none = make(0, scatter_fraction=0.0, **base).expected_signal_kev(slab())
    with_s = make(0, scatter_fraction=sf, **base).expected_signal_kev(slab())
    grid = make(0, scatter_fraction=sf, grid=True, grid_primary_transmission=tp,
                grid_scatter_transmission=ts, **base).expected_signal_kev(slab())
    c = (slice(28, 36), slice(28, 36))
    assert ((with_s - none) / with_s)[c].mean() == pytest.approx(sf, rel=0.02)
    want = sf * ts / (sf * ts + (1 - sf) * tp)
    assert ((grid - tp * none) / grid)[c].mean() == pytest.approx(want, rel=0.02)
    np.testing.assert_allclose(make(0, scatter_fraction=sf, **base).expected_signal_kev(
        np.zeros(SHAPE)), make(0, scatter_fraction=0.0, **base).expected_signal_kev(
        np.zeros(SHAPE)))  # an open field has no scatter


def test_flood_calibration_removes_gain_nonuniformity_and_defects():
    p = make(5, gain_sigma=0.05, dead_pixel_fraction=0.01, scatter_fraction=0.0)
    rng = np.random.default_rng(9)
    open_field = np.zeros(SHAPE, np.float32)
    p.acquire(open_field, rng)  # steady state: the first frame after a reset lacks its lag
    raw = p.acquire(open_field, rng).astype(float)
    c = (slice(24, 40), slice(24, 40))  # heel and fall-off < 1 % here
    ok = ~p.maps.defect[c]
    raw_rel = (raw[c] - p.maps.offset_counts[c])[ok]
    raw_rel = raw_rel.std() / raw_rel.mean()
    assert raw_rel == pytest.approx(0.05, rel=0.2)
    li = p.to_line_integrals(raw)
    assert li.dtype == np.float32 and np.all(np.isfinite(li))
    np.testing.assert_array_equal(p.defect_map, p.maps.defect)
    assert abs(float(li.mean())) < 0.01
    assert li.std() < 0.1 * raw_rel  # gain pattern gone; what is left is noise
    assert np.abs(li[p.maps.defect]).max() < 0.02  # defects replaced by their neighbours
    # a known slab after calibration: −ln(I/I0) of the polyenergetic beam, not the defects
    p.reset_lag()
    body = p.to_line_integrals(p.acquire(slab(20.0), rng))
    want = p.effective_mu_per_mm("soft_tissue", 200.0, density_g_per_cm3=1.0) * 200.0
    lag = p.settings.lag_fraction  # first frame after a reset: (1 - lag) of its signal
    assert np.median(body) == pytest.approx(want - np.log(1 - lag), rel=0.01)


@pytest.mark.parametrize("mode", ["zero", "saturate", "mixed"])
def test_defects_are_found_without_false_alarms_at_a_strong_gain_spread(mode):
    # mas 1: the most sensitive pixels (gain 1.8) stay below saturation on the flood
    p = make(2, gain_sigma=0.2, dead_pixel_fraction=0.02, dead_pixel_mode=mode, mas=1.0)
    np.testing.assert_array_equal(p.defect_map, p.maps.defect)
    assert p.maps.gain.min() > 0


def test_a_saturated_flood_is_an_input_error():
    p = make(0, mas=10.0)  # open field ≈ 160 000 counts: saturated
    with pytest.raises(InputError, match="saturated"):
        p.calibrate()


def test_log_transform_scales_by_the_flood_mas():
    p = make(0, flood_mas=1.0, mas=2.5, scatter_fraction=0.0, lag_fraction=0.0)
    li = p.to_line_integrals(p.acquire(np.zeros(SHAPE, np.float32), np.random.default_rng(0)))
    assert abs(float(np.median(li))) < 0.01


def test_bad_counts_and_settings_are_rejected():
    p = make(0)
    with pytest.raises(InputError, match="expected shape"):
        p.to_line_integrals(np.zeros((10, 10)))
    with pytest.raises(ValidationError, match="multiple of 0.5"):
        LiveXraySettings(energy_bin_kev=1.2)
    with pytest.raises(ValidationError):
        LiveXraySettings(spectrum="bremsstrahlung")
    with pytest.raises(ValidationError):
        LiveXraySettings(unknown_key=1)
    with pytest.raises(TypeError, match="detector_seed"):
        LiveXrayPhysics(LiveXraySettings(), small_view(), detector_seed=1.5)


def test_planned_defect_replacement_and_fused_log_equal_the_plain_numpy_ones():
    """The per-frame path uses neighbour lists made once per defect map and a numba log; both
    must give the plain implementations' values bit for bit: isolated defects (8-neighbour
    median, odd and even counts), a 3×3 cluster (its centre falls back to 5×5), a 5×5 block
    (its centre has no valid neighbour: image median), defects on the border."""
    from cyberknife_sim.imaging.xrayphysics._detector import (
        defect_plan,
        replace_defects,
        replace_defects_planned,
    )

    rng = np.random.default_rng(7)
    defect = rng.random((40, 50)) < 0.03
    defect[10:13, 10:13] = True
    defect[25:30, 30:35] = True
    defect[0, 0] = defect[39, 49] = defect[0, 20] = True
    image = rng.normal(100.0, 10.0, defect.shape)
    want = replace_defects(image.copy(), defect)
    got = replace_defects_planned(image.copy(), defect_plan(defect), defect)
    assert got.tobytes() == want.tobytes()
    assert got[27, 32] == np.median(image[~defect]) and got[11, 11] != image[11, 11]

    p = make(0, flood_mas=1.0, mas=2.5)
    counts = p.acquire(slab(), np.random.default_rng(1))
    li = p.to_line_integrals(counts)
    ratio = (np.maximum(counts - p._dark, 0.5) / np.maximum(p._flood - p._dark, 0.5) * 0.4)
    plain = replace_defects(-np.log(ratio), p.defect_map).astype(np.float32)
    assert li.tobytes() == plain.tobytes() and np.median(li) > 1.0
