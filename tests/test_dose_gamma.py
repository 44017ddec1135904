"""gamma_pass_rate against analytic gamma on 1-D profiles (ramp, erf edge) laid in 3-D grids."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erfc

from cyberknife_sim.dose import DoseGrid
from cyberknife_sim.dose._gamma import gamma_pass_rate
from cyberknife_sim.errors import InputError

# ramp: 2 -> 10 Gy along x over 40 points at 2 mm, flat in y and z
RAMP_GRID = DoseGrid((6, 6, 40), (0.0, 0.0, 0.0), 2.0)
X_RAMP = RAMP_GRID.axes_ct()[0]
SLOPE = 8.0 / X_RAMP[-1]  # Gy/mm
RAMP = np.broadcast_to(2.0 + SLOPE * X_RAMP, RAMP_GRID.shape).copy()

# erf edge: 10 Gy falling to 0 around x0 = 30 mm with sigma 3 mm, 1 mm grid
EDGE_GRID = DoseGrid((5, 5, 60), (0.0, 0.0, 0.0), 1.0)
X_EDGE = EDGE_GRID.axes_ct()[0]
SIGMA_MM = 3.0


def edge(x, shift_mm=0.0):
    return 10.0 * 0.5 * erfc((x - 30.0 - shift_mm) / (np.sqrt(2.0) * SIGMA_MM))


def edge_volume(shift_mm=0.0):
    return np.broadcast_to(edge(X_EDGE, shift_mm), EDGE_GRID.shape).copy()


def gamma_by_hand(x_mm, shift_mm, dose_percent, dta_mm, norm_gy):
    """γ = min_s sqrt(s²/DTA² + (D_eval(x+s) - D_ref(x))²/ΔD²), brute force over s (0.001 mm)."""
    s = np.arange(-6.0, 6.0, 0.001)
    dd = edge(x_mm + s, shift_mm) - edge(x_mm)
    return float(np.min(np.sqrt((s / dta_mm) ** 2 + (dd / (dose_percent / 100 * norm_gy)) ** 2)))


def test_identical_doses_pass_everywhere_with_gamma_zero():
    out = gamma_pass_rate(RAMP, RAMP, RAMP_GRID)
    assert out["pass_rate"] == 1.0
    assert out["n_evaluated"] == RAMP.size
    assert np.nanmax(out["gamma"]) == 0.0


def test_two_percent_scale_passes_three_percent_global():
    out = gamma_pass_rate(RAMP, 1.02 * RAMP, RAMP_GRID, dose_percent=3.0, dta_mm=2.0)
    assert out["pass_rate"] == 1.0
    # even with no distance allowance, |0.02 D| <= 0.02 Dmax < 3 % of Dmax
    assert out["max"] <= 0.02 / 0.03 + 1e-9


def test_four_percent_scale_fails_where_the_dose_is_high():
    # linear ramp D = a + b x, evaluated 1.04 D: gamma = 0.04 D / sqrt(ΔD² + (1.04 b DTA)²)
    dd_gy = 0.03 * RAMP.max()
    g_analytic = 0.04 * RAMP[0, 0] / np.hypot(dd_gy, 1.04 * SLOPE * 2.0)
    expect = np.mean(g_analytic <= 1.0)
    out = gamma_pass_rate(RAMP, 1.04 * RAMP, RAMP_GRID, dose_percent=3.0, dta_mm=2.0,
                          max_gamma=2.0, interp_fraction=10)
    assert 0.5 < expect < 1.0
    assert out["pass_rate"] == pytest.approx(expect, abs=1.0 / 40 + 1e-12)  # ±1 column
    interior = slice(5, 35)  # away from the x ends, where the search is cut by the grid
    assert np.allclose(out["gamma"][3, 3, interior], g_analytic[interior], rtol=0.02)
    # a flat field: no gradient to hide the 4 %, gamma = 4/3 everywhere
    flat = np.full(RAMP_GRID.shape, 10.0)
    out = gamma_pass_rate(flat, 1.04 * flat, RAMP_GRID, max_gamma=2.0)
    assert out["pass_rate"] == 0.0
    assert out["mean"] == pytest.approx(4.0 / 3.0, rel=1e-3)


def test_shifted_edge_passes_3pct_2mm_and_fails_2pct_1mm_in_the_gradient():
    ref, ev = edge_volume(), edge_volume(1.5)
    loose = gamma_pass_rate(ref, ev, EDGE_GRID, dose_percent=3.0, dta_mm=2.0)
    assert loose["pass_rate"] == 1.0
    tight = gamma_pass_rate(ref, ev, EDGE_GRID, dose_percent=2.0, dta_mm=1.0, max_gamma=3.0,
                            interp_fraction=10)
    g = tight["gamma"][2, 2]
    grad = np.abs(np.gradient(edge(X_EDGE))) > 0.5  # Gy/mm: the penumbra
    grad &= edge(X_EDGE) >= 1.0  # above the 10 % cutoff
    assert grad.sum() >= 6 and np.all(g[grad] > 1.0)
    assert tight["pass_rate"] < 1.0
    # the value at the steepest point (x = 30 mm) against the brute-force formula: pymedphys
    # interpolates the evaluated dose linearly on the 1 mm grid, hence the 2 % tolerance
    i30 = int(np.argmin(np.abs(X_EDGE - 30.0)))
    by_hand = gamma_by_hand(30.0, 1.5, 2.0, 1.0, ref.max())
    assert by_hand > 1.2
    assert g[i30] == pytest.approx(by_hand, rel=0.02)


def test_cutoff_excludes_low_dose_points():
    out = gamma_pass_rate(RAMP, RAMP, RAMP_GRID, lower_cutoff_percent=50.0)
    assert out["n_evaluated"] == int(np.count_nonzero(RAMP >= 5.0))
    assert np.all(np.isnan(out["gamma"][RAMP < 5.0]))


def test_mask_and_random_subset_choose_the_points():
    mask = np.zeros(RAMP_GRID.shape, bool)
    mask[:, :, :10] = True
    ev = 1.04 * RAMP
    out = gamma_pass_rate(RAMP, ev, RAMP_GRID, mask=mask)
    assert out["n_evaluated"] == mask.sum() and out["pass_rate"] == 1.0  # low-dose end passes
    a = gamma_pass_rate(RAMP, ev, RAMP_GRID, random_subset=50)
    b = gamma_pass_rate(RAMP, ev, RAMP_GRID, random_subset=50)
    assert a["n_evaluated"] == 50
    assert np.array_equal(np.isnan(a["gamma"]), np.isnan(b["gamma"]))


def test_bad_input():
    with pytest.raises(InputError, match="evaluated_gy"):
        gamma_pass_rate(RAMP, RAMP[:, :, :5], RAMP_GRID)
    with pytest.raises(InputError, match="zero"):
        gamma_pass_rate(np.zeros(RAMP_GRID.shape), RAMP, RAMP_GRID)


@pytest.mark.parametrize(("reference", "evaluated", "grid", "crit"), [
    (RAMP, RAMP * 1.04, RAMP_GRID, (3.0, 2.0)),
    (RAMP, RAMP * 1.04, RAMP_GRID, (2.0, 1.0)),
    (edge_volume(), edge_volume(1.5), EDGE_GRID, (2.0, 1.0)),
    (edge_volume(), edge_volume(1.5), EDGE_GRID, (3.0, 2.0)),
])
def test_pass_rate_only_gives_the_same_pass_rate(reference, evaluated, grid, crit):
    """Points within the dose criterion at zero distance pass without the search (γ ≤ 1
    exactly there): the pass rate equals the full calculation's, global and local."""
    for local in (False, True):
        full = gamma_pass_rate(reference, evaluated, grid, dose_percent=crit[0],
                               dta_mm=crit[1], local=local)
        fast = gamma_pass_rate(reference, evaluated, grid, dose_percent=crit[0],
                               dta_mm=crit[1], local=local, pass_rate_only=True)
        assert fast["pass_rate"] == full["pass_rate"]
        assert fast["n_evaluated"] == full["n_evaluated"]
        assert fast["mean"] is None and fast["p95"] is None
    same = gamma_pass_rate(reference, reference, grid, pass_rate_only=True)
    assert same["pass_rate"] == 1.0
