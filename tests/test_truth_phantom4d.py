"""The 4D truth patient: mass against the phantom, breathing motion, rigid bones, caching."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cyberknife_sim.anatomy import make_phantom
from cyberknife_sim.anatomy._params import load_preset
from cyberknife_sim.truth import MATERIALS, TruthPatient, TruthSettings, build_truth_phantom
from cyberknife_sim.truth import _patient as patient_mod
from cyberknife_sim.truth._motion4d import soft_field
from cyberknife_sim.truth._phantom4d import _build, label_masses_g

# coarser than the defaults (1 / 2 / 4 mm instead of 0.5 / 1 / 2 mm) to keep tests fast
FAST = TruthSettings(vertebra_voxel_mm=1.0, rib_voxel_mm=2.0, soft_particle_mm=4.0)
AMP = 10.0
OFFSET = np.array([0.8, -1.5, -4.0])


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("cksim_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CKSIM_CACHE_DIR", str(path))
        mp.delenv("CKSIM_TRUTH_CACHE", raising=False)
        patient_mod._cached.cache_clear()
        yield path
    patient_mod._cached.cache_clear()


@pytest.fixture(scope="module")
def params():
    return load_preset("coarse")


@pytest.fixture(scope="module")
def patient(params, cache_dir) -> TruthPatient:
    return build_truth_phantom(params, seed=0, settings=FAST)


def _with(patient: TruthPatient, **update) -> TruthPatient:
    return dataclasses.replace(patient, settings=patient.settings.model_copy(update=update))


def _displacements(patient, breath, offset):
    return [(ps, pos.astype(np.float64) - ps.position_ct_mm.astype(np.float64))
            for ps, pos in patient.positions_ct(breath, offset, diaphragm_amplitude_mm=AMP)]


def _soft(patient):
    return next(ps for ps in patient.sets if np.all(ps.component == 0))


def _in_window(z, lo, hi):
    return (z >= lo) & (z < hi)


def _check_mass(patient, phantom, tol, bone_tol=None):
    """Mass per material in a z window whose ends are soft-block edges of the truth
    (so every particle lies wholly in or out); the phantom's slices count by overlap."""
    vol = phantom.volume
    nk = vol.shape[0]
    z = vol.ijk_to_ct(np.c_[np.zeros(nk), np.zeros(nk), np.arange(nk)])[:, 2]
    dz = float(vol.spacing_mm[2])
    st = patient.settings
    edge0 = z[0] - st.rib_voxel_mm / 2            # the truth grid starts at the phantom's z
    lo = edge0 + np.ceil((z[0] + 15.0 - edge0) / st.soft_particle_mm) * st.soft_particle_mm
    hi = edge0 + np.floor((z[-1] - 15.0 - edge0) / st.soft_particle_mm) * st.soft_particle_mm
    w = np.clip(np.minimum(z + dz / 2, hi) - np.maximum(z - dz / 2, lo), 0.0, None) / dz
    per_slice = label_masses_g(phantom.labels, vol.hu.astype(np.float64),
                               float(np.prod(vol.spacing_mm))).sum(axis=(1, 2))
    want = (w[:, None] * per_slice).sum(axis=0)
    got = np.zeros(len(MATERIALS))
    for ps in patient.sets:
        inside = _in_window(ps.position_ct_mm[:, 2], lo, hi)
        np.add.at(got, ps.material[inside], ps.mass_g[inside].astype(np.float64))
    for i, name in enumerate(MATERIALS):
        t = bone_tol if (bone_tol is not None and name == "cortical_bone") else tol
        assert got[i] == pytest.approx(want[i], rel=t), (name, got, want)


def test_same_frame_as_the_phantom(patient, params):
    ph = make_phantom(params, seed=0)
    np.testing.assert_array_equal(patient.target_ct_mm, ph.truth.target_center_ct_mm)
    np.testing.assert_array_equal(patient.anatomy.vertebra_centers_ct_mm,
                                  ph.truth.body_centers_ct_mm)
    assert patient.anatomy.vertebra_labels == ph.truth.vertebra_labels
    kinds = [k for k, _ in patient.components]
    assert kinds[0] == "soft" and kinds.count("vertebra") == 6 and kinds.count("sternum") == 1
    assert kinds.count("rib") == 2 * 8    # T5..T12 (three virtual levels above T8)


def test_mass_per_material_matches_the_phantom(patient, params):
    _check_mass(patient, make_phantom(params, seed=0), tol=0.03)


def test_rest_returns_reference_positions_exactly(patient):
    for ps, pos in patient.positions_ct(0.0, np.zeros(3)):
        assert pos.dtype == np.float32
        np.testing.assert_array_equal(pos, ps.position_ct_mm)


