"""``cksim drr`` / ``cksim xray``: outputs that another program can recompute pixel by pixel."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from cyberknife_sim.anatomy import read_ct
from cyberknife_sim.cli import main
from cyberknife_sim.geometry import matrix_from_pose, translation
from cyberknife_sim.imaging import load_geometry_json

TARGET = (-3.5, -161.3, 260.8)
POSE = "2,-3,4,3,-2,5"


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory, shared_data) -> Path:
    path = tmp_path_factory.mktemp("scene") / "ct_scene.yaml"
    path.write_text(
        "room:\n  imaging:\n    binning: 8\n"
        f"patient:\n  phantom: null\n  ct: {shared_data / 'ct' / 'example_ct.nii.gz'}\n"
        f"  target_ct_mm: [{TARGET[0]}, {TARGET[1]}, {TARGET[2]}]\n"
        "simulation:\n  seed: 5\n")
    return path


@pytest.fixture(scope="module")
def drr_dir(tmp_path_factory, scene_file) -> Path:
    out = tmp_path_factory.mktemp("drr")
    assert main(["drr", "--scene", str(scene_file), "--out", str(out), "--pose", POSE]) == 0
    return out


def _independent_line_integral(geometry: dict, view: dict, col: int, row: int) -> float:
    """March the ray from the JSON's numbers only (no cyberknife_sim.imaging code)."""
    ct = read_ct(geometry["ct"]["path"])
    mu = geometry["mu_water_per_mm"] * np.maximum(0.0, 1.0 + ct.hu.astype(float) / 1000.0)
    rows, cols = view["detector_shape"]
    s = view["pixel_spacing_mm"]
    pixel = (np.asarray(view["detector_center_room"])
             + (col - (cols - 1) / 2) * s * np.asarray(view["col_direction_room"])
             + (row - (rows - 1) / 2) * s * np.asarray(view["row_direction_room"]))
    source = np.asarray(view["source_room"])
    # the projection matrix maps that pixel center onto (col, row)
    h = np.asarray(view["projection_matrix"]) @ np.append(pixel, 1.0)
    assert np.allclose(h[:2] / h[2], (col, row), atol=1e-6)
    length = np.linalg.norm(pixel - source)
    t = (np.arange(int(length / 0.2)) + 0.5) * 0.2 / length
    pts_room = source + t[:, None] * (pixel - source)
    ijk_from_room = ct.ijk_from_ct @ np.linalg.inv(np.asarray(geometry["ct"]["room_from_ct"]))
    ijk = pts_room @ ijk_from_room[:3, :3].T + ijk_from_room[:3, 3]
    vals = map_coordinates(mu, [ijk[:, 2], ijk[:, 1], ijk[:, 0]], order=1,
                           mode="grid-constant")
    return float(vals.sum() * 0.2)


def test_drr_outputs_recomputable(drr_dir):
    views, meta = load_geometry_json(drr_dir)
    import json

    geometry = json.loads((drr_dir / "geometry.json").read_text())
    expected = matrix_from_pose([2, -3, 4, 3, -2, 5]) @ translation(-np.asarray(TARGET))
    np.testing.assert_allclose(meta["ct"]["room_from_ct"], expected, atol=1e-9)
    for view, entry in zip(views, geometry["views"], strict=True):
        li = np.load(drr_dir / f"{view.name}.npy")
        assert li.dtype == np.float32 and li.shape == view.shape == (128, 128)
        for col, row in [(64, 64), (50, 80), (70, 40)]:
            ref = _independent_line_integral(geometry, entry, col, row)
            assert ref > 1.0
            assert li[row, col] == pytest.approx(ref, rel=0.01)
        png = cv2.imread(str(drr_dir / f"{view.name}.png"), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16
        back = -np.log(np.maximum(png, 0.5) / meta["image"]["open_field_counts"])
        np.testing.assert_allclose(back[li < 5], li[li < 5], atol=2e-3)
        # the 8-bit preview: the line integrals windowed linearly, more attenuation brighter
        prev = cv2.imread(str(drr_dir / f"{view.name}_preview.png"), cv2.IMREAD_UNCHANGED)
        assert prev.dtype == np.uint8 and prev.shape == li.shape
        assert prev.min() == 0 and prev.max() == 255
        lo, hi = np.percentile(li, [0.5, 99.5])
        inside = (li > lo) & (li < hi)
        expect = (li[inside] - lo) * 255.0 / (hi - lo)
        np.testing.assert_allclose(prev[inside], expect, atol=0.5 + 1e-6)
    assert geometry["preview"]["files"] == [f"{v.name}_preview.png" for v in views]


def test_xray_same_seed_same_images(tmp_path, scene_file, drr_dir):
    out1, out2 = tmp_path / "a", tmp_path / "b"
    for out in (out1, out2):
        assert main(["xray", "--scene", str(scene_file), "--out", str(out), "--pose", POSE,
                     "--seed", "11"]) == 0
    views, meta = load_geometry_json(out1)
    assert meta["xray"]["seed"] == 11
    for v in views:
        a = cv2.imread(str(out1 / f"{v.name}.png"), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(out2 / f"{v.name}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(a, b)
        est = np.load(out1 / f"{v.name}.npy")
        drr = np.load(drr_dir / f"{v.name}.npy")
        # log of the noisy image tracks the DRR (scatter lowers it, noise scatters it)
        body = drr > 2.0
        assert np.corrcoef(est[body], drr[body])[0, 1] > 0.95
        assert np.median(drr[body] - est[body]) > 0.0


@pytest.mark.parametrize(("argv", "message"), [
    (["--pose", "1,2,3"], "--pose"),
    (["--pose", "a,b,c,d,e,f"], "--pose"),
])
def test_bad_arguments(tmp_path, scene_file, capsys, argv, message):
    code = main(["drr", "--scene", str(scene_file), "--out", str(tmp_path / "o"), *argv])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.slow
def test_drr_of_phantom_scene_is_self_contained(tmp_path):
    """Phantom scenes: the CT is written beside the images and the pixels recompute from it."""
    import json

    scene = tmp_path / "phantom.yaml"
    scene.write_text("room:\n  imaging:\n    binning: 8\n")
    out = tmp_path / "out"
    assert main(["drr", "--scene", str(scene), "--out", str(out), "--pose", POSE]) == 0
    views, meta = load_geometry_json(out)
    assert Path(meta["ct"]["path"]) == out / "ct.nii.gz"
    geometry = json.loads((out / "geometry.json").read_text())
    geometry["ct"]["path"] = meta["ct"]["path"]
    li = np.load(out / "A.npy")
    ref = _independent_line_integral(geometry, geometry["views"][0], 64, 64)
    assert ref > 1.0 and li[64, 64] == pytest.approx(ref, rel=0.01)
