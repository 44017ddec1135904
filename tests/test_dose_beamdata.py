"""Cone beam data and the HU → electron density table against their tabulated sources."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.dose._beamdata import CONES_MM, DEFAULT_BEAM_DATA, BeamData, OcrTable
from cyberknife_sim.dose._density import relative_electron_density
from cyberknife_sim.errors import InputError

BD = DEFAULT_BEAM_DATA


@pytest.mark.parametrize(("cone_mm", "of"), [(5.0, 0.65), (7.5, 0.81), (10.0, 0.85)])
def test_small_cone_output_factors_are_ploquin_2012(cone_mm, of):
    assert BD.output_factor(cone_mm) == pytest.approx(of, abs=1e-12)


def test_output_factors_tabulated_increasing_and_60mm_is_reference():
    ofs = [BD.output_factor(c) for c in CONES_MM]
    assert ofs == list(BD.output_factors)
    assert np.all(np.diff(ofs) > 0)
    assert BD.output_factor(60.0) == 1.0
    # between cones: linear interpolation
    assert BD.output_factor(17.5) == pytest.approx(0.5 * (0.925 + 0.950), abs=1e-12)


@pytest.mark.parametrize("cone_mm", [4.9, 60.5, float("nan"), -5.0])
def test_cone_outside_5_to_60_mm_is_rejected(cone_mm):
    with pytest.raises(InputError, match="cone_mm"):
        BD.output_factor(cone_mm)
    with pytest.raises(InputError, match="cone_mm"):
        BD.tpr(50.0, cone_mm)
    with pytest.raises(InputError, match="cone_mm"):
        BD.ocr(0.0, 50.0, cone_mm)


def test_tpr_normalised_at_dmax_and_quality_index():
    for c in CONES_MM:
        assert BD.tpr(15.0, c) == pytest.approx(1.0, abs=1e-12)
        assert BD.tpr(0.0, c) == pytest.approx(BD.surface_ratio, abs=1e-12)
        d = np.linspace(0, 300, 601)
        t = BD.tpr(d, c)
        assert np.argmax(t) == 30                          # maximum at 15 mm
        assert np.all(np.diff(t[:30]) > 0) and np.all(np.diff(t[30:]) < 0)
    # 60 mm cone TPR20/10 inside the published 6 MV range for CyberKnife (0.63-0.68)
    assert 0.63 <= BD.tpr20_10(60.0) <= 0.68
    assert BD.tpr20_10(60.0) == pytest.approx(0.635, abs=1e-9)
    assert BD.tpr20_10(5.0) == pytest.approx(0.580, abs=1e-9)
    # larger cones carry more scatter: their TPR falls more slowly with depth
    q = [BD.tpr20_10(c) for c in CONES_MM]
    assert np.all(np.diff(q) > 0)
    # exponential beyond dmax: TPR(d) = exp(-mu (d - 15))
    mu = BD.mu_eff_per_mm(20.0)
    assert BD.tpr(115.0, 20.0) == pytest.approx(np.exp(-100 * mu), rel=1e-12)


@pytest.mark.parametrize("cone_mm", CONES_MM)
def test_ocr_axis_edge_and_penumbra(cone_mm):
    radius = cone_mm / 2
    assert BD.ocr(0.0, 15.0, cone_mm) == pytest.approx(1.0, abs=1e-12)
    # the field edge (r = R at the SAD plane) is the ~50 % line (tail and the far edge
    # add a little)
    assert 0.48 < BD.ocr(radius, 15.0, cone_mm) < 0.56
    # 80-20 % width of the edge term matches the stated penumbra within 0.1 mm
    # (far from the axis for big cones; small cones overlap their edges)
    r = np.linspace(0, radius + 15, 30001)
    prof = BD.ocr(r, 15.0, cone_mm)
    p = BD.penumbra_mm(15.0, cone_mm)
    r80, r20 = np.interp([-0.8, -0.2], -prof, r)
    if cone_mm >= 15:
        assert r20 - r80 == pytest.approx(p, abs=0.1)
    assert np.all(np.diff(prof) <= 1e-12)                    # monotone falling
    # penumbra widens with depth
    assert BD.penumbra_mm(115.0, cone_mm) == pytest.approx(p + 1.0, abs=1e-12)
    # tail: ~2 % just outside, down by e per 8 mm
    far = BD.ocr([radius + 10, radius + 18], 15.0, cone_mm)
    assert far[1] / far[0] == pytest.approx(np.exp(-1.0), rel=0.02)


def test_ocr_table_matches_model():
    tab = OcrTable.build(BD, 10.0, r_max_mm=40.0)
    rng = np.random.default_rng(1)
    r = rng.uniform(0, 40, 2000)
    d = rng.uniform(0, 300, 2000)
    fr, fd = r / tab.dr_mm, d / tab.dd_mm
    ir, i_d = fr.astype(int), fd.astype(int)
    tr, td = fr - ir, fd - i_d
    v = tab.values
    lo = v[i_d, ir] + tr * (v[i_d, ir + 1] - v[i_d, ir])
    hi = v[i_d + 1, ir] + tr * (v[i_d + 1, ir + 1] - v[i_d + 1, ir])
    assert np.max(np.abs(lo + td * (hi - lo) - BD.ocr(r, d, 10.0))) < 2e-4


def test_beam_data_rejects_bad_tables():
    with pytest.raises(InputError, match="cones_mm"):
        BeamData(cones_mm=(5.0, 4.0), output_factors=(0.6, 0.7))
    with pytest.raises(InputError, match="output factors"):
        BeamData(cones_mm=(5.0, 60.0), output_factors=(0.0, 1.0))


def test_relative_electron_density_nodes_and_project_materials():
    hu = np.array([-1000.0, -800.0, -500.0, -100.0, 0.0, 40.0, 1600.0])
    red = relative_electron_density(hu)
    np.testing.assert_allclose(red, [0.0, 0.19, 0.49, 0.95, 1.0, 1.05, 1.78], atol=1e-12)
    # clipped outside the table; linear between nodes
    assert relative_electron_density(-3000.0) == 0.0
    assert relative_electron_density(5000.0) == relative_electron_density(3000.0)
    assert relative_electron_density(820.0) == pytest.approx(1.05 + 0.73 * 0.5, abs=1e-12)
    # the truth model's cortical bone (1.92 g/cm³, ICRU-44) at its 1600 HU: 1.92 * 0.927
    from cyberknife_sim.truth._materials import DENSITY_G_CM3, MATERIAL_HU
    bone = int(np.argmax(MATERIAL_HU))
    assert relative_electron_density(MATERIAL_HU[bone]) == pytest.approx(
        DENSITY_G_CM3[bone] * 0.927, rel=0.01)
    assert np.all(np.diff(relative_electron_density(np.linspace(-1000, 3000, 401))) > 0)
