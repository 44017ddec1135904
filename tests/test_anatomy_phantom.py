"""Procedural spine phantom: tissue HU, anatomy layout, ground truth, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cyberknife_sim.anatomy import (
    TISSUE_LABELS,
    PhantomParams,
    PhantomTruth,
    level_dims,
    list_presets,
    load_preset,
    make_phantom,
)
from cyberknife_sim.anatomy import phantom as phantom_module
from cyberknife_sim.errors import InputError

L = TISSUE_LABELS


@pytest.fixture(scope="module")
def ph():
    return make_phantom("default", seed=0)


def _coords(vol, mask):
    k, j, i = np.nonzero(mask)
    return vol.ijk_to_ct(np.stack([i, j, k], axis=1).astype(float))


@pytest.mark.parametrize(("tissue", "lo", "hi"), [
    ("cortical_bone", 800, 1200), ("cancellous_bone", 150, 300), ("lung", -900, -700),
    ("fat", -150, -50), ("soft_tissue", 0, 80), ("disc", 50, 120), ("csf", 0, 25),
    ("cord", 20, 50), ("liver", 40, 80), ("air", -1010, -990), ("lesion", -20, 100),
])
def test_tissue_hu_means_in_range(ph, tissue, lo, hi):
    m = ph.labels == L[tissue]
    assert m.sum() > 500, tissue
    mean = float(ph.volume.hu[m].mean())
    assert lo <= mean <= hi, f"{tissue}: mean {mean:.1f} HU outside {lo}..{hi}"


def test_trabecular_texture_is_random_and_structured(ph):
    m = ph.labels == L["cancellous_bone"]
    hu = ph.volume.hu.astype(np.float32)
    std = float(hu[m].std())
    assert 50 < std < 150, std
    # neighbouring voxels (1 mm apart in x) correlate: a texture, not white noise
    both = m[:, :, 1:] & m[:, :, :-1]
    a, b = hu[:, :, 1:][both], hu[:, :, :-1][both]
    corr = float(np.corrcoef(a, b)[0, 1])
    assert 0.2 < corr < 0.95, corr


def test_vertebra_count_order_and_spacing(ph):
    t = ph.truth
    assert t.vertebra_labels == ("T8", "T9", "T10", "T11", "T12", "L1")
    z = t.body_centers_ct_mm[:, 2]
    assert np.all(np.diff(z) < 0), "labels must run cranial (high z) to caudal"
    for (a, b), dz in zip(zip(t.vertebra_labels[:-1], t.vertebra_labels[1:], strict=True),
                          -np.diff(z), strict=True):
        da, db = level_dims(a), level_dims(b)
        expected = da.height / 2 + da.disc_below + db.height / 2
        assert abs(dz - expected) < 0.1 * expected, (a, b, dz, expected)
    # the image itself holds six separate vertebral bodies at those centers
    vol = ph.volume
    spongy = (ph.labels == L["cancellous_bone"]) | (ph.labels == L["lesion"])
    pts_y = vol.ijk_to_ct(np.array([[0, j, 0] for j in range(vol.shape[1])], float))[:, 1]
    pts_x = vol.ijk_to_ct(np.array([[i, 0, 0] for i in range(vol.shape[2])], float))[:, 0]
    canal_y = t.canal_centerline_ct_mm[::-1, 1]  # per slice k (truth lists cranial first)
    region = (pts_y[None, :, None] < canal_y[:, None, None] - 5.0) & \
        (np.abs(pts_x)[None, None, :] < 25.0)
    lab, n = ndimage.label(spongy & region)
    sizes = ndimage.sum(np.ones_like(lab), lab, index=range(1, n + 1))
    big = [i + 1 for i, s in enumerate(sizes) if s > 2000]
    assert len(big) == 6
    cents = np.array([_coords(vol, lab == i).mean(axis=0) for i in big])
    cents = cents[np.argsort(-cents[:, 2])]
    np.testing.assert_allclose(cents, t.body_centers_ct_mm, atol=3.0)


def test_target_inside_stated_vertebral_body(ph):
    t, vol = ph.truth, ph.volume
    assert t.lesion_level == "T10" and t.lesion_type == "lytic"
    les = ph.labels == L["lesion"]
    pts = _coords(vol, les)
    np.testing.assert_allclose(pts.mean(axis=0), t.target_center_ct_mm, atol=0.5)
    expected = 4 / 3 * np.pi * t.target_radius_mm**3 / np.prod(vol.spacing_mm)
    assert abs(les.sum() - expected) < 0.12 * expected
    assert np.linalg.norm(pts - t.target_center_ct_mm, axis=1).max() <= t.target_radius_mm + 1
    c = t.body_center("T10")
    d = level_dims("T10")
    rel = pts - c
    assert np.all(np.abs(rel[:, 2]) < d.height / 2)
    assert np.all((rel[:, 0] / (d.width / 2)) ** 2 + (rel[:, 1] / (d.depth / 2)) ** 2 < 1.05)
    # the lesion is darker than the surrounding cancellous bone (lytic)
    spongy = vol.hu[ph.labels == L["cancellous_bone"]].mean()
    assert vol.hu[les].mean() < spongy - 120


def test_cord_inside_canal(ph):
    t, vol = ph.truth, ph.volume
    cord = ph.labels == L["cord"]
    assert len(t.cord_centerline_ct_mm) > 50
    ijk = np.rint(vol.ct_to_ijk(t.cord_centerline_ct_mm)).astype(int)
    assert np.mean(cord[ijk[:, 2], ijk[:, 1], ijk[:, 0]]) > 0.99
    # every cord voxel is enclosed by CSF (no bone or soft tissue touches the cord)
    ring = ndimage.binary_dilation(cord, structure=np.ones((1, 5, 5), bool)) & ~cord
    assert set(np.unique(ph.labels[ring])) <= {L["csf"]}
    # canal: the cord centerline lies inside the canal ellipse of the same slice
    canal = {round(float(p[2]), 3): (p, h) for p, h in zip(t.canal_centerline_ct_mm,
                                                          t.canal_half_axes_mm, strict=True)}
    for p in t.cord_centerline_ct_mm[::10]:
        c, h = canal[round(float(p[2]), 3)]
        assert ((p[0] - c[0]) / h[0]) ** 2 + ((p[1] - c[1]) / h[1]) ** 2 < 0.05
    # canal is posterior to every body center and anterior to the back
    assert np.all(t.canal_centerline_ct_mm[:, 1].min() > t.body_centers_ct_mm[:, 1].max())


def test_orientation_is_lps_supine(ph):
    vol = ph.volume
    liver = _coords(vol, ph.labels == L["liver"])
    assert liver[:, 0].mean() < -20, "liver must be on the patient's right (-x)"
    lung = _coords(vol, ph.labels == L["lung"])
    t = ph.truth
    assert lung[:, 2].mean() > t.body_center("T12")[2], "lungs are superior (+z)"
    spinous = _coords(vol, (ph.labels == L["cortical_bone"]))
    back = spinous[(np.abs(spinous[:, 0]) < 6)]
    assert back[:, 1].max() > t.body_centers_ct_mm[:, 1].max() + 40, "spinous processes +y"
    # ribs on both sides, mirror-symmetric in count within 15 %
    ribs = (ph.labels == L["rib_marrow"])
    x = _coords(vol, ribs)[:, 0]
    left, right = (x > 60).sum(), (x < -60).sum()
    assert left > 1000 and abs(left - right) < 0.15 * left
    # nothing but air outside the body contour; lungs never at the lowest slices
    assert np.all(vol.hu[:, 0, :] == -1000) and np.all(vol.hu[:, :, 0] == -1000)
    assert not np.any(ph.labels[:3] == L["lung"])


def test_volume_geometry_and_dtype(ph):
    vol = ph.volume
    assert vol.hu.dtype == np.int16
    np.testing.assert_allclose(vol.spacing_mm, [1.0, 1.0, 1.5])
    np.testing.assert_allclose(vol.ct_from_ijk[:3, :3], np.diag([1.0, 1.0, 1.5]))
    fov = (np.array(vol.shape[::-1]) - 1) * vol.spacing_mm
    assert 335 <= fov[0] <= 341 and 255 <= fov[1] <= 261
    assert not vol.hu.flags.writeable and not ph.labels.flags.writeable


def test_same_seed_identical_other_seed_differs():
    phantom_module._make_cached.cache_clear()
    a = make_phantom("coarse", seed=3)
    phantom_module._make_cached.cache_clear()
    b = make_phantom("coarse", seed=3)
    assert a is not b
    assert np.array_equal(a.volume.hu, b.volume.hu)
    assert np.array_equal(a.truth.body_centers_ct_mm, b.truth.body_centers_ct_mm)
    c = make_phantom("coarse", seed=4)
    assert not np.array_equal(a.volume.hu, c.volume.hu)
    assert not np.allclose(a.truth.body_centers_ct_mm, c.truth.body_centers_ct_mm)


def test_blastic_lumbar_preset_lesion():
    p = load_preset("coarse").model_copy(update={
        "top_level": "T10", "bottom_level": "L2", "lesion_type": "blastic",
        "lesion_level": "L1", "lesion_offset_mm": (-3.0, -2.0, 1.0), "lesion_radius_mm": 8.0})
    p = PhantomParams.model_validate(p.model_dump())
    ph = make_phantom(p, seed=1)
    les = ph.labels == L["lesion"]
    assert ph.truth.vertebra_labels == ("T10", "T11", "T12", "L1", "L2")
    assert 600 < ph.volume.hu[les].mean() < 1000
    assert not np.any(ph.labels[:2] == L["cord"]), "no cord below the conus (L1-L2)"
    assert np.any(ph.labels[-2:] == L["cord"])
    np.testing.assert_allclose(_coords(ph.volume, les).mean(axis=0),
                               ph.truth.target_center_ct_mm, atol=1.0)


def test_truth_json_round_trip(ph):
    t2 = PhantomTruth.from_dict(__import__("json").loads(ph.truth.to_json()))
    np.testing.assert_allclose(t2.target_center_ct_mm, ph.truth.target_center_ct_mm, atol=1e-4)
    np.testing.assert_allclose(t2.cord_centerline_ct_mm, ph.truth.cord_centerline_ct_mm,
                               atol=1e-4)
    assert t2.vertebra_labels == ph.truth.vertebra_labels


def test_presets_and_bad_parameters(tmp_path):
    assert {"default", "coarse", "lumbar"} <= set(list_presets())
    with pytest.raises(InputError, match="available: .*default"):
        make_phantom("no_such_preset")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lesion_radius_mm: 19\nvoxel_size: [1, 1, 1]\n")
    with pytest.raises(InputError) as err:
        load_preset(bad)
    msg = str(err.value)
    assert "bad.yaml" in msg and "voxel_size" in msg and "\n" not in msg
    with pytest.raises(ValueError, match="does not fit"):
        PhantomParams(lesion_radius_mm=15.0)
    with pytest.raises(ValueError, match="not among"):
        PhantomParams(lesion_level="L3")
    with pytest.raises(ValueError, match="allowed"):
        PhantomParams(top_level="C7")
    with pytest.raises(ValueError, match="seed"):
        make_phantom("coarse", seed=-1)
