"""A user's own CT as the truth: particles from its HU, rigid vertebrae, synthetic breathing,
and a 4D CT as phases; checked on the real example CT (../shared/data)."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.anatomy import Volume, read_ct, write_volume
from cyberknife_sim.truth._acquire import acquire_ct_on_grid, bin_particles, planning_positions
from cyberknife_sim.truth._materials import hu_to_masses
from cyberknife_sim.truth._userct import (
    FourDCTTruth,
    TruthModel,
    UserCTSettings,
    truth_from_4dct,
    truth_from_ct,
)

BODY_CENTRE_IJK = (58, 45, 70)
"""A lumbar vertebral body's centre in example_ct.nii.gz (read off its axial slices)."""


@pytest.fixture(scope="module")
def ct(shared_data) -> Volume:
    return read_ct(shared_data / "ct" / "example_ct.nii.gz")


COARSE_ONLY = UserCTSettings(fine_half_box_mm=0.0)  # one particle set at the CT's voxels


@pytest.fixture(scope="module")
def truth(ct):
    return truth_from_ct(ct, target_ct_mm=ct.ijk_to_ct(BODY_CENTRE_IJK), settings=COARSE_ONLY)


def test_fine_particles_about_the_target_keep_the_mass_and_the_ct(ct):
    """The default truth of a 3 mm CT: 1 mm particles (trilinear CT numbers) within 60 mm
    of the target replace the coarse voxels there, the rest stays at the CT's voxels. Mass
    is kept to 1 %, and acquired back on the CT's grid (box SSP) the CT is reproduced to a
    mean of a few HU (the trilinear model smooths edges inside the box)."""
    t = ct.ijk_to_ct(BODY_CENTRE_IJK)
    fine = truth_from_ct(ct, target_ct_mm=t)
    items = fine.positions_ct(0.0, [0.0, 0.0, 0.0])
    sizes = sorted(p.size_mm for p, _ in items)
    assert sizes == pytest.approx([1.0, 3.0])
    body = ct.hu >= -950
    exact = hu_to_masses(ct.hu[body], 27e-3).sum()
    assert sum(p.total_mass_g for p, _ in items) == pytest.approx(exact, rel=0.01)
    box = acquire_ct_on_grid(items, ct.ct_from_ijk, ct.shape, ssp="box", noise_hu=0)
    d = np.abs(box.hu.astype(float) - ct.hu)[body]
    assert d.mean() < 15.0
    # the target's vertebra moves rigidly by the offset in both parts
    moved = fine.positions_ct(0.0, [0.0, 0.0, -2.0])
    for (p, a), (_, b) in zip(items, moved, strict=True):
        near = (np.linalg.norm(a - t, axis=1) < 6.0) & (p.component > 0)
        if near.any():
            lvl = np.bincount(p.component[near]).argmax()
            sel = p.component == lvl
            np.testing.assert_allclose(b[sel] - a[sel], np.broadcast_to([0, 0, -2.0],
                                                                        (sel.sum(), 3)),
                                       atol=1e-4)


def test_particles_reproduce_the_ct_at_its_own_grid(ct, truth):
    assert isinstance(truth, TruthModel)
    items = truth.positions_ct(0.0, [0.0, 0.0, 0.0])
    body = ct.hu >= -950
    # mass: the particles hold exactly the CT's mass (HU -> masses per voxel)
    exact = hu_to_masses(ct.hu[body], 27e-3).sum()
    assert truth.particles.total_mass_g == pytest.approx(exact, rel=1e-5)
    g = bin_particles(items, ct.ct_from_ijk, ct.shape, quantity="mass", ssp="box")
    assert g.sum() == pytest.approx(exact, rel=1e-6)
    # a triangle SSP spills half of the end slices' mass out of the grid (0.2 % here)
    g = bin_particles(items, ct.ct_from_ijk, ct.shape, quantity="mass", ssp="triangle")
    assert 0.99 * exact < g.sum() < exact
    # box SSP of one slice, particles of one voxel at the voxel centres: the CT back
    box = acquire_ct_on_grid(items, ct.ct_from_ijk, ct.shape, ssp="box", noise_hu=0)
    d = np.abs(box.hu.astype(float) - ct.hu)
    assert d[body].max() <= 1.0
    # triangle SSP (FWHM one slice): partial-volume blur along z only, measured 8.4 HU
    tri = acquire_ct_on_grid(items, ct.ct_from_ijk, ct.shape, ssp="triangle", noise_hu=0)
    d = np.abs(tri.hu.astype(float) - ct.hu)[body]
    assert 2.0 < d.mean() < 15.0


