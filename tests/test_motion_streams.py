"""Motion truth depends only on scene, seed and time: never on the run's length.

A short run must see exactly the motion of the first seconds of a long run (same scene, same
seed), so ``--duration-s`` cannot change what happens before it.
"""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.motion import BreathingPattern, CoughEvents, MotionTruth
from cyberknife_sim.scene import load_scene

SIGNALS = ("external_signal", "target_offset_room", "spine_pose", "marker_positions_room")


def _truth(scene, duration_s: float, seed: int) -> MotionTruth:
    return MotionTruth(scene.motion, duration_s=duration_s, rng=np.random.default_rng(seed),
                       marker_count=scene.tracking.markers.count)


def _assert_same_motion(short: MotionTruth, long: MotionTruth, t: np.ndarray) -> None:
    for name in SIGNALS:
        np.testing.assert_array_equal(getattr(short, name)(t), getattr(long, name)(t),
                                      err_msg=name)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_default_scene_short_run_sees_the_start_of_the_long_run(seed):
    scene = load_scene("scenes/default.yaml")
    short, long = _truth(scene, 60.0, seed), _truth(scene, 1800.0, seed)
    t = np.concatenate([np.linspace(-60.0, 0.0, 601), np.linspace(0.0, 60.0, 6001)])
    _assert_same_motion(short, long, t)
    # the breathing is irregular here, so the check has teeth
    assert np.std(long.pattern.periods_s) > 0.05 * np.mean(long.pattern.periods_s)


@pytest.mark.parametrize("seed", [0, 3])
def test_cough_scene_short_run_sees_the_start_of_the_long_run(seed):
    scene = load_scene("scenes/fault_cough.yaml")
    assert scene.motion.cough.rate_per_min > 0
    short, long = _truth(scene, 120.0, seed), _truth(scene, 600.0, seed)
    t = np.concatenate([np.linspace(-60.0, 0.0, 601), np.linspace(0.0, 120.0, 12001)])
    _assert_same_motion(short, long, t)
    first = long.coughs.start_s <= 120.0
    np.testing.assert_array_equal(short.coughs.start_s, long.coughs.start_s[first])
    np.testing.assert_array_equal(short.coughs.scale, long.coughs.scale[first])
    assert short.coughs.start_s.size > 0  # coughs do occur in the compared window


def test_breath_k_does_not_depend_on_the_number_of_breaths():
    kw = dict(period_s=4.0, shape_n=2, period_cv=0.25, amplitude_cv=0.3, lead_in_s=60.0)
    short = BreathingPattern.generate(duration_s=10.0, rng=np.random.default_rng(4), **kw)
    long = BreathingPattern.generate(duration_s=5000.0, rng=np.random.default_rng(4), **kw)
    k = short.amplitude.size
    assert long.amplitude.size > 10 * k
    np.testing.assert_array_equal(short.start_s, long.start_s[:k + 1])
    np.testing.assert_array_equal(short.amplitude, long.amplitude[:k])


def test_cough_times_are_a_prefix_of_a_longer_draw():
    short = CoughEvents.generate(duration_s=300.0, rate_per_min=3.0, event_s=1.0,
                                 rng=np.random.default_rng(9))
    long = CoughEvents.generate(duration_s=30000.0, rate_per_min=3.0, event_s=1.0,
                                rng=np.random.default_rng(9))
    n = short.start_s.size
    assert n > 0 and np.all(short.start_s <= 300.0)
    np.testing.assert_array_equal(short.start_s, long.start_s[:n])
    np.testing.assert_array_equal(short.scale, long.scale[:n])
    assert long.start_s[n] > 300.0
    assert np.all(np.diff(long.start_s) >= 0)


def test_breathing_and_cough_streams_are_independent():
    """Turning coughs on does not change the breathing (each process has its own stream)."""
    scene = load_scene("scenes/fault_cough.yaml")
    quiet = scene.motion.model_copy(update={
        "cough": scene.motion.cough.model_copy(update={"rate_per_min": 0.0})})
    a = MotionTruth(scene.motion, duration_s=300.0, rng=np.random.default_rng(2))
    b = MotionTruth(quiet, duration_s=300.0, rng=np.random.default_rng(2))
    t = np.linspace(-60.0, 360.0, 4201)
    np.testing.assert_array_equal(a.breathing(t, internal=True), b.breathing(t, internal=True))
