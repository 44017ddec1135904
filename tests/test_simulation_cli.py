"""``cksim run`` end to end: outputs agree with each other; bad input is one line, exit 2."""

from __future__ import annotations

import base64
import csv
import json
import re

import numpy as np
import pytest

from cyberknife_sim.cli import main
from cyberknife_sim.metrics import weighted_percentile
from cyberknife_sim.simulation import TIMESERIES_COLUMNS


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def truth_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(["run", "scenes/default.yaml", "--out", str(out), "--duration-s", "40",
                 "--imaging", "truth", "--quiet"])
    return code, out


def test_run_writes_consistent_outputs(truth_run):
    code, out = truth_run
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    rows = read_csv(out / "timeseries.csv")
    assert list(rows[0]) == TIMESERIES_COLUMNS
    assert len(rows) == s["n_steps"]
    on = np.array([float(r["beam_on_s"]) for r in rows])
    e = np.array([float(r["error_mm"]) for r in rows])
    sel = on > 0
    assert sel.sum() > 50
    # the summary's statistics are those of the time series (4-decimal CSV rounding)
    rms = np.sqrt(np.sum(on[sel] * e[sel] ** 2) / on[sel].sum())
    assert s["targeting_error_mm"]["rms"] == pytest.approx(rms, abs=2e-4)
    assert s["targeting_error_mm"]["p95"] == pytest.approx(
        weighted_percentile(e[sel], on[sel], 95), abs=2e-4)
    assert s["targeting_error_mm"]["max"] == pytest.approx(e[sel].max(), abs=1e-4)
    # error = distance from the true target to the logged beam axis
    r = rows[int(np.flatnonzero(sel)[len(np.flatnonzero(sel)) // 2])]
    tgt = np.array([float(r[f"target_true_{a}_mm"]) for a in "xyz"])
    src = np.array([float(r[f"beam_source_{a}_mm"]) for a in "xyz"])
    d = np.array([float(r[f"beam_dir_{a}"]) for a in "xyz"])
    v = tgt - src
    assert np.linalg.norm(v - (v @ d) * d) == pytest.approx(float(r["error_mm"]), abs=2e-3)
    # MU: beam-on time × dose rate
    assert s["mu_delivered"] == pytest.approx(on.sum() * 1000.0 / 60.0, rel=1e-4)
    beams = read_csv(out / "beams.csv")
    assert sum(float(b["beam_on_s"]) for b in beams) == pytest.approx(on.sum(), rel=1e-4)
    for b in beams:  # each beam's axis runs from its source through its aim point
        src = np.array([float(b[f"source_{a}_mm"]) for a in "xyz"])
        aim = np.array([float(b[f"aim_{a}_mm"]) for a in "xyz"])
        assert np.linalg.norm(src) == pytest.approx(800.0, abs=1e-3)  # on the SAD sphere
        assert np.linalg.norm(aim) <= 10.0  # inside the target
    assert len(s["outputs"]) == len(set(s["outputs"])) and "scene.yaml" in s["outputs"]
    assert s["stopped_early"] is None
    assert set(s["error_components_mm"]) == {"registration", "correlation", "prediction",
                                              "robot"}


def test_report_is_self_contained_with_the_plots(truth_run):
    _, out = truth_run
    html = (out / "report.html").read_text()
    imgs = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    s = json.loads((out / "summary.json").read_text())
    assert len(imgs) == 5 + (3 if s["dose"] else 0)  # run plots, then DVH, slices, cord margin
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in imgs)
    assert "http" not in html.split("<body>")[1]  # nothing fetched from elsewhere
    assert f"{s['targeting_error_mm']['rms']:.3f}" in html


@pytest.mark.parametrize("argv, needle", [
    (["run", "scenes/nope.yaml", "--out", "x"], "scene file not found"),
    (["run", "scenes/default.yaml", "--out", "x", "--duration-s", "-5"], "--duration-s"),
    (["run", "scenes/default.yaml", "--out", "x", "--seed", "-1"], "--seed"),
    (["run", "scenes/default.yaml", "--out", "x", "--video", "--video-every-s", "0"],
     "--video-every-s"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent if "nope" in argv[1] else ".")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


@pytest.mark.slow
def test_end_to_end_with_xray_registration(tmp_path):
    """A few minutes of the default treatment with live X-ray pairs and registration."""
    code = main(["run", "scenes/default.yaml", "--out", str(tmp_path), "--duration-s", "150",
                 "--quiet"])
    assert code == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["imaging"] == "xray" and s["images"]["rejected"] == 0
    assert s["registration_error_vs_truth"]["translation_rms_mm"] < 0.5
    assert s["targeting_error_mm"]["rms"] < 0.5
    assert s["within_1mm_fraction"] > 0.95


@pytest.mark.slow
def test_video_shows_the_robot_moving(tmp_path):
    import cv2

    code = main(["run", "scenes/default.yaml", "--out", str(tmp_path), "--duration-s", "90",
                 "--imaging", "truth", "--video", "--video-every-s", "9", "--video-fps", "8",
                 "--video-size", "640x480", "--quiet"])
    assert code == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert "robot.mp4" in s["outputs"]
    cap = cv2.VideoCapture(str(tmp_path / "robot.mp4"))
    assert cap.isOpened()
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 480)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(8.0)
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr[:, :, ::-1].astype(float))
    assert len(frames) == 10  # t = 0, 9, ..., 81 s: one frame per snapshot
    changed = np.abs(frames[0] - frames[-1]).sum(axis=2) > 60
    assert changed[60:-30].sum() > 200  # the arm moved between nodes (below the text)
    # the time stamp (top left) differs from frame to frame
    stamps = [f[:30, :300] for f in frames]
    assert all(np.abs(a - b).sum() > 1000 for a, b in zip(stamps, stamps[1:], strict=False))
    # the beam axis is drawn in red while the beam is on (set-up imaging until ~12 s: off);
    # the text (top) and the beam's-eye inset (bottom right) left out
    red = []
    for f in frames:
        m = (f[..., 0] > 215) & (f[..., 1] < 75) & (f[..., 2] < 75)
        m[:80] = False
        m[300:, 470:] = False
        red.append(int(m.sum()))
    assert red[0] < 20 and max(red[2:]) > 150, red
