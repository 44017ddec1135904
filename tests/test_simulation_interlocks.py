"""Each interlock on its own: the limits hold exactly where the scene says."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cyberknife_sim.simulation import _interlocks as il


def test_hold_mask_sets_one_bit_per_reason():
    assert il.hold_mask(set()) == 0
    for k, name in enumerate(il.HOLD_REASONS):
        assert il.hold_mask({name}) == 1 << k
    assert il.hold_mask({"setup", "robot_following"}) == 1 | 1 << 7
    with pytest.raises(KeyError):
        il.hold_mask({"not_a_reason"})


def test_registration_failed_holds_only_a_rejected_pair():
    assert il.registration_failed(False) and not il.registration_failed(True)


@pytest.mark.parametrize("pose, held", [
    ([6.0, 8.0, 0.0, 0, 0, 0], False),          # |t| = 10 mm: at the limit, not beyond
    ([6.0, 8.0, 0.001, 0, 0, 0], True),         # just beyond 10 mm
    ([0, 0, 0, 0.0, -1.5, 0.0], False),         # 1.5 deg: at the limit
    ([0, 0, 0, 0.0, 0.0, -1.5001], True),       # the largest |component| counts
    ([5.0, 5.0, 5.0, 1.0, 1.0, 1.0], False),    # |t| = 8.66 mm, rotations within
])
def test_correction_limit_judges_translation_length_and_largest_rotation(pose, held):
    assert il.correction_limit(np.array(pose), max_translation_mm=10.0,
                               max_rotation_deg=1.5) is held


def test_model_residual_holds_a_bad_model():
    assert il.model_residual(False) and not il.model_residual(True)


def test_markers_lost_after_the_limit_plus_the_camera_latency():
    kw = {"camera_latency_s": 0.015, "limit_s": 0.3}
    assert not il.markers_lost(10.3149, 10.0, **kw)
    assert il.markers_lost(10.3151, 10.0, **kw)
    assert il.markers_lost(0.5, -math.inf, **kw)  # never a valid frame


@pytest.mark.parametrize("ext, held", [(5.0, False), (-5.9, False), (-6.1, True),
                                       (15.9, False), (16.1, True), (math.nan, False)])
def test_outside_model_range_allows_a_margin_of_the_range(ext, held):
    # range 0..10 mm, margin 0.6 of it = 6 mm each side
    assert il.outside_model_range(ext, (0.0, 10.0), margin_fraction=0.6) is held


def test_outside_model_range_needs_a_fitted_range():
    assert not il.outside_model_range(100.0, (math.inf, -math.inf), margin_fraction=0.6)
    # a single point: the range has no width, the margin is tiny
    assert il.outside_model_range(2.01, (2.0, 2.0), margin_fraction=0.6)


def test_patient_moved_measures_the_xz_shift_of_the_centroid():
    assert il.patient_moved_mm(np.array([3.0, 4.0]), np.zeros(2)) == pytest.approx(5.0)
    assert il.patient_moved_mm(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0


def test_robot_following_holds_only_at_the_node():
    assert il.robot_following(True, 1.2, limit_mm=1.0)
    assert not il.robot_following(True, 1.0, limit_mm=1.0)
    assert not il.robot_following(False, 50.0, limit_mm=1.0)  # travelling between nodes


def test_hold_too_long_stops_after_max_hold():
    assert not il.hold_too_long(100.0, None, max_hold_s=300.0)
    assert not il.hold_too_long(400.0, 100.0, max_hold_s=300.0)
    assert il.hold_too_long(400.001, 100.0, max_hold_s=300.0)


def test_the_parts_satisfy_the_loops_seams():
    """The classes the loop drives are the tested ones and fit the typed seams."""
    from cyberknife_sim.scene import load_scene
    from cyberknife_sim.simulation import (
        CorrelationSeam,
        ImagerSeam,
        PredictorSeam,
        TruthImager,
        make_imager,
    )
    from cyberknife_sim.tracking import RollingCorrelation, make_predictor
    from cyberknife_sim.tracking._correlation import MODELS
    from cyberknife_sim.tracking._predictors import METHODS

    for model in MODELS:
        assert isinstance(RollingCorrelation(model), CorrelationSeam)
    for method in METHODS:
        assert isinstance(make_predictor(method, horizon_s=0.115, dt_s=1 / 26), PredictorSeam)
    scene = load_scene("scenes/default.yaml")
    imager = make_imager("truth", scene, rng=np.random.default_rng(0))
    assert isinstance(imager, TruthImager) and isinstance(imager, ImagerSeam)
    assert not isinstance(object(), CorrelationSeam)
