"""The run video's parts: the overlay's projection matches PyBullet's render, the overlay
draws the beam, frames encode to MP4 and GIF, and the video options are checked."""

from __future__ import annotations

import numpy as np
import pytest

import cyberknife_sim as cks
from cyberknife_sim.cli import main
from cyberknife_sim.simulation._video import (
    Camera,
    FrameState,
    camera_matrices,
    draw_overlay,
    encode_frames,
    project_room,
)

W, H = 640, 480


@pytest.fixture(scope="module")
def world():
    from cyberknife_sim.robot import RobotWorld

    with RobotWorld(cks.load_scene("scenes/default.yaml")) as w:
        yield w


def _segmentation(world, view, proj) -> np.ndarray:
    from cyberknife_sim.robot._pybullet import pb

    img = pb.getCameraImage(W, H, tuple(view.T.ravel()), tuple(proj.T.ravel()),
                            renderer=pb.ER_TINY_RENDERER, physicsClientId=world.client_id)
    return np.reshape(np.asarray(img[4]), (H, W)) & ((1 << 24) - 1)


@pytest.mark.parametrize("q_deg", [np.zeros(6), np.array([-20.0, 10.0, -15.0, 30.0, 40.0, 0.0])])
def test_projection_lands_on_the_rendered_robot(world, q_deg):
    """Each link origin of the robot, projected with the video's camera matrices, falls on a
    pixel PyBullet's own render labels as the robot (its segmentation mask)."""
    from cyberknife_sim.robot._pybullet import pb

    world.set_joints(q_deg)
    view, proj = camera_matrices(Camera(), W, H)
    seg = _segmentation(world, view, proj)
    c = world.client_id
    pts = np.array([pb.getLinkState(world.robot_id, j, computeForwardKinematics=True,
                                    physicsClientId=c)[0]
                    for j in range(pb.getNumJoints(world.robot_id, physicsClientId=c))]) * 1e3
    px = project_room(pts, view, proj, W, H)
    hits = [seg[int(r), int(col)] == world.robot_id for col, r in px
            if 0 <= r < H and 0 <= col < W]
    assert len(hits) == len(pts) and sum(hits) >= len(pts) - 1
    # a point far from every body projects onto background
    col, r = project_room([0.0, -2500.0, -2500.0], view, proj, W, H)
    assert seg[int(r), int(col)] not in (world.robot_id,)


def _state(beam_on: bool, holds=()) -> FrameState:
    src = np.array([0.0, -800.0, 0.0])
    return FrameState(time_s=12.0, duration_s=60.0, speedup=10.0, source_room=src,
                      direction_room=np.array([0.0, 1.0, 0.0]), target_room=np.zeros(3),
                      beam_on=beam_on, beam=3, n_beams=10, holds=tuple(holds),
                      error_mm=0.2, trail_uv_mm=np.array([[0.1, 0.0], [0.2, 0.1]]))


def _red(img) -> int:
    f = img.astype(int)
    m = (f[..., 0] > 215) & (f[..., 1] < 75) & (f[..., 2] < 75)
    m[:80] = False  # the text
    m[300:, 470:] = False  # the inset
    return int(m.sum())


def test_overlay_draws_the_beam_axis_while_the_beam_is_on():
    view, proj = camera_matrices(Camera(), W, H)
    blank = np.full((H, W, 3), 255, np.uint8)
    on = draw_overlay(blank, _state(True), view, proj)
    off = draw_overlay(blank, _state(False, holds=("registration_failed",)), view, proj)
    assert _red(on) > 150 and _red(off) == 0
    # the axis runs from the source's pixel toward the target's
    a, b = project_room(np.array([[0.0, -800.0, 0.0], [0.0, 0.0, 0.0]]), view, proj, W, H)
    mid = ((a + b) / 2).astype(int)
    patch = on[mid[1] - 3:mid[1] + 4, mid[0] - 3:mid[0] + 4].astype(int)
    assert ((patch[..., 0] > 215) & (patch[..., 1] < 75)).any()
    assert (blank == 255).all()  # the input is left alone


@pytest.mark.parametrize("fmt", ["mp4", "gif"])
def test_encode_frames(tmp_path, fmt):
    frames = [np.full((96, 128, 3), 40 * k, np.uint8) for k in range(5)]
    path = encode_frames(iter(frames) if fmt == "mp4" else frames, tmp_path / "v",
                         size=(128, 96), fps=12.5, fmt=fmt)
    assert path.suffix == f".{fmt}"
    if fmt == "mp4":
        import cv2

        cap = cv2.VideoCapture(str(path))
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.5)
        got = []
        while (r := cap.read())[0]:
            got.append(r[1])
        assert len(got) == 5
        assert [int(g.mean()) for g in got] == pytest.approx([0, 40, 80, 120, 160], abs=3)
    else:
        from PIL import Image

        im = Image.open(path)
        assert im.n_frames == 5 and im.info["duration"] == 80


@pytest.mark.parametrize("extra, needle", [
    (["--video-size", "640"], "--video-size must be WIDTHxHEIGHT"),
    (["--video-size", "641x480"], "--video-size: width and height must be even"),
    (["--video-size", "32x32"], "--video-size"),
    (["--video-fps", "0"], "--video-fps must be > 0"),
    (["--video-fps", "500"], "--video-fps must be <= 120"),
])
def test_video_options_are_checked_before_any_work(extra, needle, capsys, tmp_path):
    code = main(["run", "scenes/default.yaml", "--out", str(tmp_path / "o"), "--video", *extra])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not (tmp_path / "o").exists()
