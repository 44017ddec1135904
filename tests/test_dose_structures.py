"""Structures: phantom, label map and RTSTRUCT masks, and their sampling on the dose grid."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from matplotlib.path import Path as MplPath
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cyberknife_sim.anatomy.phantom import make_phantom
from cyberknife_sim.anatomy.volume import Volume
from cyberknife_sim.dose._grid import DoseGrid
from cyberknife_sim.dose._rtstruct import fill_even_odd
from cyberknife_sim.dose._structures import (
    Structure,
    StructureSet,
    load_structures,
    phantom_structures,
    structure_fraction_on_grid,
    structure_mask_on_grid,
    structures_bbox_ct,
    structures_from_labelmap,
    structures_from_rtstruct,
)
from cyberknife_sim.errors import InputError, SceneError
from cyberknife_sim.scene import scene_from_dict

SPHERE_CC = 4 / 3 * np.pi * 15.0 ** 3 / 1000  # r = 15 mm


def _ct(shape=(40, 64, 64), spacing=(1.0, 1.0, 2.0), origin=(-31.7, -32.2, -40.0)) -> Volume:
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = origin
    return Volume(np.zeros(shape, dtype=np.int16), a, name="test-ct")


def _centroid(s: Structure) -> np.ndarray:
    return s.points_ct().mean(axis=0)


# --- even-odd fill ------------------------------------------------------------------------

def test_fill_matches_matplotlib_and_circle_area():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:40, :40]
    centres = np.stack([xx.ravel(), yy.ravel()], axis=1)
    for _ in range(30):  # random (self-intersecting) polygons: same pixel centres inside
        poly = rng.uniform(-5, 45, (12, 2))
        ref = MplPath(poly).contains_points(centres).reshape(40, 40)
        np.testing.assert_array_equal(fill_even_odd([poly], (40, 40)), ref)
    t = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    circle = np.stack([50.3 + 20 * np.cos(t), 50.7 + 20 * np.sin(t)], axis=1)
    yy, xx = np.mgrid[:101, :101]
    inside = (xx - 50.3) ** 2 + (yy - 50.7) ** 2 <= 20 ** 2  # centres in the true circle
    # the 400-gon lies inside the circle by at most r (1 - cos(π/400)) = 0.0006 px
    assert abs(int(fill_even_odd([circle], (101, 101)).sum()) - int(inside.sum())) <= 2


# --- RTSTRUCT -----------------------------------------------------------------------------

def _circle(cx, cy, r, z, n=120):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t), np.full(n, z)], axis=1)


def _write_rtstruct(path, rois: dict[str, list[np.ndarray]]):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.StructureSetROISequence = Sequence()
    ds.ROIContourSequence = Sequence()
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        ds.StructureSetROISequence.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ContourSequence = Sequence()
        for pts in contours:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [f"{v:.4f}" for v in pts.ravel()]
            rc.ContourSequence.append(c)
        ds.ROIContourSequence.append(rc)
    ds.save_as(path, enforce_file_format=True)
    return path


def _sphere_contours(center, r, zs):
    return [_circle(center[0], center[1], np.sqrt(r * r - (z - center[2]) ** 2), z)
            for z in zs if abs(z - center[2]) < r]


@pytest.mark.parametrize("plane_offset_mm", [0.0, 0.7])
def test_rtstruct_sphere_volume(tmp_path, plane_offset_mm):
    # a 15 mm sphere contoured every 2 mm, on the CT slices or 0.7 mm off them (each slice
    # takes the nearest plane): volume within 2.5 % of 4/3 π r³ (1 x 1 x 2 mm voxels),
    # centroid within 0.8 mm of the sphere's centre (0.7 mm shift for the off-slice planes)
    ct = _ct()
    center = np.array([1.3, -2.4, 0.0])
    zs = ct.ijk_to_ct(np.stack([np.zeros(40), np.zeros(40), np.arange(40)], 1))[:, 2]
    rois = {"PTV": _sphere_contours(center, 15.0, zs + plane_offset_mm),
            "Cord": [_circle(0, 20, 4, z) for z in zs]}
    path = _write_rtstruct(tmp_path / "rs.dcm", rois)
    ss = structures_from_rtstruct(path, ct, target="ptv", cord="CORD")
    assert ss.target_name == "PTV" and ss.cord_name == "Cord"
    assert ss.target.volume_cc == pytest.approx(SPHERE_CC, rel=0.025)
    assert np.linalg.norm(_centroid(ss.target) - center) < 0.8
    assert ss.cord.volume_cc == pytest.approx(np.pi * 16 * 80 / 1000, rel=0.03)


def test_rtstruct_hole(tmp_path):
    # an annulus (outer 15 mm, inner 6 mm) on 10 slices of 2 mm: π (R² - r²) · 20 mm, 2 %
    ct = _ct()
    zs = ct.ijk_to_ct(np.stack([np.zeros(10), np.zeros(10), np.arange(10, 20)], 1))[:, 2]
    ring = [c for z in zs for c in (_circle(0.5, 0.5, 15, z), _circle(0.5, 0.5, 6, z)[::-1])]
    path = _write_rtstruct(tmp_path / "ring.dcm", {"ring": ring, "cord": [_circle(0, 20, 3,
                                                                                   zs[0])]})
    ss = structures_from_rtstruct(path, ct, target="ring", cord="cord")
    assert ss.target.volume_cc == pytest.approx(np.pi * (15 ** 2 - 6 ** 2) * 20 / 1000,
                                                rel=0.02)
    centre_ijk = np.rint(ct.ct_to_ijk([0.5, 0.5, zs[5]])).astype(int)
    assert not ss.target.mask[centre_ijk[2], centre_ijk[1], centre_ijk[0]]
    with pytest.raises(InputError, match=r"no structure named 'spinal cord' \(known: cord, ring"):
        structures_from_rtstruct(path, ct, target="ring", cord="spinal cord")


def test_rtstruct_not_a_structure_set(tmp_path):
    bad = tmp_path / "x.dcm"
    bad.write_bytes(b"not dicom at all")
    with pytest.raises(InputError, match="x.dcm"):
        structures_from_rtstruct(bad, _ct(), target="a", cord="b")
    ds = pydicom.dcmread(_write_rtstruct(tmp_path / "y.dcm", {"a": [_circle(0, 0, 3, 0)]}))
    ds.Modality = "CT"
    ds.save_as(tmp_path / "z.dcm")
    with pytest.raises(InputError, match="not an RT Structure Set"):
        structures_from_rtstruct(tmp_path / "z.dcm", _ct(), target="a", cord="a")


# --- label map ----------------------------------------------------------------------------

def _write_labelmap(path, center, r_mm):
    """Sphere (label 3) and a cylinder along z (label 5, radius 4 mm about x = 0, y = 20) on a
    0.8 mm grid with x flipped (direction diag(-1, 1, 1)) and its own origin."""
    n = (80, 80, 60)  # (i, j, k)
    sp = np.array([0.8, 0.8, 0.8])
    origin = np.array([31.0, -32.0, -24.0])
    k, j, i = np.meshgrid(*(np.arange(v) for v in n[::-1]), indexing="ij")
    x, y, z = origin[0] - sp[0] * i, origin[1] + sp[1] * j, origin[2] + sp[2] * k
    lab = np.zeros(k.shape, dtype=np.uint8)
    lab[(x - center[0]) ** 2 + (y - center[1]) ** 2 + (z - center[2]) ** 2 <= r_mm ** 2] = 3
    lab[x ** 2 + (y - 20) ** 2 <= 16] = 5
    img = sitk.GetImageFromArray(lab)
    img.SetSpacing(sp.tolist())
    img.SetOrigin(origin.tolist())
    img.SetDirection([-1, 0, 0, 0, 1, 0, 0, 0, 1])
    sitk.WriteImage(img, str(path))
    return path


def test_labelmap_resampled_in_physical_space(tmp_path):
    # a sphere of 12 mm on a flipped 0.8 mm grid, read onto a 1 x 1 x 2 mm CT: volume within
    # 3 % of 4/3 π r³, centroid within 0.5 mm of the true centre (LPS)
    center = np.array([-4.1, 3.3, 2.0])
    path = _write_labelmap(tmp_path / "seg.nii.gz", center, 12.0)
    ss = structures_from_labelmap(path, {"ptv": 3, "cord": 5}, _ct(), target="ptv", cord="cord")
    assert ss.target.volume_cc == pytest.approx(4 / 3 * np.pi * 12 ** 3 / 1000, rel=0.03)
    assert np.linalg.norm(_centroid(ss.target) - center) < 0.5
    assert np.linalg.norm(_centroid(ss.cord)[:2] - [0.0, 20.0]) < 0.5
    with pytest.raises(InputError, match=r"seg.nii.gz: label map has no voxel of liver \(label "
                                         r"7\)"):
        structures_from_labelmap(path, {"ptv": 3, "cord": 5, "liver": 7}, _ct(), target="ptv",
                                 cord="cord")


# --- phantom ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def phantom():
    return make_phantom("default", seed=0)


def test_phantom_structures(phantom):
    ss = phantom_structures(phantom, target_radius_mm=10.0)
    assert set(ss) == {"target", "lesion", "cord", "canal", "body"}
    voxel_cc = phantom.volume.spacing_mm.prod() / 1000
    assert ss.target.volume_cc == pytest.approx(4 / 3 * np.pi, rel=0.015)  # 1x1x1.5 mm voxels
    assert np.linalg.norm(_centroid(ss.target) - phantom.truth.target_center_ct_mm) < 0.1
    assert ss.cord.volume_cc == pytest.approx(np.count_nonzero(phantom.labels == 8) * voxel_cc)
    assert not np.any(ss["lesion"].mask & ~ss.target.mask)  # lesion (7 mm) inside the PTV
    assert not np.any(ss.cord.mask & ~ss["canal"].mask)
    assert ss["canal"].volume_cc > 2 * ss.cord.volume_cc
    # the same structures on a coarser CT grid (an acquired planning CT): volumes within 2 %
    coarse = phantom.volume.resample(spacing_mm=(2.0, 2.0, 2.0))
    on = phantom_structures(phantom, target_radius_mm=10.0, on=coarse)
    assert on.target.mask.shape == coarse.shape
    for name in ("target", "cord", "canal", "body"):
        assert on[name].volume_cc == pytest.approx(ss[name].volume_cc, rel=0.02), name


def test_dose_grid_sampling_and_bbox(phantom):
    ss = phantom_structures(phantom, target_radius_mm=10.0)
    lo, hi = structures_bbox_ct(ss, ["target"])
    c = phantom.truth.target_center_ct_mm
    sp = phantom.volume.spacing_mm  # extreme voxel centres lie within one step of the sphere
    assert np.all((lo >= c - 10 - 1e-9) & (lo < c - 10 + sp))
    assert np.all((hi <= c + 10 + 1e-9) & (hi > c + 10 - sp))
    grid = DoseGrid.around(lo - 5.3, hi + 5.3, 2.0)
    vol = structure_mask_on_grid(ss.target, grid).sum() * grid.voxel_cc
    assert vol == pytest.approx(4 / 3 * np.pi, rel=0.06)  # 2 mm points on a 10 mm sphere
    frac = structure_fraction_on_grid(ss.target, grid, supersample=4)
    assert frac.sum() * grid.voxel_cc == pytest.approx(ss.target.volume_cc, rel=0.02)
    # on a grid that is the mask's own, nearest sampling is the identity
    rng = np.random.default_rng(0)
    own = Structure("r", rng.random((6, 7, 8)) < 0.5, np.diag([2.0, 2.0, 2.0, 1.0]))
    grid = DoseGrid((6, 7, 8), (0.0, 0.0, 0.0), 2.0)
    np.testing.assert_array_equal(structure_mask_on_grid(own, grid), own.mask)
    # half a voxel off (0.9 of a step in x): each point takes the next voxel
    shifted = DoseGrid((6, 7, 7), (1.8, 0.0, 0.0), 2.0)
    np.testing.assert_array_equal(structure_mask_on_grid(own, shifted), own.mask[:, :, 1:])


def test_structure_set_errors():
    a = np.eye(4)
    m = np.zeros((2, 2, 2), dtype=bool)
    m[0, 0, 0] = True
    with pytest.raises(InputError, match=r"no structure named 'cord' \(known: ptv\)"):
        StructureSet([Structure("ptv", m, a)], target_name="ptv", cord_name="cord")
    with pytest.raises(InputError, match="the cord structure 'c' is empty"):
        StructureSet([Structure("ptv", m, a), Structure("c", ~m & False, a)],
                     target_name="ptv", cord_name="c")
    with pytest.raises(InputError, match="bool"):
        Structure("x", m.astype(np.uint8), a)


# --- scene --------------------------------------------------------------------------------

def test_scene_structures(tmp_path, phantom):
    scene = scene_from_dict({})
    ss = load_structures(scene, phantom.volume)
    assert ss.target_name == "target" and ss.target.volume_cc == pytest.approx(
        4 / 3 * np.pi * scene.patient.target_radius_mm ** 3 / 1000, rel=0.015)
    _write_labelmap(tmp_path / "seg.nii.gz", [0, 0, 0], 12.0)
    scene = scene_from_dict({"patient": {"structures": {
        "file": "seg.nii.gz", "labels": {"gtv": 3, "sc": 5}, "target": "gtv", "cord": "sc"}}},
        scene_dir=tmp_path)
    got = load_structures(scene, _ct())
    assert got.target_name == "gtv" and got.cord.volume_cc > 0
    for bad, key in ((({"file": "seg.nii.gz"}), "is required for a label map"),
                     ({"file": "seg.nii.gz", "labels": {"gtv": 3}}, "missing: target, cord"),
                     ({"labels": {"a": 1}}, "only used with a label map"),
                     ({"file": "nope.dcm"}, "file not found")):
        with pytest.raises(SceneError, match=f"patient.structures.*{key}") as err:
            scene_from_dict({"patient": {"structures": bad}}, scene_dir=tmp_path)
        assert "\n" not in str(err.value)
