"""load_patient, the planned alignment, Volume.resample and `cksim phantom`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cyberknife_sim.anatomy import (
    TISSUE_LABELS,
    Volume,
    load_patient,
    load_truth,
    make_phantom,
    read_ct,
)
from cyberknife_sim.cli import main
from cyberknife_sim.errors import InputError
from cyberknife_sim.geometry import apply_transform
from cyberknife_sim.scene import scene_from_dict


@pytest.mark.parametrize("live", ["realistic", "ideal"])
def test_default_scene_patient_puts_target_at_room_origin(live):
    scene = scene_from_dict({"patient": {"phantom": "coarse"}, "simulation": {"seed": 2},
                             "room": {"imaging": {"live_images": live}}})
    p = load_patient(scene)
    ph = make_phantom("coarse", seed=2)
    assert p.truth is ph.truth
    if live == "ideal":  # the ablation registers to the painted phantom itself
        assert p.volume is ph.volume
    else:  # a simulated acquisition of the truth patient on the painted field of view
        assert p.volume is not ph.volume and p.volume.name.startswith("planning CT")
        np.testing.assert_allclose(p.volume.corners_ct()[0], ph.volume.corners_ct()[0],
                                   atol=1.0)
    np.testing.assert_allclose(p.target_ct_mm, ph.truth.target_center_ct_mm)
    np.testing.assert_allclose(apply_transform(p.planned_room_from_ct, p.target_ct_mm),
                               0.0, atol=1e-12)
    np.testing.assert_allclose(p.planned_room_from_ct[:3, :3], np.eye(3))
    assert p.planned_room_from_ct.dtype == np.float64


@pytest.mark.shared_data
def test_patient_from_ct_file(shared_data, tmp_path):
    ct = shared_data / "ct" / "example_ct.nii.gz"
    v = read_ct(ct)
    target = v.ijk_to_ct([60, 50, 56])
    scene = scene_from_dict({"patient": {"ct": str(ct), "target_ct_mm": target.tolist()}})
    p = load_patient(scene)
    assert p.truth is None and p.labels is None
    np.testing.assert_allclose(apply_transform(p.planned_room_from_ct, target), 0, atol=1e-9)
    outside = scene_from_dict({"patient": {"ct": str(ct), "target_ct_mm": [0, 0, 5000]}})
    with pytest.raises(InputError, match="outside"):
        load_patient(outside)


def test_resample_reproduces_a_linear_field_exactly():
    a = np.eye(4)
    a[:3, :3] = np.diag([1.0, 2.0, 3.0])
    a[:3, 3] = [10.0, -20.0, 30.0]
    k, j, i = np.meshgrid(np.arange(10), np.arange(12), np.arange(14), indexing="ij")
    ct = np.stack([10 + i * 1.0, -20 + j * 2.0, 30 + k * 3.0], -1)
    coef = np.array([1.0, 2.0, -1.0])
    v = Volume((ct @ coef).astype(np.float32), a)
    r = v.resample(spacing_mm=[0.5, 1.0, 1.5])
    np.testing.assert_allclose(r.spacing_mm, [0.5, 1.0, 1.5])
    assert r.shape == (19, 23, 27)
    kk, jj, ii = np.meshgrid(*[np.arange(n) for n in r.shape], indexing="ij")
    pts = r.ijk_to_ct(np.stack([ii, jj, kk], -1).reshape(-1, 3))
    np.testing.assert_allclose(r.hu.reshape(-1), pts @ coef, atol=1e-3)
    same = v.resample(ct_from_ijk=v.ct_from_ijk, shape=v.shape, order=0)
    np.testing.assert_array_equal(same.hu, v.hu)
    with pytest.raises(ValueError, match="order"):
        v.resample(spacing_mm=[1, 1, 1], order=2)


def test_cli_phantom_writes_ct_and_truth(tmp_path, capsys):
    out = tmp_path / "CT.nii.gz"
    labels = tmp_path / "labels.nii.gz"
    rc = main(["phantom", "--out", str(out), "--preset", "coarse", "--seed", "5",
               "--labels", str(labels)])
    assert rc == 0
    ph = make_phantom("coarse", seed=5)
    v = read_ct(out)
    np.testing.assert_array_equal(v.hu, ph.volume.hu)
    np.testing.assert_allclose(v.ct_from_ijk, ph.volume.ct_from_ijk, atol=1e-5)
    truth = load_truth(tmp_path / "CT.json")
    np.testing.assert_allclose(truth.target_center_ct_mm, ph.truth.target_center_ct_mm,
                               atol=1e-3)
    ijk = np.rint(v.ct_to_ijk(truth.target_center_ct_mm)).astype(int)
    lab = read_ct(labels)
    assert lab.hu[ijk[2], ijk[1], ijk[0]] == TISSUE_LABELS["lesion"]
    assert json.loads((tmp_path / "CT.json").read_text())["ct_file"] == "CT.nii.gz"


def test_cli_phantom_errors_are_one_line(tmp_path, capsys):
    assert main(["phantom", "--out", str(tmp_path / "x.png")]) == 2
    assert main(["phantom", "--out", str(tmp_path / "x.nii.gz"), "--preset", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("cksim phantom: error:") for e in err)
    assert "available" in err[1]


def test_target_in_lps_ras_or_voxel_is_the_same_point(tmp_path):
    """A CT with a flipped, permuted direction: the three ways to give the target agree."""
    import SimpleITK as sitk

    hu = np.zeros((12, 20, 16), dtype=np.int16)
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing((1.5, 2.0, 3.0))
    img.SetOrigin((40.0, -30.0, 100.0))
    img.SetDirection((0, -1, 0, 1, 0, 0, 0, 0, 1))  # row-major: i runs +y, j runs -x
    path = tmp_path / "ct.mha"
    sitk.WriteImage(img, str(path))
    voxel = (5.5, 7.0, 4.0)
    # by hand: LPS = origin + D @ (spacing * ijk)
    lps = np.array([40.0 - 7.0 * 2.0, -30.0 + 5.5 * 1.5, 100.0 + 4.0 * 3.0])
    ras = [-lps[0], -lps[1], lps[2]]
    targets = []
    for key, value in (("target_ct_mm", lps.tolist()), ("target_ras_mm", ras),
                       ("target_voxel", list(voxel))):
        scene = scene_from_dict({"patient": {"phantom": None, "ct": str(path), key: value}})
        targets.append(load_patient(scene).target_ct_mm)
    for t in targets:
        np.testing.assert_allclose(t, lps, atol=1e-9)


def test_one_target_only_and_outside_names_the_key(tmp_path):
    from cyberknife_sim.errors import SceneError

    with pytest.raises(SceneError, match="give one target"):
        scene_from_dict({"patient": {"target_ct_mm": [0, 0, 0], "target_ras_mm": [0, 0, 0]}})
    scene = scene_from_dict({"patient": {"phantom": "coarse", "target_voxel": [5000, 0, 0]}})
    with pytest.raises(InputError, match=r"patient\.target_voxel: the target .* lies outside"):
        load_patient(scene)
