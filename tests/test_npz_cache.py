"""The on-disk caches of costly pure results (planning-CT acquisition, plan beam doses and MU):
a hit gives the computed result back bit for bit, and a corrupt, foreign or switched-off
entry is recomputed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from cyberknife_sim._npz_cache import NpzCache

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CKSIM_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CKSIM_TEST_NPZ", raising=False)
    return NpzCache("unit", switch_env="CKSIM_TEST_NPZ")


def _counting_build(calls):
    def build():
        calls.append(1)
        return np.arange(5.0) / 3.0
    return build


def test_hit_returns_the_built_arrays_bit_for_bit(cache):
    calls = []
    key = NpzCache.key({"a": 1})
    args = (_counting_build(calls), lambda v: {"v": v}, lambda a: a["v"])
    first = cache.get_or_build(key, *args)
    second = cache.get_or_build(key, *args)
    assert len(calls) == 1
    assert np.array_equal(first, second) and second.dtype == np.float64
    assert NpzCache.key({"a": 2}) != key


def test_corrupt_or_foreign_entries_are_rebuilt(cache):
    calls = []
    args = (_counting_build(calls), lambda v: {"v": v}, lambda a: a["v"])
    key = NpzCache.key({"a": 1})
    cache.get_or_build(key, *args)
    path = cache.folder / f"{key}.npz"
    path.write_bytes(path.read_bytes()[:40])  # cut
    assert np.array_equal(cache.get_or_build(key, *args), np.arange(5.0) / 3.0)
    other = NpzCache.key({"a": 3})
    (cache.folder / f"{other}.npz").write_bytes(path.read_bytes())  # entry of another key
    cache.get_or_build(other, *args)
    assert len(calls) == 3


def test_switched_off_builds_every_time(cache, monkeypatch):
    monkeypatch.setenv("CKSIM_TEST_NPZ", "0")
    calls = []
    args = (_counting_build(calls), lambda v: {"v": v}, lambda a: a["v"])
    key = NpzCache.key({"a": 1})
    cache.get_or_build(key, *args)
    cache.get_or_build(key, *args)
    assert len(calls) == 2 and not cache.folder.exists()


def test_plan_dose_from_disk_equals_the_computed_one(tmp_path, monkeypatch):
    from cyberknife_sim.anatomy.patient import load_patient
    from cyberknife_sim.dose import _plan_dose
    from cyberknife_sim.dose._plan_dose import plan_dose
    from cyberknife_sim.scene import scene_from_dict
    from cyberknife_sim.simulation._robot import build_plan_and_robot

    monkeypatch.setenv("CKSIM_CACHE_DIR", str(tmp_path))
    data = yaml.safe_load((REPO / "scenes" / "default.yaml").read_text(encoding="utf-8"))
    data["room"]["imaging"]["live_images"] = "ideal"
    data["plan"].update(n_beams=12, total_mu=1200)
    scene = scene_from_dict(data, origin="test", scene_dir=REPO / "scenes")
    beams, _ = build_plan_and_robot(scene, rng=np.random.default_rng(1))
    patient = load_patient(scene)
    _plan_dose._CACHE.clear()
    a, beams_a = plan_dose(scene, patient, list(beams), optimize=True)
    assert len(list((tmp_path / "plan_dose").glob("*.npz"))) == 1
    _plan_dose._CACHE.clear()
    b, beams_b = plan_dose(scene, patient, list(beams), optimize=True)
    assert a is not b
    assert np.array_equal(a.planned_gy, b.planned_gy) and np.array_equal(a.mu, b.mu)
    assert [x.mu for x in beams_a] == [x.mu for x in beams_b]
    assert a.optimization.message == b.optimization.message
    for x, y in zip(a.beam_doses, b.beam_doses, strict=True):
        assert np.array_equal(x.index, y.index)
        assert np.array_equal(x.dose_per_mu([[0.7, -0.3]]), y.dose_per_mu([[0.7, -0.3]]))
    _plan_dose._CACHE.clear()


def test_planning_ct_from_disk_equals_the_acquired_one(tmp_path, monkeypatch):
    from cyberknife_sim.anatomy import patient as patient_mod
    from cyberknife_sim.scene import load_scene

    # a fresh planning-CT folder beside the session's truth cache (the truth is costly)
    fresh = NpzCache(f"planning_ct-{tmp_path.name}", switch_env="CKSIM_PLANNING_CT_CACHE")
    monkeypatch.setattr(patient_mod, "_PLANNING_CT_CACHE", fresh)
    scene = load_scene(REPO / "scenes" / "default.yaml")
    patient_mod._ACQUIRED.clear()
    a = patient_mod.load_patient(scene).volume
    assert len(list(fresh.folder.glob("*.npz"))) == 1
    patient_mod._ACQUIRED.clear()
    b = patient_mod.load_patient(scene).volume
    assert a is not b
    assert a.hu.dtype == b.hu.dtype == np.int16 and np.array_equal(a.hu, b.hu)
    assert np.array_equal(a.ct_from_ijk, b.ct_from_ijk) and a.name == b.name
    patient_mod._ACQUIRED.clear()
    for f in fresh.folder.glob("*.npz"):
        f.unlink()


def test_spectrum_from_disk_equals_spekpys(tmp_path, monkeypatch):
    from cyberknife_sim.imaging.xrayphysics import _spectrum

    monkeypatch.setenv("CKSIM_CACHE_DIR", str(tmp_path))
    args = dict(kvp=100.0, anode_angle_deg=12.0, filtration_al_mm=2.5, filtration_cu_mm=0.1,
                tan_alpha=(-0.05, 0.0, 0.05))
    _spectrum._spekpy_nodes.cache_clear()
    a = _spectrum.tube_spectrum(**args)
    assert len(list((tmp_path / "spectra").glob("*.npz"))) == 1
    _spectrum._spekpy_nodes.cache_clear()
    b = _spectrum.tube_spectrum(**args)
    direct = _spectrum._spekpy_compute(100.0, 12.0, 2.5, 0.1, (-0.05, 0.0, 0.05))
    assert np.array_equal(a.photons_per_sr_per_mas, b.photons_per_sr_per_mas)
    assert np.array_equal(b.photons_per_sr_per_mas, direct[1])
    assert np.array_equal(b.energies_kev, direct[0])
    _spectrum._spekpy_nodes.cache_clear()
