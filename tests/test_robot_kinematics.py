"""Robot kinematics: numpy FK/Jacobian against PyBullet and finite differences; base frame;
trapezoidal traversal times."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.robot import (
    RobotWorld,
    load_chain,
    pointing_error,
    pointing_sigma_min,
    room_from_base,
    solve_pointing_ik,
    traversal_time_s,
)
from cyberknife_sim.robot._ik import pointing_step
from cyberknife_sim.scene import scene_from_dict


@pytest.fixture(scope="module")
def world():
    with RobotWorld(scene_from_dict({})) as w:
        yield w


def test_numpy_fk_matches_pybullet(world):
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.uniform(world.lower_deg, world.upper_deg)
        world.set_joints(q)
        p_np, d_np = world.beam_axis()
        p_pb, d_pb = world.beam_axis_pybullet()
        # PyBullet stores link poses in float64; agreement to 1 µm over a 3 m chain
        assert np.linalg.norm(p_np - p_pb) < 1e-3
        assert np.linalg.norm(d_np - d_pb) < 1e-6


def test_jacobian_matches_finite_differences(world):
    chain, base = world.chain, world.room_from_base_mm
    q = np.radians([10.0, 20.0, -30.0, 40.0, 50.0, -60.0])
    _, d, jv, jw = chain.pointing_jacobian(q, base)
    h = 1e-6
    for i in range(6):
        dq = np.zeros(6)
        dq[i] = h
        p1, d1, _, _ = chain.pointing_jacobian(q + dq, base)
        p0, d0, _, _ = chain.pointing_jacobian(q - dq, base)
        # central differences: truncation ~h^2, rounding ~1e-13 mm / 1e-6
        np.testing.assert_allclose((p1 - p0) / (2 * h), jv[:, i], atol=1e-4)
        # direction derivative = omega x d
        np.testing.assert_allclose((d1 - d0) / (2 * h), np.cross(jw[:, i], d), atol=1e-7)


def _numpy_reference_ik(chain, base, src, tgt, seed, *, tol=1e-4, max_iter=100):
    """solve_pointing_ik's iteration written with the numpy pointing_step (the reference)."""
    d = (tgt - src) / np.linalg.norm(tgt - src)
    lever = float(np.linalg.norm(tgt - src))
    q = np.clip(seed, chain.lower_rad, chain.upper_rad)
    rest, gain, it = q.copy(), 0.1, 0
    while it < max_iter:
        it += 1
        dq, ep, ea = pointing_step(chain, q, base, src, d, q_rest_rad=rest, lever_mm=lever,
                                   null_gain=gain)
        if ep < tol and ea < tol:
            break
        if ep + ea < 1.0:
            gain = 0.0
        q = np.clip(q + dq, chain.lower_rad, chain.upper_rad)
    return q, it


def test_compiled_ik_follows_the_numpy_reference_step_by_step(world):
    chain, base = world.chain, world.room_from_base_mm
    rng = np.random.default_rng(4)
    converged = 0
    for _ in range(12):
        u = rng.normal(size=3)
        u[1] = -abs(u[1])  # above the target
        src = 800.0 * u / np.linalg.norm(u)
        tgt = rng.uniform(-5.0, 5.0, 3)
        seed = np.radians(world.default_seed_deg(src))
        sol = solve_pointing_ik(chain, base, src, tgt, seed)
        q_ref, it_ref = _numpy_reference_ik(chain, base, src, tgt, seed)
        assert sol.iterations == it_ref
        np.testing.assert_allclose(sol.q_rad, q_ref, atol=1e-9, rtol=0)
        pe, ae = pointing_error(chain, sol.q_rad, base, src, tgt)
        assert sol.position_error_mm == pytest.approx(pe, abs=1e-9)
        assert sol.axis_error_mm == pytest.approx(ae, abs=1e-9)
        assert sol.sigma_min == pytest.approx(pointing_sigma_min(
            chain, sol.q_rad, base, lever_mm=float(np.linalg.norm(tgt - src))), rel=1e-9)
        converged += sol.converged
    assert converged >= 6  # the comparison covers converged solutions, not just failures


def test_chain_limits_are_the_documented_ones():
    ch = load_chain()
    np.testing.assert_allclose(np.degrees(ch.lower_rad), [-185, -50, -210, -350, -125, -350],
                               atol=5e-3)  # URDF radians have 4 decimals
    np.testing.assert_allclose(np.degrees(ch.upper_rad), [185, 85, 78, 350, 125, 350],
                               atol=5e-3)
    np.testing.assert_allclose(np.degrees(ch.velocity_rad_s), [105, 101, 107, 136, 129, 206],
                               atol=5e-3)


def test_reach_of_the_stretched_arm():
    """Zero pose = upper arm vertical, forearm forward: wrist centre 350+1200 mm in front of
    A1 at 675+1350+41 mm height; arm stretched forward: 350 + 1350 + 1200 mm (~2.9 m)."""
    ch = load_chain()
    joints, _ = ch.frames(np.zeros(6), np.eye(4))
    np.testing.assert_allclose(joints[4][:3, 3], [1550.0, 0.0, 2066.0], atol=1e-9)
    q = np.array([0.0, np.pi / 2, -np.pi / 2, 0, 0, 0])  # upper arm forward, forearm in line
    q[1] = np.arctan2(1200.0, 41.0)  # exactly align the forearm with the upper arm
    q[2] = -np.pi / 2 + np.arctan2(41.0, 1200.0)
    joints, _ = ch.frames(q, np.eye(4))
    shoulder = np.array([350.0, 0.0, 675.0])
    assert np.linalg.norm(joints[4][:3, 3] - shoulder) == pytest.approx(
        1350.0 + np.hypot(1200.0, 41.0), abs=1.0)


@pytest.mark.parametrize(("yaw", "forward"), [(0.0, (0, 0, 1)), (180.0, (0, 0, -1)),
                                              (90.0, (-1, 0, 0))])
def test_room_from_base_axes(yaw, forward):
    m = room_from_base((0.0, 800.0, 1700.0), yaw)
    np.testing.assert_allclose(m[:3, 2], [0.0, -1.0, 0.0], atol=1e-12)  # robot up = room -y
    np.testing.assert_allclose(m[:3, 0], forward, atol=1e-12)
    np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(m[:3, :3]) == pytest.approx(1.0)


def test_traversal_time_trapezoid_and_triangle():
    v = np.full(6, 100.0)
    a = np.full(6, 200.0)
    q0 = np.zeros(6)
    # triangle: d = 10 deg < v^2/a = 50 deg -> 2 sqrt(d/a)
    assert traversal_time_s(q0, [10, 0, 0, 0, 0, 0], velocity_deg_s=v,
                            accel_deg_s2=a) == pytest.approx(2 * np.sqrt(10 / 200))
    # trapezoid: d = 100 deg -> d/v + v/a; slowest joint wins
    assert traversal_time_s(q0, [10, -100, 0, 0, 0, 0], velocity_deg_s=v,
                            accel_deg_s2=a) == pytest.approx(1.5)