def test_diaphragm_moves_by_amplitude_and_apex_much_less(patient):
    ps, d = _displacements(patient, 1.0, np.zeros(3))[0]
    p = ps.position_ct_mm
    for top in patient.diaphragm_points_ct_mm():
        near = (np.abs(p[:, 0] - top[0]) < 8) & (np.abs(p[:, 1] - top[1]) < 8) & \
            _in_window(p[:, 2], top[2] - 8, top[2])
        assert near.sum() >= 5
        assert np.mean(d[near, 2]) == pytest.approx(-AMP, rel=0.05)
        above = (np.abs(p[:, 0] - top[0]) < 8) & (np.abs(p[:, 1] - top[1]) < 8) & \
            _in_window(p[:, 2], top[2], top[2] + 4) & (ps.material == MATERIALS.index("lung"))
        assert np.mean(d[above, 2]) < -0.85 * AMP     # lung base moves with the dome
    lung = ps.material == MATERIALS.index("lung")
    apex = lung & (p[:, 2] > p[lung, 2].max() - 10)
    assert apex.sum() > 20
    assert abs(np.mean(d[apex, 2])) < 0.4 * AMP
    # anterior chest wall moves anterior (-y) by about the configured ratio
    front = (np.abs(p[:, 0]) < 30) & (p[:, 1] < p[:, 1].min() + 8) & (p[:, 2] > 0)
    ratio = patient.settings.chest_wall_amplitude_ratio
    assert np.mean(d[front, 1]) == pytest.approx(-ratio * AMP, rel=0.1)


def _field(patient, pts, breath, offset):
    u, w, lv = soft_field(pts, patient.anatomy, patient.settings)
    return breath * AMP * (1.0 - w)[:, None] * u + (w * lv)[:, None] * offset


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_soft_field_is_continuous(patient, axis):
    """No tearing: along lines through the trunk, the largest step of the displacement
    between samples shrinks in proportion to the sample spacing (a tear would not)."""
    rng = np.random.default_rng(1)
    c = patient.anatomy.vertebra_centers_ct_mm.mean(axis=0)
    starts = c + rng.uniform([-120, -90, -60], [120, 60, 60], size=(40, 3))
    jumps = []
    for h in (0.4, 0.1):
        t = np.arange(-120.0, 120.0, h)
        worst = 0.0
        for s0 in starts:
            pts = np.repeat(s0[None], t.size, axis=0)
            pts[:, axis] += t
            d = _field(patient, pts, 1.0, OFFSET)
            worst = max(worst, float(np.linalg.norm(np.diff(d, axis=0), axis=1).max()))
        jumps.append(worst)
    assert jumps[0] < 0.1 * AMP                 # at most ~2.5 mm/mm of strain
    assert jumps[1] < 0.35 * jumps[0]           # continuous: ~linear in the spacing (0.25)


def test_canal_moves_with_the_lesion_vertebra(patient):
    a = patient.anatomy
    ps, d = _displacements(patient, 0.0, OFFSET)[0]
    p = ps.position_ct_mm
    c = a.vertebra_centers_ct_mm[a.vertebra_labels.index(a.lesion_level)]
    canal_y = c[1] + 18.0           # canal center: 0.38 depth + canal depth / 2 behind it
    near = (np.abs(p[:, 0] - c[0]) < 4) & (np.abs(p[:, 1] - canal_y) < 4) & \
        (np.abs(p[:, 2] - c[2]) < 6)
    assert near.sum() >= 1
    np.testing.assert_allclose(d[near].mean(axis=0), OFFSET, atol=0.15)


def test_vertebrae_move_rigidly_by_the_per_level_spread(patient):
    a = patient.anatomy
    for rot in (0.0, patient.settings.vertebra_rotation_deg):
        pt = _with(patient, vertebra_rotation_deg=rot)
        vs = next(ps for ps in pt.sets if ps.name.startswith("vertebrae"))
        (_, pos), = [(ps, pos) for ps, pos in pt.positions_ct(1.0, OFFSET) if ps is vs]
        spread = pt.settings.vertebra_motion_spread
        for n, label in enumerate(a.vertebra_labels):
            m = vs.component == 1 + n
            d = pos[m].astype(np.float64) - vs.position_ct_mm[m]
            if label == a.lesion_level:
                np.testing.assert_allclose(d, np.broadcast_to(OFFSET, d.shape), atol=2e-5)
                continue
            expect = OFFSET * (1.0 + spread * a.level_motion_z[n])
            np.testing.assert_allclose(d.mean(axis=0), expect, atol=1e-4 if rot == 0 else 0.05)
            q0 = vs.position_ct_mm[m].astype(np.float64)
            r_fit, _ = Rotation.align_vectors(pos[m] - pos[m].mean(0), q0 - q0.mean(0))
            assert np.degrees(r_fit.magnitude()) == pytest.approx(rot, abs=1e-3)
    # the spread: the other levels differ from the lesion's by about spread x |offset|
    z = np.delete(a.level_motion_z, a.vertebra_labels.index(a.lesion_level))
    rms = np.sqrt(np.mean((spread * z) ** 2))
    assert 0.3 * spread < rms < 3.0 * spread


