"""RobotWorld: static pointing at every node of the default plan, collision and
reachability rejection, headless rendering, GUI without a display."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.errors import CksimError
from cyberknife_sim.geometry import point_line_distance
from cyberknife_sim.plan import generate_plan
from cyberknife_sim.robot import PointingFailed, RobotWorld
from cyberknife_sim.scene import scene_from_dict

TARGET = np.zeros(3)


@pytest.fixture(scope="module")
def world():
    with RobotWorld(scene_from_dict({})) as w:
        yield w


@pytest.fixture(scope="module")
def plan(world):
    return generate_plan(world.scene, world, np.random.default_rng(0))


def test_static_pointing_at_every_node_of_the_default_plan(world, plan):
    assert 100 <= len(plan.beams) <= 150
    for beam in plan.beams:
        world.set_joints(beam.joints_deg)
        src, d = world.beam_axis()
        assert np.linalg.norm(src - beam.source_room) < 0.01
        assert abs(np.linalg.norm(beam.source_room - TARGET) - 800.0) < 0.01  # node at SAD
        assert point_line_distance(beam.aim_room, src, d) < 0.01
        assert d @ (beam.aim_room - src) > 0  # beam points toward the target, not away
        # PyBullet's own FK agrees with the numpy chain
        src_pb, d_pb = world.beam_axis_pybullet()
        assert point_line_distance(beam.aim_room, src_pb, d_pb) < 0.01
        assert np.all(beam.joints_deg >= world.lower_deg - 1e-9)
        assert np.all(beam.joints_deg <= world.upper_deg + 1e-9)
        assert world.collisions() == []
    # isocentric beams (aimed at the target) exist on every node
    iso = {b.node.index for b in plan.beams if np.allclose(b.aim_room, TARGET)}
    assert iso == {n.index for n in plan.nodes}


def test_solve_pointing_converges_for_an_overhead_node(world):
    q = world.solve_pointing([0.0, -800.0, 0.0], TARGET)
    src, d = world.beam_axis(q)
    assert np.linalg.norm(src - [0.0, -800.0, 0.0]) < 1e-3
    assert point_line_distance(TARGET, src, d) < 1e-3


def test_node_inside_the_couch_is_rejected(world):
    couch = world.scene.room.couch
    node = np.array([0.0, couch.top_y_mm + couch.size_mm[1] / 2, 500.0])  # inside the couch
    check = world.check_node(node, TARGET)
    assert not check.ok
    assert "couch" in check.bodies
    assert check.reason.startswith("collision:") and "couch" in check.reason


def test_node_where_the_linac_hits_an_imager_is_rejected(world):
    node = np.array([1050.0, -1050.0, 150.0])  # linac tail reaches the ceiling kV source A
    check = world.check_node(node, TARGET)
    assert not check.ok
    assert "source A" in check.bodies
    assert "linac with source A" in check.reason


def test_node_outside_the_workspace_is_rejected(world):
    check = world.check_node([0.0, -800.0, -3500.0], TARGET)
    assert not check.ok
    assert check.reason.startswith("unreachable")
    with pytest.raises(PointingFailed, match="unreachable"):
        world.solve_pointing([0.0, -800.0, -3500.0], TARGET)


def test_node_in_an_imaging_beam_is_rejected(world):
    # on beam A's central axis, above the patient: the linac would shadow detector A
    node = 800.0 * np.array([np.sin(np.radians(45)), -np.cos(np.radians(45)), 0.0])
    check = world.check_node(node, TARGET)
    assert not check.ok
    assert "beam A" in check.bodies


def test_bad_points_are_rejected_with_a_clear_message(world):
    with pytest.raises(ValueError, match="source_room"):
        world.check_node([0.0, np.nan, 0.0], TARGET)
    with pytest.raises(ValueError, match="coincide"):
        world.solve_pointing(TARGET, TARGET)
    with pytest.raises(ValueError, match="q_deg"):
        world.set_joints([0.0] * 5)


def test_render_frame_shows_the_robot_moving(world):
    world.set_joints(world.solve_pointing([0.0, -800.0, 0.0], TARGET))
    a = world.render_frame(160, 120)
    world.set_joints(world.solve_pointing([600.0, -400.0, 350.0], TARGET))
    b = world.render_frame(160, 120)
    assert a.dtype == np.uint8 and a.shape == (120, 160, 3)
    # the arm moved: a clear part of the image changed, the rest (room) did not
    changed = np.any(np.abs(a.astype(int) - b.astype(int)) > 30, axis=2).mean()
    assert 0.01 < changed < 0.6
    # the orange arm is in the picture (R high, B low)
    orange = (a[:, :, 0] > 150) & (a[:, :, 2] < 80)
    assert orange.mean() > 0.005


def test_gui_without_display_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(CksimError, match="no display"):
        RobotWorld(scene_from_dict({}), gui=True)


def test_cksim_view_without_display_is_one_line_exit_2(monkeypatch, capsys, repo_root):
    from cyberknife_sim.cli import main

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["view", str(repo_root / "scenes" / "default.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no display" in err[0] and "--out" in err[0]


def test_cksim_view_writes_an_animation_of_the_moving_robot(tmp_path, repo_root):
    from PIL import Image

    from cyberknife_sim.cli import main

    out = tmp_path / "track.gif"
    assert main(["view", str(repo_root / "scenes" / "default.yaml"), "--out", str(out),
                 "--seconds", "3", "--fps", "2", "--size", "96x72"]) == 0
    im = Image.open(out)
    frames = []
    for i in range(im.n_frames):
        im.seek(i)
        frames.append(np.asarray(im.convert("RGB"), dtype=int))
    assert len(frames) == 6
    assert np.abs(frames[0] - frames[-1]).max() > 30  # the robot moved between nodes
