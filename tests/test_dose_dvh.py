"""DVH and plan metrics against analytic truth (cyberknife_sim.dose._dvh)."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.dose._dvh import (
    cumulative_dvh,
    dose_at_percent_gy,
    dose_at_volume_gy,
    oar_metrics,
    target_metrics,
    volume_at_dose_cc,
)
from cyberknife_sim.errors import InputError


def _radius_grid(n: int, spacing_mm: float, shift_mm=(0.0, 0.0, 0.0)):
    """Distance (mm) of each voxel centre of an n³ grid centred on the origin from
    ``shift_mm``, and the voxel volume (cc)."""
    ax = (np.arange(n) - (n - 1) / 2) * spacing_mm
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    r = np.sqrt((x - shift_mm[0]) ** 2 + (y - shift_mm[1]) ** 2 + (z - shift_mm[2]) ** 2)
    return r, spacing_mm ** 3 / 1000.0


@pytest.mark.parametrize("percent", [2.0, 50.0, 95.0, 98.0])
def test_linear_ramp_dose_at_percent(percent):
    # dose rises linearly along x across a cube: D(p %) = Dmax (1 - p/100) for the continuous
    # ramp; voxel-centre sampling reads high by at most half a voxel's dose step
    n, dmax = 200, 20.0
    dose = np.broadcast_to(dmax * (np.arange(n) + 0.5) / n, (4, 5, n))
    mask = np.ones(dose.shape, dtype=bool)
    truth = dmax * (1 - percent / 100)
    got = dose_at_percent_gy(dose, mask, percent)
    step = dmax / n
    assert truth - 1e-9 <= got <= truth + step / 2 + 1e-9


def test_linear_ramp_mean_and_dvh():
    n, dmax = 200, 20.0
    dose = np.broadcast_to(dmax * (np.arange(n) + 0.5) / n, (4, 5, n))
    mask = np.ones(dose.shape, dtype=bool)
    m = target_metrics(dose, mask, 0.001, prescription_gy=10.0)
    assert m["dmean_gy"] == pytest.approx(dmax / 2, abs=1e-12)
    assert m["dmin_gy"] == pytest.approx(dmax / (2 * n)) and m["dmax_gy"] == pytest.approx(
        dmax * (1 - 0.5 / n))
    assert m["coverage"] == pytest.approx(0.5, abs=1e-12)  # half of the ramp is >= 10 Gy
    # cumulative DVH: V(d) = Vtot (1 - d / Dmax) at slab boundaries d = m Dmax / n (exact)
    levels = dmax * np.array([0, 40, 100, 150, 200]) / n
    axis, vol = cumulative_dvh(dose, mask, 0.001, bins_gy=levels)
    np.testing.assert_allclose(vol, dose.size * 0.001 * (1 - axis / dmax), atol=1e-12)


def test_uniform_sphere_with_shell():
    # 20 Gy inside r <= 10 mm, 10 Gy in the shell 10 < r <= 15 mm: V20 and V10 are the two
    # spheres' volumes (0.5 mm voxels: within 1 %)
    r, vcc = _radius_grid(72, 0.5)
    dose = np.where(r <= 10, 20.0, np.where(r <= 15, 10.0, 0.0))
    mask = r <= 15
    v_in, v_out = 4 / 3 * np.pi * 10 ** 3 / 1000, 4 / 3 * np.pi * 15 ** 3 / 1000
    axis, vol = cumulative_dvh(dose, mask, vcc, bins_gy=[5.0, 15.0, 25.0])
    np.testing.assert_allclose(vol[:2], [v_out, v_in], rtol=0.01)
    assert vol[2] == 0.0
    assert volume_at_dose_cc(dose, mask, vcc, 20.0) == pytest.approx(vol[1], abs=1e-12)
    assert dose_at_volume_gy(dose, mask, vcc, 0.9 * v_in) == 20.0
    assert dose_at_volume_gy(dose, mask, vcc, 1.1 * v_in) == 10.0
    assert oar_metrics(dose, mask, vcc)["dmean_gy"] == pytest.approx(
        (20 * v_in + 10 * (v_out - v_in)) / v_out, rel=0.01)


def test_d0035cc_on_known_hot_voxels():
    # 1 mm voxels (0.001 cc): the hottest 34 at 20 Gy, one at 15 Gy, the rest at 10 Gy, so
    # the hottest 0.035 cc (35 voxels) has minimum 15 Gy; 0.0345 cc is half way into voxel 35
    dose = np.full((10, 10, 10), 10.0)
    flat = dose.reshape(-1)
    flat[:34] = 20.0
    flat[500] = 15.0
    mask = np.ones(dose.shape, dtype=bool)
    assert oar_metrics(dose, mask, 0.001)["d0035cc_gy"] == pytest.approx(15.0, abs=1e-12)
    assert dose_at_volume_gy(dose, mask, 0.001, 0.0345) == pytest.approx(17.5, abs=1e-12)
    # 2 mm voxels (0.008 cc): 0.035 cc is 4.375 voxels: 24 + 0.375 (22 - 24) = 23.25 Gy
    dose2 = np.zeros((3, 3, 3))
    dose2.reshape(-1)[:6] = [30, 28, 26, 24, 22, 20]
    m2 = oar_metrics(dose2, np.ones_like(dose2, dtype=bool), 0.008, limit_gy=25.0)
    assert m2["d0035cc_gy"] == pytest.approx(23.25, abs=1e-12)
    assert m2["v25gy_cc"] == pytest.approx(3 * 0.008) and m2["dmax_gy"] == 30.0
    assert "v12p5gy_cc" in oar_metrics(dose2, dose2 >= 0, 0.008, limit_gy=12.5)


def test_organ_smaller_than_0035cc_gives_its_minimum():
    dose = np.zeros((4, 4, 4))
    mask = np.zeros(dose.shape, dtype=bool)
    mask[0, 0, :3] = True
    dose[0, 0, :3] = [9.0, 7.0, 8.0]
    assert oar_metrics(dose, mask, 0.001)["d0035cc_gy"] == 7.0


def test_paddick_ci_is_one_for_a_perfect_plan():
    r, vcc = _radius_grid(48, 1.0)
    target = r <= 12
    dose = np.where(target, 16.0, 3.0)
    m = target_metrics(dose, target, vcc, prescription_gy=16.0)
    assert m["conformity_index_paddick"] == pytest.approx(1.0, abs=1e-12)
    assert m["coverage"] == 1.0 and m["piv_cc"] == pytest.approx(m["volume_cc"])


def test_paddick_ci_of_a_shifted_sphere():
    # target: sphere R = 10 mm; prescription isodose: the same sphere shifted by s = 4 mm.
    # TV_PIV is the lens of two spheres, π (4R + s)(2R - s)² / 12, so
    # CI = (lens / TV)², coverage = lens / TV. 0.5 mm voxels: within 2 %
    R, s = 10.0, 4.0
    r_t, vcc = _radius_grid(64, 0.5)
    r_p, _ = _radius_grid(64, 0.5, shift_mm=(s, 0.0, 0.0))
    target = r_t <= R
    dose = np.where(r_p <= R, 16.0, 0.0)
    lens = np.pi * (4 * R + s) * (2 * R - s) ** 2 / 12
    tv = 4 / 3 * np.pi * R ** 3
    m = target_metrics(dose, target, vcc, prescription_gy=16.0)
    assert m["coverage"] == pytest.approx(lens / tv, rel=0.02)
    assert m["conformity_index_paddick"] == pytest.approx((lens / tv) ** 2, rel=0.02)


def test_gradient_index_of_nested_spheres():
    # dose >= Rx within 10 mm, 0.6 Rx out to 15 mm: GI = V50% / V100% = (15/10)³ = 3.375
    r, vcc = _radius_grid(72, 0.5)
    dose = np.where(r <= 10, 16.0, np.where(r <= 15, 9.6, 0.0))
    m = target_metrics(dose, r <= 10, vcc, prescription_gy=16.0)
    assert m["gradient_index"] == pytest.approx(3.375, rel=0.02)
    # counting only inside a body that cuts the outer shell in half (x < 0 half-space for
    # r > 10): V50 = V100 + (V15 - V10) / 2
    ax = (np.arange(72) - 35.5) * 0.5
    body = (r <= 10) | (ax[None, None, :] < 0)
    mb = target_metrics(dose, r <= 10, vcc, prescription_gy=16.0, body_mask=body)
    assert mb["gradient_index"] == pytest.approx(1 + (3.375 - 1) / 2, rel=0.02)


def test_no_voxel_at_prescription():
    r, vcc = _radius_grid(20, 1.0)
    m = target_metrics(np.full(r.shape, 5.0), r <= 5, vcc, prescription_gy=16.0)
    assert m["coverage"] == 0.0 and m["conformity_index_paddick"] == 0.0
    assert m["gradient_index"] is None


def test_bad_input_is_one_line():
    dose = np.zeros((3, 3, 3))
    with pytest.raises(InputError, match="selects no voxel"):
        oar_metrics(dose, np.zeros(dose.shape, dtype=bool), 0.001)
    with pytest.raises(InputError, match="shape"):
        oar_metrics(dose, np.ones((3, 3, 2), dtype=bool), 0.001)
    with pytest.raises(InputError, match="bool"):
        oar_metrics(dose, np.ones(dose.shape), 0.001)
    with pytest.raises(InputError, match="percent"):
        dose_at_percent_gy(dose, dose >= 0, 120.0)
