"""The report's content: hold bands, aim points, decimation, tables, fractions, the page's
plotly data — checked against what the record says, not only that files exist."""

from __future__ import annotations

import base64
import html as html_lib
import json
import re

import numpy as np
import pytest
import yaml
from _report_records import DT_S, long_record, tiny_pngs

import cyberknife_sim as cks
from cyberknife_sim.report import (
    MAX_POINTS,
    PLOTS,
    aim_changes,
    aim_index,
    binned_envelope,
    format_event,
    hold_bands,
    minmax_decimate,
    percent,
    write_plots,
    write_report,
)
from cyberknife_sim.scene import scene_to_yaml
from cyberknife_sim.simulation import HOLD_REASONS

# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def cough_run():
    """70 s of the cough scene (ideal registration): set-up hold, then holds for coughs."""
    scene = cks.load_scene("scenes/fault_cough.yaml")
    return cks.simulate(scene, duration_s=70, imaging="truth")


@pytest.fixture(scope="module")
def cough_page(cough_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    r = cough_run
    plain = r.summary.to_dict()
    pngs = write_plots(out, r.record, r.beams, plain, scene=r.scene)
    page = write_report(out, plain, r.beam_rows, pngs, record=r.record, beams=r.beams,
                        scene=r.scene)
    return out, page.read_text(encoding="utf-8"), plain


@pytest.fixture(scope="module")
def long_run():
    return long_record(1800.0)


@pytest.fixture(scope="module")
def long_page(long_run, tmp_path_factory):
    rec, beams, summary = long_run
    out = tmp_path_factory.mktemp("long")
    page = write_report(out, summary, [], tiny_pngs(out), record=rec, beams=beams)
    return page, page.read_text(encoding="utf-8")


def figure(page_html: str, name: str) -> dict:
    """The JSON spec of interactive figure ``name`` in the page."""
    m = re.search(rf'<script type="application/json" class="cks-fig" data-div="fig-{name}">'
                  r"(.*?)</script>", page_html, re.S)
    assert m, f"figure {name} not in the page"
    return json.loads(m.group(1))


def values(arr) -> np.ndarray:
    """A Plotly array (a list, or ``{"dtype", "bdata"}`` base64) as numpy."""
    if isinstance(arr, dict):
        return np.frombuffer(base64.b64decode(arr["bdata"]), dtype=np.dtype(arr["dtype"])
                             .newbyteorder("<")).astype(float)
    return np.array([np.nan if v is None else v for v in arr], dtype=float)


# ------------------------------------------------------------------ series


def test_hold_bands_follow_the_hold_and_resume_events(cough_run):
    rec = cough_run.record
    holds = [e for e in rec.events if e["kind"] == "hold"]
    resumes = [e for e in rec.events if e["kind"] == "resume"]
    bands = hold_bands(rec)
    assert len(holds) >= 3  # set-up and at least two coughs
    assert len(bands) == len(holds)
    for band, ev, res in zip(bands, holds, resumes, strict=False):
        assert band.start_s == ev["time_s"] and band.end_s == res["time_s"]
        assert band.reasons[: len(ev["reasons"])] == tuple(ev["reasons"])
        assert set(band.reasons) <= set(HOLD_REASONS)
        # every interlock that held a step of the band is named
        t = rec.time_s
        sel = (t >= band.start_s - 1e-6) & (t < band.end_s - 1e-6)  # event times: 1 µs
        active = {r for k, r in enumerate(HOLD_REASONS)
                  if np.any(rec.hold_mask[sel] >> k & 1)}
        assert active <= set(band.reasons)
        # no beam-on step inside a hold
        assert not np.any(rec.beam_on_s[sel] > 0)


def test_aim_index_is_the_loop_aim(long_run):
    rec, beams, _ = long_run
    np.testing.assert_array_equal(aim_index(rec, len(beams)), rec.aim_k)


def test_aim_changes_are_where_the_true_target_jumps_and_the_plots_do_not(cough_run):
    from cyberknife_sim.report._plots import displacement_from_aim

    rec, beams = cough_run.record, cough_run.beams
    aims = np.array([b.aim_room for b in beams])
    ch = aim_changes(rec, aims)
    assert ch.size >= 2
    jump = np.linalg.norm(np.diff(rec.target_true, axis=0), axis=1)
    moved = np.linalg.norm(aims[aim_index(rec, len(aims))][ch] -
                           aims[aim_index(rec, len(aims))][ch - 1], axis=1)
    # at each change the true target (the aim point's true position) jumps by the aim
    # points' distance (breathing within a step is < 0.5 mm) ...
    np.testing.assert_allclose(jump[ch - 1], moved, atol=0.5)
    assert np.all(moved > 0.5)
    # ... while the displacement from the aim point, which the tracking plot shows, does not
    true_d, cmd_d, ch2 = displacement_from_aim(rec, aims)
    np.testing.assert_array_equal(ch, ch2)
    assert np.linalg.norm(np.diff(true_d, axis=0), axis=1)[ch - 1].max() < 0.5
    assert np.linalg.norm(np.diff(cmd_d, axis=0), axis=1)[ch - 1].max() < 0.5


def test_minmax_decimate_keeps_the_envelope():
    rng = np.random.default_rng(3)
    n = 47_000
    t = np.arange(n) * DT_S
    y = np.abs(rng.normal(0.1, 0.05, n))
    y[rng.choice(n, 30, replace=False)] = 2.0 + rng.random(30)  # spikes
    y[10_000:10_400] = np.nan  # beam off
    x2, y2 = minmax_decimate(t, y, 20_000)
    assert 10_000 < x2.size <= 20_000
    assert np.all(np.diff(x2) > 0)
    fin = np.isfinite(y2)
    # real samples only
    idx = np.searchsorted(t, x2)
    np.testing.assert_array_equal(t[idx], x2)
    np.testing.assert_array_equal(y[idx][fin], y2[fin])
    # the gap stays a gap
    assert np.isnan(y2[(x2 > t[10_050]) & (x2 < t[10_350])]).all()
    # every window's max and min are reached within one bin (n / 10_000 steps) of it
    bin_s = n / 10_000 * DT_S + 1e-9
    for a in rng.uniform(0, t[-1] - 5, 200):
        b = a + 3.0
        raw = y[(t >= a) & (t <= b)]
        if not np.isfinite(raw).any():
            continue
        near = y2[(x2 >= a - bin_s) & (x2 <= b + bin_s)]
        assert np.nanmax(near) >= np.nanmax(raw)
        assert np.nanmin(near) <= np.nanmin(raw)
    assert np.nanmax(y2) == np.nanmax(y) and np.nanmin(y2) == np.nanmin(y)
    # short series pass whole
    x3, y3 = minmax_decimate(t[:500], y[:500], 20_000)
    np.testing.assert_array_equal(y3, y[:500])


def test_binned_envelope_matches_a_direct_computation():
    t = np.arange(0, 10, 0.1)
    y = np.sin(t)
    y[33] = np.nan
    c, lo, rms, hi = binned_envelope(t, y, 1.0)
    assert c.size == 10
    for k in range(10):
        sel = (t >= k - 1e-9) & (t < k + 1 - 1e-9) & np.isfinite(y)
        assert lo[k] == pytest.approx(y[sel].min())
        assert hi[k] == pytest.approx(y[sel].max())
        assert rms[k] == pytest.approx(np.sqrt(np.mean(y[sel] ** 2)))


def test_percent_shows_a_miss():
    assert percent(0.9996) == "99.96 %"
    assert percent(0.99996) == "99.996 %"  # two decimals would say 100.00 %
    assert percent(0.9999996) == "99.99996 %"
    assert percent(1.0) == "100.00 %"
    assert percent(0.00001) == "0.001 %"
    assert percent(None) == "—"


def test_format_event_says_what_happened():
    assert format_event({"time_s": 1, "kind": "hold", "reasons": ["markers_lost", "setup"]}) \
        == "beam held: markers_lost, setup"
    assert "after 0.58 s held" in format_event({"time_s": 1, "kind": "resume",
                                                "held_s": np.float64(0.5769)})
    text = format_event({"time_s": 1, "kind": "image", "accepted": False,
                         "reason": "blank image", "pose": [None] * 6,
                         "interlock": "registration_failed"})
    assert text == "rejected (blank image); interlock registration_failed"
    text = format_event({"time_s": 1, "kind": "image", "accepted": True, "reason": "",
                         "pose": [0.1, -0.2, 0.3, 0.0, 0.01, 0.02], "external_mm": 1.5})
    assert text.startswith("accepted; pose (0.100, -0.200, 0.300) mm, (0.000, 0.010, 0.020)°")
    assert "external_mm: 1.5000" in text
    assert format_event({"time_s": 1, "kind": "something_new", "x": True}) == "x: yes"


# ------------------------------------------------------------------ the page


def test_page_events_table_has_one_row_per_event(cough_page):
    _, page, summary = cough_page
    rows = re.findall(r'<tr class="ev-([a-z_]+)"><td>([0-9.]+)</td>', page)
    assert len(rows) == len(summary["events"]) > 10
    for (kind, t), ev in zip(rows, summary["events"], strict=True):
        assert kind == ev["kind"] and float(t) == pytest.approx(ev["time_s"], abs=0.006)
    assert "{&quot;" not in page and '{"accepted"' not in page  # no raw JSON dumps


def test_page_hold_bands_one_per_hold_event_with_reasons(cough_page, cough_run):
    _, page, summary = cough_page
    n_holds = sum(ev["kind"] == "hold" for ev in summary["events"])
    spec = figure(page, "error")
    shapes = [s for s in spec["layout"]["shapes"] if s.get("name") == "hold"]
    assert len(shapes) == n_holds
    bands = hold_bands(cough_run.record)
    for s, b in zip(shapes, bands, strict=True):
        assert s["x0"] == pytest.approx(b.start_s) and s["x1"] >= b.end_s
    marks = [tr for tr in spec["data"] if tr["name"].startswith("hold: ")]
    texts = [t for tr in marks for t in tr["text"]]
    assert len(texts) == n_holds
    assert all(b.label in t for b, t in zip(bands, sorted(
        texts, key=lambda t: float(t.split()[1].split("–")[0])), strict=True))
    # the holds table lists each one
    table = page.split('id="holds"')[1].split("</table>")[0]
    assert len(re.findall(r"<tr><td>\d+</td><td>[0-9.]+</td><td>[0-9.]+</td>", table)) == n_holds


def test_page_shows_fractions_with_their_misses(cough_page, cough_run):
    _, page, summary = cough_page
    rec = cough_run.record
    on = rec.beam_on_s > 0
    err = np.linalg.norm(rec.error_vec, axis=1)
    for limit, key in ((0.5, "within_0_5mm_fraction"), (1.0, "within_1mm_fraction")):
        miss = on & (err > limit)
        row = re.search(rf"<td>beam-on time within {limit:g} mm</td><td>(.*?)</td>", page)
        assert row, page[:2000]
        assert percent(summary[key]) in row.group(1)
        assert f"{int(miss.sum())} of {int(on.sum())} beam-on steps" in row.group(1)
        assert f"{rec.beam_on_s[miss].sum():.2f} s of beam-on time outside" in row.group(1)


def test_page_holds_the_resolved_scene(cough_page, cough_run):
    _, page, _ = cough_page
    m = re.search(r'<details id="scene">.*?<pre class="yaml">(.*?)</pre>', page, re.S)
    assert m
    text = html_lib.unescape(m.group(1))
    assert text == scene_to_yaml(cough_run.scene)
    assert yaml.safe_load(text)["name"] == "fault_cough"


def test_page_is_self_contained(cough_page):
    out, page, _ = cough_page
    head, body = page.split("<body>")
    assert "Plotly" in head and "<script src" not in page and "<link" not in page
    assert "http" not in body
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == len(PLOTS)
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_decimates_long_series_keeping_the_envelope(long_page, long_run):
    page, text = long_page
    rec, _, _ = long_run
    spec = figure(text, "error")
    t = rec.time_s
    e_on = np.where(rec.beam_on_s > 0, np.linalg.norm(rec.error_vec, axis=1), np.nan)
    x, y = values(spec["data"][0]["x"]), values(spec["data"][0]["y"])
    assert t.size > 40_000 and 10_000 < x.size <= MAX_POINTS
    # min/max per bin: the decimated trace reaches the raw extremes of every 10 s
    bin_s = 2 * t.size / MAX_POINTS * DT_S + 1e-3
    for a in np.arange(0, t[-1] - 10, 10.0):
        raw = e_on[(t >= a) & (t < a + 10)]
        if not np.isfinite(raw).any():
            continue
        near = y[(x >= a - bin_s) & (x < a + 10 + bin_s)]
        assert np.nanmax(near) >= np.float32(np.nanmax(raw)) - 1e-6
        assert np.nanmin(near) <= np.float32(np.nanmin(raw)) + 1e-6
    assert np.nanmax(y) == pytest.approx(np.nanmax(e_on), rel=1e-6)
    # the raw series rides along for zooms: every step
    raw = spec["raw"]
    np.testing.assert_allclose(values({"dtype": "f4", "bdata": raw["y"]}), e_on, rtol=1e-6)
    assert raw["n"] == t.size and raw["max_points"] == MAX_POINTS
    # the tracking traces are decimated too; all six within the budget
    tracking = figure(text, "tracking")
    assert len(tracking["data"]) == 6
    assert all(values(tr["x"]).size <= MAX_POINTS for tr in tracking["data"])
    aim_lines = [s for s in tracking["layout"]["shapes"] if s.get("name") == "aim point change"]
    assert len(aim_lines) == aim_changes(rec, np.array([b.aim_room for b in long_run[1]])).size
    # a page of reasonable size: plotly.js (~4.8 MB) and the data
    assert page.stat().st_size < 8_000_000


def test_long_run_pngs(long_run, tmp_path):
    rec, beams, summary = long_run
    paths = write_plots(tmp_path, rec, beams, summary)
    assert [p.name for p in paths] == list(PLOTS)
    from PIL import Image

    im = Image.open(paths[0])
    assert im.size[1] > 500  # the long-run layout: envelope and a raw zoom below
