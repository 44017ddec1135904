"""Plan cache: a hit is bit-identical to a fresh generation (rng and robot posture too), the
key follows every setting a plan depends on and ignores the others, a corrupt entry is
regenerated, writes are atomic, the cache can be turned off."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from cyberknife_sim import plan as plan_module
from cyberknife_sim import plan_cache
from cyberknife_sim.plan import generate_plan, plan_for_scene, plan_to_dict
from cyberknife_sim.robot import RobotWorld
from cyberknife_sim.scene import scene_from_dict

SMALL = {"plan": {"candidate_nodes": 80, "n_beams": 30}}


@pytest.fixture(scope="module")
def world():
    with RobotWorld(scene_from_dict(SMALL)) as w:
        yield w


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CKSIM_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CKSIM_PLAN_CACHE", raising=False)
    return tmp_path / "plans"


def _assert_same_plan(a, b):
    assert plan_to_dict(a) == plan_to_dict(b)  # floats compare exactly
    assert len(a.beams) == len(b.beams) and len(a.rejected) == len(b.rejected) > 0
    for x, y in zip(a.beams, b.beams, strict=True):
        assert x.node.index == y.node.index
        for u, v in ((x.source_room, y.source_room), (x.aim_room, y.aim_room),
                     (x.joints_deg, y.joints_deg), (x.node.joints_deg, y.node.joints_deg)):
            assert u.tobytes() == v.tobytes()
        assert x.mu == y.mu and x.collimator_mm == y.collimator_mm
    for (s1, r1), (s2, r2) in zip(a.rejected, b.rejected, strict=True):
        assert s1.tobytes() == s2.tobytes() and r1 == r2
    assert a.target_room.tobytes() == b.target_room.tobytes()


def _entries(cache_dir):
    return sorted(cache_dir.glob("*")) if cache_dir.is_dir() else []


def test_cache_hit_equals_a_fresh_generation(world, cache_dir, monkeypatch):
    scene = world.scene
    world.set_joints(np.zeros(6))
    rng_fresh = np.random.default_rng(3)
    fresh = generate_plan(scene, world, rng_fresh)
    q_after = world.joints_deg

    world.set_joints(np.zeros(6))
    miss = plan_for_scene(scene, world, np.random.default_rng(3))
    _assert_same_plan(fresh, miss)
    [entry] = _entries(cache_dir)
    assert entry.suffix == ".json"

    def no_generation(*args, **kwargs):
        raise AssertionError("a cache hit must not generate")

    monkeypatch.setattr(plan_cache, "generate_plan", no_generation)
    monkeypatch.setattr(plan_module, "generate_plan", no_generation)
    world.set_joints(np.zeros(6))
    rng_hit = np.random.default_rng(3)
    hit = plan_for_scene(scene, world, rng_hit)
    _assert_same_plan(fresh, hit)
    # the generator and the robot end where a fresh generation leaves them
    assert rng_hit.bit_generator.state == rng_fresh.bit_generator.state
    assert rng_hit.uniform() == rng_fresh.uniform()
    assert world.joints_deg.tobytes() == q_after.tobytes()
    # cache=False generates
    with pytest.raises(AssertionError, match="must not generate"):
        plan_for_scene(scene, world, np.random.default_rng(3), cache=False)


def _key(data, seed=0):
    scene = scene_from_dict(data)
    return plan_cache.plan_cache_key(scene, SimpleNamespace(scene=scene),
                                     np.random.default_rng(seed))


@pytest.mark.parametrize("change", [
    {"room": {"robot": {"base_position_mm": [0.0, 800.0, 1710.0]}}},
    {"room": {"robot": {"base_yaw_deg": 170.0}}},
    {"room": {"robot": {"collision_margin_mm": 25.0}}},
    {"room": {"couch": {"top_y_mm": 140.0}}},
    {"room": {"imaging": {"source_to_isocenter_mm": 2100.0}}},
    {"room": {"imaging": {"views": [{"name": "A", "source_angle_deg": 40.0},
                                    {"name": "B", "source_angle_deg": -45.0}]}}},
    {"plan": {"n_beams": 31}},
    {"plan": {"sad_mm": 810.0}},
    {"plan": {"total_mu": 12001.0}},
    {"patient": {"target_radius_mm": 12.0}},
])
def test_key_changes_with_every_setting_the_plan_depends_on(change):
    assert _key(change) != _key({})


@pytest.mark.parametrize("change", [
    {"room": {"robot": {"servo_lag_s": 0.05}}},
    {"room": {"robot": {"command_latency_s": 0.1}}},
    {"room": {"imaging": {"xray": {"kv": 100.0}}}},
    {"room": {"imaging": {"binning": 4}}},
    {"simulation": {"seed": 7}},
])
def test_key_ignores_settings_the_plan_does_not_read(change):
    assert _key(change) == _key({})


def test_key_follows_the_generator_state_and_the_code(monkeypatch):
    assert _key({}, seed=1) != _key({}, seed=2)
    rng = np.random.default_rng(1)
    scene = scene_from_dict({})
    before = plan_cache.plan_cache_key(scene, SimpleNamespace(scene=scene), rng)
    rng.uniform()
    assert plan_cache.plan_cache_key(scene, SimpleNamespace(scene=scene), rng) != before
    fingerprint = plan_cache._code_fingerprint()
    assert {"package", "plan_code_version", "sources", "robot_model"} <= set(fingerprint)
    current = plan_cache.plan_cache_key(scene, SimpleNamespace(scene=scene), rng)
    for name in ("robot_model", "sources", "plan_code_version", "package"):
        monkeypatch.setattr(plan_cache, "_code_fingerprint",
                            lambda name=name: {**fingerprint, name: "edited"})
        assert plan_cache.plan_cache_key(scene, SimpleNamespace(scene=scene), rng) != current


@pytest.mark.parametrize("corrupt", [
    lambda text: "{ not json",
    lambda text: text[: len(text) // 2],
    lambda text: "",
    lambda text: json.dumps({**json.loads(text), "key": "0" * 64}),
    lambda text: json.dumps({**json.loads(text), "plan": {"format": "cksim-plan"}}),
    lambda text: json.dumps({**json.loads(text), "rng_state_after": {"bit_generator": "X"}}),
    lambda text: json.dumps({**json.loads(text), "world_joints_rad": [0.0, 1.0]}),
])
def test_a_corrupt_entry_is_regenerated(world, cache_dir, corrupt):
    scene = world.scene
    first = plan_for_scene(scene, world, np.random.default_rng(5))
    [entry] = _entries(cache_dir)
    entry.write_text(corrupt(entry.read_text()))
    rng = np.random.default_rng(5)
    again = plan_for_scene(scene, world, rng)
    _assert_same_plan(first, again)
    rng_ref = np.random.default_rng(5)
    generate_plan(scene, world, rng_ref)
    assert rng.bit_generator.state == rng_ref.bit_generator.state
    # rewritten: a valid entry for the same key, no temporary files left
    assert _entries(cache_dir) == [entry]
    data = json.loads(entry.read_text())
    assert data["key"] == entry.stem and data["plan"]["format"] == "cksim-plan"


def test_an_unwritable_cache_folder_only_means_no_caching(world, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CKSIM_CACHE_DIR", str(blocker))
    plan = plan_for_scene(world.scene, world, np.random.default_rng(6))
    assert len(plan.beams) == world.scene.plan.n_beams
    assert not list(tmp_path.glob("**/*.tmp"))


def test_the_cache_can_be_turned_off(world, cache_dir, monkeypatch):
    monkeypatch.setenv("CKSIM_PLAN_CACHE", "0")
    plan_for_scene(world.scene, world, np.random.default_rng(7))
    assert _entries(cache_dir) == []
    monkeypatch.setenv("CKSIM_PLAN_CACHE", "1")
    plan_for_scene(world.scene, world, np.random.default_rng(7))
    assert len(_entries(cache_dir)) == 1


def test_cache_folder_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("CKSIM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if sys.platform.startswith("linux"):
        assert plan_cache.plan_cache_dir() == tmp_path / "cyberknife_sim" / "plans"
    monkeypatch.setenv("CKSIM_CACHE_DIR", str(tmp_path / "mine"))
    assert plan_cache.plan_cache_dir() == tmp_path / "mine" / "plans"


def test_generators_the_key_cannot_describe_are_not_cached(world, cache_dir):
    rng = np.random.Generator(np.random.MT19937(1))
    plan = plan_for_scene(world.scene, world, rng)
    assert len(plan.beams) == world.scene.plan.n_beams
    assert _entries(cache_dir) == []
