"""A scene's truth patient: the user's CT with the synthetic deformation, or a 4D CT given as
phase files, feeding the realistic live pair (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.anatomy import read_ct, write_volume
from cyberknife_sim.anatomy.volume import Volume
from cyberknife_sim.errors import SceneError
from cyberknife_sim.scene import scene_from_dict
from cyberknife_sim.truth import load_truth_patient

TARGET_VOXEL = [58, 45, 70]  # a vertebral body of the real CT (../shared/data/README.md)


@pytest.fixture(scope="module")
def phases(tmp_path_factory, shared_data):
    """Two phase files: the real CT (exhale) and a copy whose soft tissue below the middle
    slice is shifted 4 slices (12 mm) caudally (inhale-like)."""
    ct = read_ct(shared_data / "ct" / "example_ct.nii.gz")
    folder = tmp_path_factory.mktemp("phases")
    hu = np.array(ct.hu)
    moved = hu.copy()
    k = hu.shape[0] // 2
    moved[:k - 4] = hu[4:k]  # array slices are [k, j, i]; k grows superiorly or not: any shift
    p0, p1 = folder / "exhale.nii.gz", folder / "inhale.nii.gz"
    write_volume(ct, p0)
    write_volume(Volume(moved.astype(np.int16), ct.ct_from_ijk, name="inhale"), p1)
    return p0, p1


def _scene(ct, **patient):
    return scene_from_dict({"patient": {"ct": str(ct), "target_voxel": TARGET_VOXEL,
                                        **patient}}, origin="test")


def test_user_ct_truth_bone_rigid_soft_tissue_breathes(shared_data):
    scene = _scene(shared_data / "ct" / "example_ct.nii.gz")
    truth = load_truth_patient(scene)
    rest = truth.positions_ct(0.0, np.zeros(3))
    moved = truth.positions_ct(1.0, np.array([0.0, -0.6, -1.9]))
    d = [np.linalg.norm(b[1] - a[1], axis=1) for a, b in zip(rest, moved, strict=True)]
    allmoves = np.concatenate(d)
    # soft tissue near the diaphragm moves by several mm; the target level by the offset
    assert allmoves.max() > 5.0
    target = truth.target_ct_mm
    checked = 0
    for (pset, p0), (_, p1) in zip(rest, moved, strict=True):
        near = (np.linalg.norm(p0 - target, axis=1) < 8.0) & (pset.component > 0)
        if not near.any():
            continue
        level = np.bincount(pset.component[near]).argmax()  # the target's vertebra
        sel = pset.component == level
        # every particle of the target's vertebra moves exactly by the offset (rigid)
        np.testing.assert_allclose(p1[sel] - p0[sel], np.broadcast_to(
            [0.0, -0.6, -1.9], (sel.sum(), 3)), atol=1e-3)
        checked += sel.sum()
    assert checked > 1000


def test_4dct_phases_are_cross_faded_by_breath_level(phases):
    p0, p1 = phases
    scene = _scene(p0, ct_phases=[str(p0), str(p1)], ct_phase_levels=[0.0, 1.0])
    truth = load_truth_patient(scene)
    items = truth.positions_ct(0.25, np.zeros(3))
    weights = sorted({round(float(it[2]), 6) for it in items})
    assert weights == [0.25, 0.75]
    at0 = truth.positions_ct(0.0, np.zeros(3))
    assert {round(float(it[2]), 6) for it in at0} <= {0.0, 1.0}


def test_4dct_needs_one_level_per_phase(phases):
    p0, p1 = phases
    with pytest.raises(SceneError, match="ct_phase_levels"):
        _scene(p0, ct_phases=[str(p0), str(p1)], ct_phase_levels=[0.0])


def test_validate_reads_the_phases_and_refuses_another_grid(phases, tmp_path, capsys):
    import yaml

    from cyberknife_sim.anatomy import read_ct
    from cyberknife_sim.cli import main

    p0, p1 = phases
    ct = read_ct(p0)
    short = tmp_path / "short.nii.gz"
    write_volume(Volume(np.asarray(ct.hu)[:-2], ct.ct_from_ijk, name="short"), short)
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    base = {"ct": str(p0), "phantom": None, "target_voxel": TARGET_VOXEL}
    good.write_text(yaml.safe_dump({"patient": {**base, "ct_phases": [str(p0), str(p1)],
                                                "ct_phase_levels": [0.0, 1.0]}}))
    bad.write_text(yaml.safe_dump({"patient": {**base, "ct_phases": [str(p0), str(short)],
                                               "ct_phase_levels": [0.0, 1.0]}}))
    assert main(["validate", str(good)]) == 0
    assert "2 4D CT phase files read" in capsys.readouterr().out
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "short.nii.gz has another grid" in err[0]
