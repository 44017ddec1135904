"""Motion truth composition (spine pose, target, chest) and the marker camera."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.geometry import matrix_from_pose
from cyberknife_sim.motion import MarkerCamera, MotionTruth, marker_signal_mm, spine_pose
from cyberknife_sim.scene import MarkerSettings, load_scene, scene_from_dict


def _truth(motion: dict, seed: int = 0, duration_s: float = 600.0, markers: int = 3):
    scene = scene_from_dict({"motion": motion, "simulation": {"duration_s": duration_s},
                             "tracking": {"markers": {"count": markers}}})
    return MotionTruth.from_scene(scene, np.random.default_rng(seed))


def test_pose_zero_is_identity_and_target_is_unmoved():
    truth = _truth({"breathing": {"enabled": False},
                    "spine": {"drift_mm_per_min": [0, 0, 0], "drift_deg_per_min": [0, 0, 0]}})
    t = np.linspace(0, 600, 7)
    np.testing.assert_array_equal(truth.room_from_anatomy(t), np.tile(np.eye(4), (7, 1, 1)))
    np.testing.assert_allclose(truth.target_room(t, [1.0, 2.0, 3.0]),
                               np.tile([1.0, 2.0, 3.0], (7, 1)), atol=0)


def test_spine_drift_shift_and_rotation_compose_analytically():
    motion = {"breathing": {"enabled": False},
              "spine": {"drift_mm_per_min": [0.6, 0.0, -1.2], "drift_deg_per_min": [0, 0, 0.5],
                        "setup_error_mm": [1.0, 0.0, 0.0],
                        "shifts": [{"time_s": 120, "translation_mm": [0, 2.0, 0],
                                    "rotation_deg": [0.3, 0, 0]}]}}
    truth = _truth(motion)
    t = np.array([0.0, 60.0, 119.9, 120.0, 300.0])
    pose = truth.spine_pose(t)
    np.testing.assert_allclose(pose[1], [1.6, 0.0, -1.2, 0.0, 0.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(pose[4], [1.0 + 3.0, 2.0, -6.0, 0.3, 0.0, 2.5], atol=1e-12)
    assert pose[2, 1] == 0.0 and pose[3, 1] == 2.0  # step exactly at the shift time
    target = np.array([10.0, -20.0, 30.0])
    expected = matrix_from_pose(pose[4]) @ np.append(target, 1.0)
    np.testing.assert_allclose(truth.target_room(t, target)[4], expected[:3], atol=1e-12)
    np.testing.assert_allclose(spine_pose(t, truth.settings.spine), pose)


def test_target_breathing_offset_direction_amplitude_and_hysteresis():
    motion = {"breathing": {"period_s": 4.0, "amplitude_mm": 10.0, "target_amplitude_mm": 6.0,
                            "direction": [0, 0, -2.0], "period_cv": 0, "amplitude_cv": 0,
                            "hysteresis_deg": 45.0},
              "spine": {"drift_mm_per_min": [0, 0, 0], "drift_deg_per_min": [0, 0, 0]}}
    truth = _truth(motion)
    t = np.linspace(100, 140, 40001)
    off = truth.target_offset_room(t)
    np.testing.assert_allclose(off[:, :2], 0.0, atol=1e-12)
    assert off[:, 2].min() == pytest.approx(-6.0, abs=1e-4)  # inhale moves along direction
    ext = truth.external_signal(t)
    assert ext.max() == pytest.approx(10.0, abs=1e-4) and ext.min() == pytest.approx(0, abs=1e-6)
    # internal leads external by 45 deg = 0.5 s
    np.testing.assert_allclose(-off[:-500, 2] / 6.0, ext[500:] / 10.0, atol=1e-9)
    # target_moves_with_spine false: spine drift does not move the target
    moved = _truth({**motion, "spine": {"drift_mm_per_min": [5, 0, 0]},
                    "target_moves_with_spine": False})
    np.testing.assert_allclose(moved.target_room(t[:3], np.zeros(3)), off[:3], atol=1e-12)


def test_truth_is_deterministic_and_independent_of_call_order():
    scene = load_scene("scenes/default.yaml")
    a = MotionTruth.from_scene(scene, np.random.default_rng(5))
    b = MotionTruth.from_scene(scene, np.random.default_rng(5))
    t = np.linspace(0, 1800, 1001)
    b.external_signal(t[::-1])
    np.testing.assert_array_equal(a.target_offset_room(t), b.target_offset_room(t))
    np.testing.assert_array_equal(a.marker_positions_room(t), b.marker_positions_room(t))
    single = np.array([b.target_offset_room(x)[0] for x in t[:20]])
    np.testing.assert_array_equal(single, a.target_offset_room(t[:20]))


def test_baseline_drift_and_coughs_reach_the_signals():
    truth = _truth({"breathing": {"enabled": False, "baseline_drift_mm_per_min": 1.5},
                    "cough": {"rate_per_min": 3.0, "amplitude_mm": 8.0, "duration_s": 1.0}},
                   duration_s=1200.0)
    t = np.arange(0, 1200, 0.05)
    ext = truth.external_signal(t)
    cough_free = truth.coughs(t) == 0
    np.testing.assert_allclose(ext[cough_free], 1.5 * t[cough_free] / 60.0, atol=1e-12)
    off = np.linalg.norm(truth.target_offset_room(t), axis=1)
    np.testing.assert_allclose(off, 8.0 * truth.coughs(t), atol=1e-12)
    assert off.max() > 0.5 * 8.0  # each event's scale is 0.5..1.5
    assert truth.coughs.start_s.size == pytest.approx(60, abs=25)


def test_marker_camera_noise_dropout_latency_and_determinism():
    truth = _truth({"breathing": {"period_cv": 0.2}}, duration_s=3000.0)
    settings = MarkerSettings(rate_hz=26.0, noise_mm=0.1, dropout_probability=0.05,
                              latency_s=0.04)
    cam = MarkerCamera(settings, truth, np.random.default_rng(2))
    f = cam.frames(0.0, 2000.0)
    assert f.time_s.size == 2000 * 26 + 1
    np.testing.assert_allclose(np.diff(f.time_s), 1 / 26.0, rtol=1e-9)
    np.testing.assert_allclose(f.available_s - f.time_s, 0.04)
    assert np.mean(~f.valid) == pytest.approx(0.05, abs=0.005)
    assert np.all(np.isnan(f.positions_room[~f.valid]))
    err = f.positions_room[f.valid] - truth.marker_positions_room(f.time_s[f.valid])
    assert np.std(err) == pytest.approx(0.1, rel=0.02)
    assert abs(np.mean(err)) < 0.002
    # a frame does not depend on which frames were asked for before
    cam2 = MarkerCamera(settings, truth, np.random.default_rng(2))
    late = cam2.frames(1000.0, 1001.0)
    k = late.index
    np.testing.assert_array_equal(late.positions_room, f.positions_room[k])
    # latest(): the newest frame exposed no later than now - latency
    last = cam2.latest(10.0)
    assert last.time_s[0] <= 10.0 - 0.04 < last.time_s[0] + 1 / 26.0


def test_marker_signal_follows_the_chest():
    truth = _truth({"breathing": {"amplitude_mm": 10.0},
                    "spine": {"drift_mm_per_min": [0, 0, 0], "drift_deg_per_min": [0, 0, 0]}},
                   markers=4)
    t = np.linspace(0, 60, 601)
    pos = truth.marker_positions_room(t)
    ref = truth.marker_positions_room(np.array([0.0]))[0]
    sig = marker_signal_mm(pos, ref)
    gain = truth.marker_gain.mean()
    np.testing.assert_allclose(sig, gain * (truth.external_signal(t)
                                            - truth.external_signal(0.0)), atol=1e-9)