def test_spine_levels_found_at_the_discs(truth):
    sp = truth.spine
    assert sp.discs_found >= 3
    b = sp.boundaries_z_ct_mm
    z_t = truth.target_ct_mm[2]
    lo, hi = b[b < z_t].max(), b[b > z_t].min()
    # the target's vertebra: a lumbar body plus disc, 30-45 mm; its discs by eye at 295, 334
    assert 30.0 <= hi - lo <= 45.0
    assert lo == pytest.approx(295.3, abs=4.0) and hi == pytest.approx(334.3, abs=4.0)
    counts = np.bincount(truth.particles.component)
    assert counts[sp.target_level] > 1000          # the target's vertebra has its bone


def test_fixed_slab_fallback_when_no_disc_is_found(ct):
    from cyberknife_sim.truth._userct import find_spine
    t = ct.ijk_to_ct(BODY_CENTRE_IJK)
    sp = find_spine(ct, t, UserCTSettings(disc_depth_hu=1e4))
    assert sp.discs_found == 0
    b = sp.boundaries_z_ct_mm
    np.testing.assert_allclose(np.diff(b), 28.0)
    assert b[b < t[2]].max() == pytest.approx(t[2] - 14.0)
    assert b[b > t[2]].min() == pytest.approx(t[2] + 14.0)


def test_bone_rigid_per_level_soft_tissue_breathes(ct, truth):
    ps, s = truth.particles, truth.settings
    off = np.array([1.5, -2.0, 3.0])
    (_, p0), = truth.positions_ct(0.0, [0.0, 0.0, 0.0])
    (_, p1), = truth.positions_ct(1.0, off)
    d = p1.astype(np.float64) - p0
    rng = np.random.default_rng(0)
    for c in np.unique(ps.component[ps.component > 0]):
        sel = np.flatnonzero(ps.component == c)
        # every particle of the level moves by the same vector: pairwise distances kept
        np.testing.assert_allclose(d[sel], np.broadcast_to(d[sel[0]], d[sel].shape), atol=2e-4)
        pick = rng.choice(sel, size=min(300, len(sel)), replace=False)
        dist0 = np.linalg.norm(p0[pick, None] - p0[None, pick], axis=-1)
        dist1 = np.linalg.norm(p1[pick, None] - p1[None, pick], axis=-1)
        assert np.max(np.abs(dist1 - dist0)) < 1e-3
        factor = max(0.0, 1.0 - s.level_offset_falloff * abs(c - truth.spine.target_level))
        np.testing.assert_allclose(d[sel[0]], factor * off, atol=2e-4)
    # the target's level: exactly the target offset
    tgt = ps.component == truth.spine.target_level
    np.testing.assert_allclose(d[tgt].mean(axis=0), off, atol=2e-4)
    # soft tissue at the diaphragm, anterior and far from the spine: the full amplitude
    (_, pb), = truth.positions_ct(1.0, [0.0, 0.0, 0.0])
    db = pb.astype(np.float64) - p0
    z = p0[:, 2]
    cen = truth.spine.centre_xy_ct_mm[np.argmin(np.abs(truth.spine.slice_z_ct_mm
                                                       - truth.diaphragm_z_ct_mm))]
    r = np.hypot(p0[:, 0] - cen[0], p0[:, 1] - cen[1])
    at = ((ps.component == 0) & (np.abs(z - truth.diaphragm_z_ct_mm) < 0.01)
          & (r > s.spine_calm_mm[1]) & (p0[:, 1] < cen[1] - 20.0))
    assert at.sum() > 100
    np.testing.assert_allclose(db[at, 2], -s.diaphragm_amplitude_mm, atol=0.05)
    # tissue at the spine and the pelvis (caudal_decay_mm below the diaphragm) stays put
    calm = (ps.component == 0) & (r < s.spine_calm_mm[0]) & (np.abs(z - 300) < 10)
    assert np.abs(db[calm]).max() < 1e-4
    low = (ps.component == 0) & (z < truth.diaphragm_z_ct_mm - s.caudal_decay_mm)
    assert np.abs(db[low, 2]).max() < 1e-4
    # half a breath moves it half as far; another dome amplitude scales the SI motion
    (_, ph), = truth.positions_ct(0.5, [0.0, 0.0, 0.0])
    np.testing.assert_allclose(ph[at] - p0[at], 0.5 * db[at], atol=1e-3)
    (_, pa), = truth.positions_ct(1.0, [0.0, 0.0, 0.0], diaphragm_amplitude_mm=6.0)
    np.testing.assert_allclose(pa[at, 2] - p0[at, 2], -6.0, atol=0.05)
    np.testing.assert_allclose(pa[at, :2], pb[at, :2], atol=1e-4)


