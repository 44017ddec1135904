"""The report's dose section: DVH numbers against the analytic volumes of a synthetic dose,
slice positions, the cord margin and the section's table — with and without delivered dose,
and no section without dose."""

from __future__ import annotations

import html as html_lib
import re

import numpy as np
import pytest
from _report_records import long_record, tiny_pngs

from cyberknife_sim.dose import DoseGrid, DoseResult
from cyberknife_sim.errors import InputError
from cyberknife_sim.report import (
    DOSE_PLOTS,
    PLOTS,
    cord_margins,
    dvh_curve,
    write_dose_plots,
    write_report,
)
from cyberknife_sim.report._dose import margin_text, slice_points

RX_GY, R_RX_MM, R_TARGET_MM, SIGMA_MM = 16.0, 8.0, 10.0, 4.0
CENTRE_MM = np.array([2.0, -1.0, 3.0])
CORD_AXIS_XY_MM, CORD_R_MM = np.array([2.0, 14.0]), 4.0  # a cylinder along z, posterior
SPACING_MM = 1.0


def analytic_dose(points_ct: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Rx inside a sphere of R_RX_MM, a Gaussian fall-off (sigma SIGMA_MM) outside (Gy)."""
    r = np.linalg.norm(points_ct - centre, axis=1)
    return RX_GY * np.exp(-np.clip(r - R_RX_MM, 0, None) ** 2 / (2 * SIGMA_MM ** 2))


def radius_at(d_gy: float) -> float:
    """Radius (mm) within which the analytic dose is >= d_gy (d_gy < Rx)."""
    return R_RX_MM + SIGMA_MM * np.sqrt(2 * np.log(RX_GY / d_gy))


METRICS = {
    "planned": {"target": {"coverage": 0.9512, "d95_gy": 15.37, "d2pct_gy": 16.41,
                           "conformity_index_paddick": 0.812, "gradient_index": 3.47},
                "cord": {"dmax_gy": 11.83, "d0035cc_gy": 11.2, "v10gy_cc": 0.123}},
    "delivered": {"target": {"coverage": 0.9034, "d95_gy": 14.81, "d2pct_gy": 16.52,
                             "conformity_index_paddick": 0.774, "gradient_index": 3.61},
                  "cord": {"dmax_gy": 15.02, "d0035cc_gy": 14.6, "v10gy_cc": 0.412}},
    "gamma": {"3%/2mm": {"pass_rate": 0.9871}, "2%/1mm": {"pass_rate": 0.9123}},
}


def make_dose(*, delivered: bool = True) -> DoseResult:
    grid = DoseGrid.around((-16.0, -16.0, -16.0), (16.0, 24.0, 16.0), SPACING_MM)
    p = grid.points_ct()
    r_t = np.linalg.norm(p - CENTRE_MM, axis=1)
    r_c = np.linalg.norm(p[:, :2] - CORD_AXIS_XY_MM, axis=1)
    masks = {"PTV": (r_t <= R_TARGET_MM).reshape(grid.shape),
             "cord": (r_c <= CORD_R_MM).reshape(grid.shape),
             "canal": (r_c <= CORD_R_MM + 2).reshape(grid.shape)}
    bone = r_t.reshape(grid.shape) <= 14
    ct = np.where(masks["canal"], 30.0, np.where(bone, 700.0, 0.0)).astype(np.float32)
    planned = analytic_dose(p, CENTRE_MM).reshape(grid.shape).astype(np.float32)
    deliv = (analytic_dose(p, CENTRE_MM + [0.0, 1.0, 0.0]).reshape(grid.shape)
             .astype(np.float32) if delivered else None)
    metrics = {k: v for k, v in METRICS.items() if delivered or k == "planned"}
    return DoseResult(grid=grid, planned_gy=planned, delivered_gy=deliv, masks=masks,
                      target_name="PTV", cord_name="cord", ct_hu=ct, prescription_gy=RX_GY,
                      cord_max_gy=14.0, cord_v10_limit_cc=0.35, metrics=metrics)


@pytest.fixture(scope="module")
def dose():
    return make_dose()


@pytest.fixture(scope="module")
def run_summary():
    return long_record(1600.0, n_beams=6)[2]  # its holds need > 1500 s


# ------------------------------------------------------------------ numbers


def test_dvh_matches_analytic_volumes(dose):
    """Target DVH at Rx is (8/10)^3 of the target, at 0.9 Rx (r/10)^3, 100 % at 0 Gy; cord
    DVH at 4, 6, 8 Gy (cc) matches the cylinder ∩ sphere volume integrated on a 0.05 mm
    lattice.
    Tolerance 0.02 of the target volume: a 10 mm sphere voxelised at 1 mm (measured 0.006 at
    Rx, 0.014 at 0.9 Rx)."""
    t = dose.masks["PTV"]
    target_cc = np.count_nonzero(t) * dose.grid.voxel_cc
    levels = np.array([0.0, 0.9 * RX_GY, RX_GY])
    lv, v_cc = dvh_curve(dose.planned_gy, t, dose.grid.voxel_cc, levels_gy=levels)
    assert np.array_equal(lv, levels)
    frac = v_cc / target_cc
    assert frac[0] == pytest.approx(1.0)
    assert frac[1] == pytest.approx((radius_at(0.9 * RX_GY) / R_TARGET_MM) ** 3, abs=0.02)
    assert frac[2] == pytest.approx((R_RX_MM / R_TARGET_MM) ** 3, abs=0.02)
    assert target_cc == pytest.approx(4 / 3 * np.pi * R_TARGET_MM ** 3 / 1000, rel=0.01)
    # the cord (cc): cylinder (axis 15 mm from the centre) ∩ the sphere where dose >= level
    levels = np.array([4.0, 6.0, 8.0])
    s = np.arange(-CORD_R_MM, CORD_R_MM, 0.05) + 0.025
    xx, yy = np.meshgrid(s, s)
    inside = xx ** 2 + yy ** 2 <= CORD_R_MM ** 2
    rho2 = xx[inside] ** 2 + (yy[inside] + CORD_AXIS_XY_MM[1] - CENTRE_MM[1]) ** 2
    true_cc = np.array([(2 * np.sqrt(np.clip(radius_at(d) ** 2 - rho2, 0, None))).sum()
                        for d in levels]) * 0.05 ** 2 / 1000
    _, cord_cc = dvh_curve(dose.planned_gy, dose.masks["cord"], dose.grid.voxel_cc,
                           levels_gy=levels)
    # 0.05-0.25 cc caps of a 4 mm cylinder voxelised at 1 mm: measured within 3.7 % (4-8 Gy)
    assert cord_cc == pytest.approx(true_cc, rel=0.08)


def test_dvh_default_levels_monotone_and_bad_shape(dose):
    lv, v = dvh_curve(dose.delivered_gy, dose.masks["cord"], dose.grid.voxel_cc)
    assert lv[0] == 0 and lv[-1] == pytest.approx(1.05 * dose.delivered_gy[dose.masks["cord"]]
                                                  .max(), rel=1e-6)
    assert np.all(np.diff(v) <= 0) and v[-1] == 0
    with pytest.raises(InputError, match="mask shape"):
        dvh_curve(dose.planned_gy, dose.masks["cord"][:-1], 0.001)


def test_slices_through_target_centre_and_cord_hottest_point(dose):
    x, y, z = dose.grid.axes_ct()
    pts = slice_points(dose)
    k, j, i = pts["target"]
    assert (x[i], y[j], z[k]) == pytest.approx(tuple(CENTRE_MM), abs=0.5 * SPACING_MM)
    # hottest cord voxel: delivered (centre 1 mm posterior), on the cord surface facing the
    # target, in the target's axial plane
    k, j, i = pts["cord"]
    assert (x[i], y[j], z[k]) == pytest.approx(
        (CORD_AXIS_XY_MM[0], CORD_AXIS_XY_MM[1] - CORD_R_MM, CENTRE_MM[2]), abs=1e-9)


def test_cord_margins_from_metrics(dose):
    m = cord_margins(dose)
    assert m["planned"]["margin_gy"] == pytest.approx(14.0 - 11.2)
    assert m["planned"]["dmax_margin_gy"] == pytest.approx(14.0 - 11.83)
    assert m["delivered"]["margin_gy"] == pytest.approx(14.0 - 14.6)
    assert m["delivered"]["v10_margin_cc"] == pytest.approx(0.35 - 0.412)
    assert margin_text(dose, "planned").startswith(
        "planned: cord D0.035 cc 11.20 Gy: 2.80 Gy below its 14 Gy limit; V10 Gy 0.123 cc "
        "(within its 0.35 cc limit)")
    assert "0.60 Gy ABOVE its 14 Gy limit" in margin_text(dose, "delivered")
    assert "OVER its 0.35 cc limit" in margin_text(dose, "delivered")


# ------------------------------------------------------------------ the page


def _section(page: str) -> str:
    m = re.search(r'<h2 id="dose">Dose</h2>(.*?)<h2>', page, re.S)
    assert m, "no dose section"
    return m.group(1)


def _rows(section: str) -> dict[str, list[str]]:
    table = re.search(r'<table id="dose-metrics">(.*?)</table>', section, re.S).group(1)
    out = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.S):
        cells = [html_lib.unescape(c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)]
        out[cells[0]] = cells[1:]
    return out


def test_section_with_planned_and_delivered(dose, run_summary, tmp_path):
    pngs = tiny_pngs(tmp_path) + write_dose_plots(tmp_path, dose)
    assert [p.name for p in pngs[len(PLOTS):]] == list(DOSE_PLOTS)
    assert all(p.stat().st_size > 5000 for p in pngs[len(PLOTS):])
    page = write_report(tmp_path, run_summary, [], pngs, dose=dose).read_text("utf-8")
    sec = _section(page)
    rows = _rows(sec)
    assert rows["metric"] == ["planned", "delivered"]
    assert rows["target coverage (V100 %)"] == ["95.12 %", "90.34 %"]
    assert rows["target D95 (Gy)"] == ["15.37", "14.81"]
    assert rows["target D2 % (Gy)"] == ["16.41", "16.52"]
    assert rows["conformity index (Paddick)"] == ["0.812", "0.774"]
    assert rows["gradient index"] == ["3.47", "3.61"]
    assert rows["cord Dmax (Gy)"] == ["11.83", "15.02"]
    assert rows["cord D0.035 cc (Gy)"] == ["11.20", "14.60"]
    assert rows["cord V10 Gy (cc)"] == ["0.123", "0.412"]
    assert rows["gamma pass rate 3%/2mm"] == ["98.71 %"]
    assert rows["gamma pass rate 2%/1mm"] == ["91.23 %"]
    assert "cord D0.035 cc 11.20 Gy: 2.80 Gy below its 14 Gy limit" in sec
    assert re.search(r'<p class="bad">delivered: cord D0.035 cc 14.60 Gy: 0.60 Gy ABOVE', sec)
    for name in DOSE_PLOTS:
        assert f'alt="{name}"' in sec
    assert "planned dose only" not in sec


def test_section_planned_only(run_summary, tmp_path):
    dose = make_dose(delivered=False)
    pngs = write_dose_plots(tmp_path, dose)
    assert all(p.is_file() for p in pngs)
    # the dose plots are not in ``plots``: the report writes them itself
    for p in pngs:
        p.unlink()
    page = write_report(tmp_path, run_summary, [], tiny_pngs(tmp_path),
                        dose=dose).read_text("utf-8")
    sec = _section(page)
    rows = _rows(sec)
    assert rows["metric"] == ["planned"]
    assert rows["cord D0.035 cc (Gy)"] == ["11.20"]
    assert "planned dose only" in sec
    assert "delivered:" not in sec and "gamma" not in sec
    assert all((tmp_path / n).is_file() for n in DOSE_PLOTS)


def test_no_dose_no_section(run_summary, tmp_path):
    page = write_report(tmp_path, run_summary, [], tiny_pngs(tmp_path)).read_text("utf-8")
    assert 'id="dose"' not in page and "dose-metrics" not in page
    assert not any((tmp_path / n).exists() for n in DOSE_PLOTS)


def test_missing_cord_mask_is_an_input_error(tmp_path):
    dose = make_dose(delivered=False)
    dose.cord_name = "spinal_cord"
    with pytest.raises(InputError, match="spinal_cord"):
        write_dose_plots(tmp_path, dose)
