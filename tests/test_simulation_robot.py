"""The loop's robot seam and the controller's performance shortcuts against exact kinematics."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.robot._chain import load_chain
from cyberknife_sim.robot._control import _source_axis
from cyberknife_sim.scene import load_scene
from cyberknife_sim.simulation._robot import build_plan_and_robot


def test_forward_kinematics_shortcut_equals_the_jacobian_routine():
    chain = load_chain()
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(-1.5, 1.5, 6)
        base = np.eye(4)
        base[:3, 3] = rng.normal(0.0, 500.0, 3)
        p, d, _, _ = chain.pointing_jacobian(q, base)
        p2, d2 = _source_axis(chain, q, base)
        np.testing.assert_array_equal(p, p2)
        np.testing.assert_array_equal(d, d2)


@pytest.fixture(scope="module")
def seam():
    scene = load_scene("scenes/default.yaml").model_copy()
    beams, robot = build_plan_and_robot(scene, rng=np.random.default_rng(0), beams=None)
    robot.controller.encoder_noise_deg = 0.0
    return beams, robot


def test_tracking_a_moving_target_converges_with_the_reused_jacobian(seam):
    """A target moving 2 mm along z and back (breathing-like): after the servo settles, the
    axis passes within the servo lag's following error of the commanded target; held still,
    the error goes to zero (the reused pseudo-inverse has the same fixed point)."""
    beams, robot = seam
    beam = beams[0]
    robot.goto(beam)
    dt = 1 / 26
    for k in range(600):
        robot.command(beam, np.zeros(3), np.zeros(3))
        robot.step(k * dt, dt)
    assert robot.following_error_mm < 1e-3
    errs = []
    for k in range(300):
        tgt = np.array([0.0, 0.0, 1.0 - np.cos(2 * np.pi * k * dt / 4.0)])
        robot.command(beam, tgt, np.array([0.0, 0.0, 0.2]))
        robot.step(k * dt, dt)
        errs.append(robot.following_error_mm)
    assert max(errs[100:]) < 0.5
    hold = np.array([0.3, -0.2, 0.8])
    for k in range(300):
        robot.command(beam, hold, np.array([0.0, 0.0, 0.2]))
        robot.step(k * dt, dt)
    src, d = robot.beam_axis()
    v = hold - src
    assert np.linalg.norm(v - (v @ d) * d) < 1e-3
