"""Interlocks and fault handling: hold, recover, stop early, and say so in the outputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from test_simulation_loop import EXACT, STILL, make_beams, run, scene_with

from cyberknife_sim.scene import InterlockSettings
from cyberknife_sim.simulation import HOLD_REASONS, write_run


def holds_of(res, name):
    bit = 1 << HOLD_REASONS.index(name)
    return (res.record.hold_mask & bit) != 0


def test_blank_xray_holds_until_the_retry_is_accepted():
    sc = scene_with(motion=STILL, tracking={"mode": "spine", "imaging_interval_s": 20.0},
                    simulation={"blank_xray_at_s": [30.0]})
    res = run(sc, duration_s=60.0)
    imgs = [e for e in res.summary.events if e["kind"] == "image"]
    bad = [e for e in imgs if not e["accepted"]]
    assert len(bad) == 1 and "blank" in bad[0]["reason"]
    t_bad = bad[0]["time_s"]
    assert 30.0 <= t_bad < 30.0 + sc.simulation.time_step_s * 2 + 20.0
    held = holds_of(res, "registration_failed")
    t = res.record.time_s
    # held from the rejected pair's processing until the retry (retry_s later) is processed
    dt = sc.simulation.time_step_s
    assert held[(t > t_bad + EXACT.processing_s + dt)
                & (t < t_bad + EXACT.retry_s + EXACT.processing_s - dt)].all()
    assert not held[t > t_bad + EXACT.retry_s + EXACT.processing_s + dt].any()
    assert res.summary.beam_hold_s_by_reason["registration_failed"] == pytest.approx(
        EXACT.retry_s, abs=2 * dt)
    assert res.summary.images["rejected"] == 1
    # no beam during the hold
    assert (res.record.beam_on_s[held] == 0).all()


def test_correction_beyond_the_limit_holds_and_stops_the_run_and_outputs_say_why(tmp_path):
    shift = {"time_s": 15.0, "translation_mm": [0.0, 12.0, 0.0]}  # along y: markers miss it
    sc = scene_with(motion={**STILL, "spine": {**STILL["spine"], "shifts": [shift]}},
                    tracking={"mode": "spine", "imaging_interval_s": 20.0,
                              "interlocks": {"max_hold_s": 10.0}})
    res = run(sc, duration_s=120.0)
    s = res.summary
    assert s.stopped_early and "correction_limit" in s.stopped_early
    assert s.simulated_s < 60.0
    ev = [e for e in s.events if e.get("interlock") == "correction_limit"]
    assert ev and ev[0]["pose"][1] == pytest.approx(12.0, abs=1e-6)
    files = write_run(tmp_path, res, plots=False)
    saved = json.loads(files["summary"].read_text())
    assert saved["stopped_early"] == s.stopped_early
    with open(files["timeseries"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == res.record.n_steps
    last = rows[-1]
    assert "correction_limit" in last["holds"] and last["beam_on"] == "0"


def test_cough_holds_the_beam_while_the_signal_is_outside_the_model():
    sc = scene_with(motion={"cough": {"rate_per_min": 3.0, "amplitude_mm": 8.0,
                                      "duration_s": 1.0}},
                    tracking={"markers": {"noise_mm": 0.05}})
    res = run(sc, duration_s=120.0, beams=make_beams(n=40))
    rec = res.record
    held = holds_of(res, "outside_model_range")
    # rebuild the model's external range at each step from the image events
    pts = [(e["time_s"] + EXACT.processing_s, e["external_mm"])
           for e in res.summary.events if e["kind"] == "image" and "external_mm" in e]
    n_pts = sc.tracking.correlation.n_points
    dt = sc.simulation.time_step_s
    outside = np.zeros(rec.n_steps, dtype=bool)
    for i, t in enumerate(rec.time_s):
        window = [x for ta, x in pts if ta <= t + 1e-9][-n_pts:]
        if len(window) < 2 or min(abs(t - ta) for ta, _ in pts) < 2 * dt:
            continue
        lo, hi = min(window), max(window)
        m = InterlockSettings().model_range_margin * (hi - lo)
        x = rec.ext_predicted[i]
        outside[i] = np.isfinite(x) and not lo - m <= x <= hi + m
    assert outside.sum() > 10  # the coughs did leave the range
    assert held[outside].all()
    assert (rec.beam_on_s[outside] == 0).all()
    assert res.summary.beam_hold_s_by_reason["outside_model_range"] > 0


def test_dropped_marker_frames_hold_only_when_the_signal_is_lost():
    sc = scene_with(tracking={"markers": {"dropout_probability": 0.8}})
    res = run(sc, duration_s=60.0)
    held = holds_of(res, "markers_lost")
    assert held.any() and not held.all()
    on = res.record.beam_on_s > 0
    assert on.sum() > 100
    e = np.linalg.norm(res.record.error_vec[on], axis=1)
    # bridged frames stay usable; at 80 % dropout the p95 depends on which frames the model's
    # points drew: 0.67-1.65 mm over seeds 0-7 (this is seed 0, 1.65 mm), so the bound is 2 mm
    assert np.percentile(e, 95) < 2.0


def test_the_predictor_guard_reports_its_actions():
    """Coughs make the chest jump: the guard holds the jumps until confirmed, and the run
    reports each action as an event and the totals in the summary."""
    sc = scene_with(motion={"cough": {"rate_per_min": 3.0, "amplitude_mm": 8.0,
                                      "duration_s": 1.0}},
                    tracking={"markers": {"noise_mm": 0.05}})
    res = run(sc, duration_s=120.0, beams=make_beams(n=40))
    g = res.summary.predictor_guard
    frames = int(np.floor(120.0 * sc.tracking.markers.rate_hz))
    assert g["guarded"] and abs(g["samples"] - frames) <= 30  # one per frame received
    ev = [e for e in res.summary.events if e["kind"] == "predictor_guard"]
    gated = sum("sample gated" in e["action"] for e in ev)
    assert 0 < gated <= g["gated_samples"]
    assert sum("step accepted" in e["action"] for e in ev) <= g["steps_accepted"]
    on = sum("fallback to no prediction" in e["action"] for e in ev)
    off = sum("prediction resumed" in e["action"] for e in ev)
    assert on - off in (0, 1) and (on - off == 1) == g["in_fallback"]



def test_a_robot_that_cannot_reach_its_node_stops_the_run_and_says_so():
    """The beam is off while the robot travels to a node (not a hold; counted as
    robot_travel_s: 1 s per node with this robot); a robot that never arrives stops the run
    after max_hold_s with a reason naming the beam, instead of leaving the beam off silently."""
    from test_simulation_loop import LagRobot

    sc = scene_with(tracking={"interlocks": {"max_hold_s": 20.0}})
    ok = run(sc, duration_s=40.0, robot=LagRobot(travel_s=1.0))
    nodes = ok.summary.beams_completed + 1  # the first node, then one per completed beam
    dt = sc.simulation.time_step_s
    assert ok.summary.robot_travel_s == pytest.approx(nodes * 1.0, abs=2 * dt * nodes)
    stuck = run(sc, duration_s=60.0, robot=LagRobot(travel_s=1e6))
    reason = stuck.summary.stopped_early
    assert reason.startswith("the robot did not reach beam 0's node within 20 s")
    assert stuck.summary.beam_on_s == 0.0
    assert 20.0 <= stuck.summary.robot_travel_s <= 20.0 + 2 * dt
    assert any(e["kind"] == "stopped" for e in stuck.summary.events)