def test_rib_rotates_about_its_joint_which_stays_on_the_vertebra(patient):
    a = patient.anatomy
    rs = next(ps for ps in patient.sets if ps.name.startswith("ribs"))
    vs = next(ps for ps in patient.sets if ps.name.startswith("vertebrae"))
    for label in ("T9 left", "T11 right"):
        cid = patient.component_id("rib", label)
        i = list(a.rib_components).index(cid)
        joint = a.rib_joint_ct_mm[i]
        level = a.vertebra_labels.index(a.rib_levels[i])
        for breath in (1.0, 0.6):
            moved = dict((id(ps), pos) for ps, pos in patient.positions_ct(breath, OFFSET))
            m = rs.component == cid
            p0 = rs.position_ct_mm[m].astype(np.float64)
            p1 = moved[id(rs)][m].astype(np.float64)
            r_rib, _ = Rotation.align_vectors(p1 - p1.mean(0), p0 - p0.mean(0))
            mv = vs.component == 1 + level
            q0 = vs.position_ct_mm[mv].astype(np.float64)
            q1 = moved[id(vs)][mv].astype(np.float64)
            r_v, _ = Rotation.align_vectors(q1 - q1.mean(0), q0 - q0.mean(0))
            # the rib's own rotation (after taking out its vertebra's) is about its neck axis
            own = r_v.inv() * r_rib
            assert np.degrees(own.magnitude()) == pytest.approx(
                patient.settings.rib_rotation_deg * breath, abs=2e-3)
            np.testing.assert_allclose(own.as_rotvec() / own.magnitude(), a.rib_axis[i],
                                       atol=1e-3)
            # the joint, carried by the rib's fitted motion and by the vertebra's, agrees
            j_rib = r_rib.apply(joint - p0.mean(0)) + p1.mean(0)
            j_vert = r_v.apply(joint - q0.mean(0)) + q1.mean(0)
            np.testing.assert_allclose(j_rib, j_vert, atol=1e-3)
            # inhale lifts the rib's anterior end (rotation alone: no target offset)
            rest = dict((id(ps), pos) for ps, pos in patient.positions_ct(breath, np.zeros(3)))
            tip = np.argmin(p0[:, 1])
            lift = rest[id(rs)][m][tip, 2] - p0[tip, 2]
            expect = np.cross(a.rib_axis[i], p0[tip] - joint)[2] * np.radians(
                patient.settings.rib_rotation_deg * breath)
            assert lift > 0.5 * breath
            assert lift == pytest.approx(expect, rel=0.05)


def test_same_seed_bit_identical_and_cache_round_trip(patient, params, cache_dir):
    fresh = _build(params, 0, FAST)
    for a, b in zip(patient.sets, fresh.sets, strict=True):
        for key in ("position_ct_mm", "mass_g", "material", "component"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
        assert (a.size_mm, a.name) == (b.size_mm, b.name)
    entries = list((cache_dir / "truth").glob("*.npz"))
    assert len(entries) == 1
    patient_mod._cached.cache_clear()
    again = build_truth_phantom(params, seed=0, settings=FAST)     # from disk
    assert again is not patient
    for a, b in zip(patient.sets, again.sets, strict=True):
        np.testing.assert_array_equal(a.position_ct_mm, b.position_ct_mm)
        np.testing.assert_array_equal(a.mass_g, b.mass_g)
    assert again.components == patient.components
    np.testing.assert_array_equal(again.anatomy.rib_axis, patient.anatomy.rib_axis)
    for (_, p1), (_, p2) in zip(patient.positions_ct(0.8, OFFSET), again.positions_ct(0.8, OFFSET),
                                strict=True):
        np.testing.assert_array_equal(p1, p2)


def test_settings_validation():
    with pytest.raises(ValueError, match="whole multiple"):
        TruthSettings(vertebra_voxel_mm=0.75, rib_voxel_mm=1.0)
    with pytest.raises(ValueError, match="whole multiple"):
        TruthSettings(soft_particle_mm=3.0, rib_voxel_mm=2.0)
    with pytest.raises(ValueError):
        TruthSettings(rib_rotation_deg=-1.0)


def test_is_a_truth_model(patient):
    from cyberknife_sim.truth import TruthModel
    assert isinstance(patient, TruthModel)


def test_bad_offset_is_rejected(patient):
    with pytest.raises(ValueError, match="target_offset_ct_mm"):
        patient.positions_ct(1.0, [1.0, 2.0])


@pytest.mark.slow
def test_default_resolution_mass_matches_the_default_phantom(cache_dir):
    params = load_preset("default")
    patient = build_truth_phantom(params, seed=0)
    assert patient.sets[1].size_mm == 0.5
    # the phantom's cortical shell (voxels within cortical_thickness_mm of the surface by a
    # distance transform) is thinner on coarse grids: painted at 0.5 mm a vertebra holds
    # ~9 % more cortical bone than at 1 x 1 x 1.5 mm (measured), ~5 % of all cortical mass
    _check_mass(patient, make_phantom(params, seed=0), tol=0.02, bone_tol=0.08)
    for ps, pos in patient.positions_ct(0.0, np.zeros(3)):
        np.testing.assert_array_equal(pos, ps.position_ct_mm)