def test_lung_density_falls_when_it_stretches(ct, truth):
    # lungs at the top of this CT: their mean HU drops at inhale (particles spread upwards)
    zd = truth.diaphragm_z_ct_mm
    items0 = truth.positions_ct(0.0, [0, 0, 0])
    items1 = truth.positions_ct(1.0, [0, 0, 0])
    v0 = acquire_ct_on_grid(items0, ct.ct_from_ijk, ct.shape, noise_hu=0)
    v1 = acquire_ct_on_grid(items1, ct.ct_from_ijk, ct.shape, noise_hu=0)
    zs = truth.spine.slice_z_ct_mm
    ks = np.flatnonzero((zs > zd + 3) & (zs < zs.max() - 3))
    lung = (v0.hu[ks] > -950) & (v0.hu[ks] < -500)
    assert lung.sum() > 200
    assert v1.hu[ks][lung].astype(float).mean() < v0.hu[ks][lung].astype(float).mean() - 5.0


def test_anisotropic_voxels_split_along_z(ct):
    small = ct.crop_around(ct.ijk_to_ct(BODY_CENTRE_IJK), [45.0, 45.0, 30.0])
    a = small.ct_from_ijk.copy()
    a[:3, 0] /= 3.0                                  # 1 x 1 x 3 mm voxels (same array)
    a[:3, 1] /= 3.0
    v = Volume(np.asarray(small.hu), a, name="1x1x3")
    t = v.ijk_to_ct(np.array(v.shape[::-1]) // 2)
    tr = truth_from_ct(v, target_ct_mm=t, settings=COARSE_ONLY)
    n_vox = int(np.sum(hu_to_masses(v.hu, 3e-3) > 0))
    assert len(tr.particles) == 3 * n_vox
    assert tr.particles.size_mm == pytest.approx(1.0)
    body = v.hu >= -950
    box = acquire_ct_on_grid(tr.positions_ct(0.0, [0, 0, 0]), v.ct_from_ijk, v.shape,
                             ssp="box", noise_hu=0)
    assert np.abs(box.hu.astype(float) - v.hu)[body].max() <= 1.0


def test_same_seed_same_planning_ct(ct, truth):
    small = ct.crop_around(truth.target_ct_mm, [40.0, 40.0, 20.0])
    items = planning_positions(truth, "average", n_average=4)
    grid = (small.ct_from_ijk, small.shape)
    a = acquire_ct_on_grid(items, *grid, noise_hu=10.0, rng=np.random.default_rng(5))
    b = acquire_ct_on_grid(items, *grid, noise_hu=10.0, rng=np.random.default_rng(5))
    assert np.array_equal(a.hu, b.hu)


def test_4dct_phases_interpolated_by_weight(ct, tmp_path):
    small = ct.crop_around(ct.ijk_to_ct(BODY_CENTRE_IJK), [30.0, 30.0, 15.0])
    shifted = np.roll(np.asarray(small.hu), 2, axis=0)       # 6 mm SI "inhale"
    p0 = write_volume(small, tmp_path / "phase0.nii.gz")
    p1 = write_volume(Volume(shifted, small.ct_from_ijk), tmp_path / "phase1.nii.gz")
    tr = truth_from_4dct([p1, p0], [1.0, 0.0])
    assert isinstance(tr, FourDCTTruth) and isinstance(tr, TruthModel)
    items = tr.positions_ct(0.25, [0.0, 0.0, 0.0])
    assert [w for _, _, w in items] == pytest.approx([0.75, 0.25])
    assert [len(tr.positions_ct(x, [0, 0, 0])) for x in (0.0, 1.0, 1.7, -1.0)] == [1, 1, 1, 1]
    v = acquire_ct_on_grid(items, small.ct_from_ijk, small.shape, ssp="box", noise_hu=0)
    expect = 0.75 * np.maximum(small.hu, -1000) + 0.25 * np.maximum(shifted, -1000)
    inside = (small.hu >= -950) & (shifted >= -950)
    assert np.abs(v.hu - expect)[inside].max() <= 1.0
    # the target offset shifts the whole patient
    (_, q, _), = tr.positions_ct(0.0, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(q - tr.sets[0].position_ct_mm, np.tile([1, 2, 3], (len(q), 1)),
                               atol=1e-4)
    with pytest.raises(Exception, match="phase"):
        truth_from_4dct([p0], [0.0, 1.0])


def test_bad_target_is_an_input_error(ct):
    from cyberknife_sim.errors import InputError
    with pytest.raises(InputError, match="outside"):
        truth_from_ct(ct, target_ct_mm=[1e4, 0.0, 0.0])
    assert UserCTSettings().bone_hu == 200.0
