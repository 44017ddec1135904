"""Benchmark of one correction-loop step: marker frame in → robot command out.

Path timed (what runs every 38 ms in the loop): marker positions → 1-D external signal →
latency predictor (RLS, 115 ms horizon) → correlation model (the scene's, 12 points,
drift term) → commanded target = spine correction + breathing offset → robot command
(translation + rotation compensation) → one controller step (differential-IK refinement
of the joint command and the servo update) → actual beam axis. Goal ≤ 1 ms.

Run: ``.venv/bin/python -m pytest benchmarks/bench_loop.py --benchmark-only``
"""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.geometry import matrix_from_pose
from cyberknife_sim.motion import marker_signal_mm
from cyberknife_sim.scene import load_scene
from cyberknife_sim.simulation import DriftCorrelation
from cyberknife_sim.simulation._robot import build_plan_and_robot
from cyberknife_sim.tracking import make_predictor


@pytest.fixture(scope="module")
def parts():
    scene = load_scene("scenes/default.yaml")
    beams, robot = build_plan_and_robot(scene, rng=np.random.default_rng(0))
    tr = scene.tracking
    pred = make_predictor(tr.predictor.method, horizon_s=tr.predictor.latency_s,
                          dt_s=1.0 / tr.markers.rate_hz)
    corr = DriftCorrelation(tr.correlation.model, n_points=tr.correlation.n_points)
    slope = np.array([0.0, -0.06, -0.19])  # mm of target per mm of chest
    for k in range(12):
        e = 10.0 * (k % 6) / 5.0
        corr.add(45.0 * k, e, slope * e, 1.0 if k % 2 else -1.0)
    ref = np.array([[0.0, -120.0, -60.0], [-40.0, -120.0, -20.0], [40.0, -120.0, 20.0]])
    spine = matrix_from_pose([0.2, -0.1, 0.3, 0.0, 0.0, 0.1])
    rotvec = np.array([0.0, 0.0, 0.1])
    # bring the robot onto the first beam's node
    robot.goto(beams[0])
    for _ in range(400):
        robot.command(beams[0], spine[:3, 3], rotvec)
        robot.step(0.0, 1 / 26)
    return beams[0], robot, pred, corr, ref, spine, rotvec, slope


def test_bench_correction_step(benchmark, parts):
    beam, robot, pred, corr, ref, spine, rotvec, slope = parts
    rng = np.random.default_rng(1)
    frames = ref + np.array([0.0, -1.0, 0.0]) * rng.uniform(0, 10, (64, 1, 1)) \
        + rng.normal(0, 0.1, (64, 3, 3))
    state = {"k": 0, "last": None}

    def step():
        k = state["k"] = (state["k"] + 1) % 64
        s = float(marker_signal_mm(frames[k], ref))
        s_hat = float(pred.update(s)[0])
        f = corr.predict_one(s_hat, 1.0, corr.t_ref_s)
        c = spine[:3, :3] @ beam.aim_room + spine[:3, 3] + f
        robot.command(beam, c, rotvec)
        robot.step(0.0, 1 / 26)
        state["last"] = (s_hat, c, robot.beam_axis())
        return c

    c = benchmark(step)
    s_hat, c_last, (src, d) = state["last"]
    # the command is the spine correction plus the model's offset at the predicted signal
    np.testing.assert_allclose(c - spine[:3, 3] - spine[:3, :3] @ beam.aim_room,
                               corr.predict_one(s_hat, 1.0, corr.t_ref_s), atol=1e-12)
    np.testing.assert_allclose(corr.predict_one(s_hat, 1.0, corr.t_ref_s), slope * s_hat,
                               atol=1e-6)
    # the beam follows the command closely (servo lag on a slowly varying target)
    v = c_last - src
    assert np.linalg.norm(v - (v @ d) * d) < 2.0
