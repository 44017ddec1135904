"""``cksim predict`` and ``cksim register`` with bad options or files: exit 2 and one line
``cksim <cmd>: error: ...`` on stderr, never a traceback, a nan score or a giant allocation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from cyberknife_sim.cli import main
from cyberknife_sim.imaging import imaging_pair, write_geometry_json
from cyberknife_sim.scene import ImagingSettings


def _one_error_line(argv, capsys, cmd) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors exit through the parser
        code = exc.code
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"cksim {cmd}: error:"), err
    return lines[0]


# ----------------------------------------------------------------------------- predict


@pytest.fixture
def sine(tmp_path):
    t = np.arange(0, 60, 0.2)
    path = tmp_path / "sine.txt"
    np.savetxt(path, np.column_stack([t, 5 * np.sin(2 * np.pi * t / 4), np.cos(t)]))
    return path


@pytest.mark.parametrize(("argv", "words"), [
    (["--horizon-ms", "0"], "--horizon-ms must be positive"),
    (["--skip-s", "nan"], "--skip-s must be a finite number"),
    (["--skip-s", "inf"], "--skip-s must be a finite number"),
    (["--horizon-ms", "inf"], "--horizon-ms must be a finite number"),
    (["--horizon-ms", "1e12"], "--horizon-ms 1e+12 is longer than"),
    (["--rate-hz", "1e7"], "--rate-hz 1e+07 is above"),
    (["--time-unit-s", "1e300"], "--time-unit-s must be within"),
    (["--rate-hz", "-1"], "error: --rate-hz must not be negative (got -1)"),
    (["--horizon-ms", "-5"], "error: --horizon-ms must not be negative (got -5)"),
    (["--skip-s", "-2"], "error: --skip-s must not be negative (got -2)"),
    (["--columns", "-1"], "argument --columns: column numbers are 0-based"),
    (["--columns", "1,-2"], "must not be negative"),
    (["--time-column", "-1"], "--time-column is 0-based"),
    (["--rate-hz", "5000"], "at most 5e+06 are predicted"),
])
def test_predict_bad_options(sine, tmp_path, capsys, argv, words):
    base = ["predict", "--trace", str(sine), "--columns", "1", "--out", str(tmp_path / "o.csv")]
    if argv[0] == "--rate-hz" and argv[1] == "5000":  # a long trace at a high rate
        t = np.arange(0, 2000, 0.2)
        np.savetxt(sine, np.column_stack([t, np.sin(t), np.cos(t)]))
    line = _one_error_line([*base, *argv], capsys, "predict")
    assert words in line, line


def test_predict_constant_trace_and_huge_time_stamp(tmp_path, capsys):
    t = np.arange(0, 60, 0.2)
    const = tmp_path / "const.txt"
    np.savetxt(const, np.column_stack([t, np.full_like(t, 3.0)]))
    line = _one_error_line(["predict", "--trace", str(const), "--columns", "1", "--out",
                            str(tmp_path / "o.csv")], capsys, "predict")
    assert "does not change" in line and "nan" not in line
    late = tmp_path / "late.txt"
    t[-1] = 1e9
    np.savetxt(late, np.column_stack([t, np.sin(t)]))
    line = _one_error_line(["predict", "--trace", str(late), "--columns", "1", "--out",
                            str(tmp_path / "o.csv")], capsys, "predict")
    assert "1e+09" in line


def test_predict_good_run_still_scores(sine, tmp_path, capsys):
    assert main(["predict", "--trace", str(sine), "--columns", "1", "--method", "none",
                 "--out", str(tmp_path / "o.csv")]) == 0
    assert "relative RMS 1.0000" in capsys.readouterr().out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_predict_on_a_fifo_does_not_block(tmp_path):
    fifo = tmp_path / "trace.txt"
    os.mkfifo(fifo)
    out = subprocess.run([sys.executable, "-m", "cyberknife_sim.cli", "predict", "--trace",
                          str(fifo)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    (line,) = out.stderr.splitlines()
    assert line.startswith("cksim predict: error:") and "not a regular file" in line


# ----------------------------------------------------------------------------- register


@pytest.fixture
def pair(tmp_path):
    """A scene, a geometry.json and a live pair that pass every input check."""
    views = imaging_pair(ImagingSettings(), binning=8)
    scene = tmp_path / "scene.yaml"
    scene.write_text("room:\n  imaging:\n    binning: 8\n")
    geometry = tmp_path / "geometry.json"
    write_geometry_json(geometry, views, mu_water_per_mm=0.0206, ct_path="ct.nii.gz",
                        room_from_ct=np.eye(4))
    rng = np.random.default_rng(0)
    images = []
    for v in views:
        path = tmp_path / f"{v.name}.npy"
        np.save(path, rng.random(v.shape).astype(np.float32))
        images.append(path)
    return scene, geometry, images, views


def _register(pair, *, images=None, geometry=None, extra=()):
    scene, geom, imgs, _ = pair
    return ["register", "--scene", str(scene), "--images", *map(str, images or imgs),
            "--geometry", str(geometry or geom), *extra]


@pytest.mark.parametrize(("make", "words"), [
    (lambda p, v: p.write_bytes(b""), "cannot read .npy"),
    (lambda p, v: np.save(p, np.full(v.shape, np.nan, np.float32)), "NaN or infinite"),
    (lambda p, v: np.save(p, np.where(np.eye(*v.shape) > 0, np.inf, 1.0)), "NaN or infinite"),
    (lambda p, v: np.save(p, np.arange(v.shape[0] * v.shape[1], dtype=np.int32)
                          .reshape(v.shape)), "expected float line integrals"),
    (lambda p, v: np.save(p, np.ones((3, 4, 5), np.float32)), "2-D"),
    (lambda p, v: np.save(p, np.arange(20.0).reshape(4, 5)), "does not match"),
    (lambda p, v: np.save(p, np.array(["a", "b"])), "expected float line integrals"),
])
def test_register_bad_npy_image(pair, tmp_path, capsys, make, words):
    bad = tmp_path / "bad.npy"
    make(bad, pair[3][0])
    line = _one_error_line(_register(pair, images=[bad, pair[2][1]]), capsys, "register")
    assert words in line and str(bad) in line, line


def test_register_bad_png_images(pair, tmp_path, capfd):
    """capfd: libpng/libtiff errors on fd 2 would add lines."""
    shape = pair[3][0].shape
    eight = tmp_path / "eight.png"
    cv2.imwrite(str(eight), np.full(shape, 100, np.uint8))
    assert "16-bit" in _one_error_line(_register(pair, images=[eight, pair[2][1]]), capfd,
                                       "register")
    good = tmp_path / "good.tif"
    cv2.imwrite(str(good), np.arange(shape[0] * shape[1], dtype=np.uint16).reshape(shape))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(good.read_bytes()[:500])
    line = _one_error_line(_register(pair, images=[cut, pair[2][1]]), capfd, "register")
    assert "cannot read image" in line


def test_register_blank_pair_is_a_failed_registration(pair, tmp_path, capfd):
    """Documented handling of an all-zero pair: exit 3, the JSON on stdout, one line."""
    images = []
    for v in pair[3]:
        images.append(tmp_path / f"zero_{v.name}.npy")
        np.save(images[-1], np.zeros(v.shape, np.float32))
    assert main(_register(pair, images=images)) == 3
    out, err = capfd.readouterr()
    assert json.loads(out)["accepted"] is False
    (line,) = err.splitlines()
    assert line.startswith("cksim register: registration failed:") and "blank" in line


def _edit_geometry(pair, tmp_path, edit) -> str:
    data = json.loads(pair[1].read_text())
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data, allow_nan=True))
    return str(path)


@pytest.mark.parametrize(("edit", "words"), [
    (lambda d: d.update(mu_water_per_mm="0.02"), "mu_water_per_mm must be a number"),
    (lambda d: d.update(mu_water_per_mm=None), "mu_water_per_mm must be a number"),
    (lambda d: d.update(mu_water_per_mm=True), "mu_water_per_mm must be a number"),
    (lambda d: d.update(mu_water_per_mm=0), "mu_water_per_mm must be within"),
    (lambda d: d.update(mu_water_per_mm=-0.02), "mu_water_per_mm must be within"),
    (lambda d: d.update(mu_water_per_mm=float("nan")), "mu_water_per_mm must be within"),
    (lambda d: d["views"][0].update(projection_matrix=[[1, 2], [3]]),
     "views[0].projection_matrix must be a rectangular array"),
    (lambda d: d["views"][0].update(projection_matrix=[["a"] * 4] * 3),
     "views[0].projection_matrix must be a rectangular array"),
    (lambda d: d["ct"].update(room_from_ct=[[1, 0], [0]]), "ct.room_from_ct must be"),
    (lambda d: d["ct"].update(room_from_ct=[["x"] * 4] * 4), "ct.room_from_ct must be"),
    (lambda d: d["ct"].update(room_from_ct=[[float("nan")] * 4] * 4), "ct.room_from_ct holds"),
    (lambda d: d["views"].__setitem__(0, [1, 2]), "views[0] must be a mapping"),
])
def test_register_bad_geometry_json(pair, tmp_path, capsys, edit, words):
    geometry = _edit_geometry(pair, tmp_path, edit)
    line = _one_error_line(_register(pair, geometry=geometry), capsys, "register")
    assert words in line and geometry in line, line


@pytest.mark.parametrize("option", ["--target", "--ct", "--geometry"])
def test_register_empty_option_is_refused(pair, capsys, option):
    scene, _, imgs, _ = pair
    argv = ["register", "--scene", str(scene), "--images", *map(str, imgs), option, ""]
    line = _one_error_line(argv, capsys, "register")
    assert f"{option} ''" in line


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_register_fifo_geometry_does_not_block(pair, tmp_path, capsys):
    fifo = tmp_path / "geometry.fifo"
    os.mkfifo(fifo)
    line = _one_error_line(_register(pair, geometry=fifo), capsys, "register")
    assert "not a regular file" in line
