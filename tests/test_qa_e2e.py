"""The simulated ball-cube E2E test (``cksim qa e2e``): one short static run through the CLI,
checked against the run's own record, and the CLI's error handling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cyberknife_sim.cli import main


@pytest.mark.parametrize("argv, match", [
    (["qa", "e2e", "--repeats", "0", "--out", "{tmp}"], "--repeats must be 1..100"),
    (["qa", "e2e", "--seed", "-3", "--out", "{tmp}"], "--seed must be"),
    (["qa", "e2e", "--mu", "nan", "--out", "{tmp}"], "--mu must be"),
    (["qa", "e2e", "--beams", "0", "--out", "{tmp}"], "--beams must be"),
    (["qa", "e2e", "--live-images", "perfect", "--out", "{tmp}"], "invalid choice"),
    (["qa", "e2e"], "required: --out"),
    (["qa"], "give a test"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv, match, tmp_path, capsys):
    try:
        code = main([a.replace("{tmp}", str(tmp_path / "out")) for a in argv])
    except SystemExit as exc:  # argparse's own errors exit from the parser
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert match in err and err.count("\n") == 1 and "Traceback" not in err


def test_out_in_the_way_is_an_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["qa", "e2e", "--out", str(blocker)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.slow
def test_static_e2e_run_agrees_with_its_own_record(tmp_path, capsys):
    """A short static E2E (12 beams, 600 MU, realistic live images, seeded set-up offset)
    through ``cksim qa e2e``.

    The film errors must equal, within 0.3 mm per axis, where the run's actual beam axes
    meet (MU-weighted least squares, in the phantom's CT frame). Reasoning: a common offset
    ``d`` of all axes translates the whole dose, so the 50 % isodose centroid moves by ``d``;
    what differs is (a) each beam's weight in the dose at the ball (MU x TPR x inverse square:
    up to ~30 % apart between beams) against the pure MU weight of the axis point, which
    moves the centroid by a fraction of the spread of the per-beam offsets (~0.1-0.3 mm
    here, the run's RMS targeting error is ~0.25 mm), (b) the delivered-dose accumulation
    keeps each beam's depth and tilt (0.01 mm for the ~1 mm, ~0.5 deg set-up corrections),
    (c) the contour's sub-pixel interpolation (< 0.05 mm, test_qa_film). And the total must be
    the length of ``(dx, dy, mean dz)`` and pass the 0.95 mm limit, as a working chain does.
    """
    out = tmp_path / "e2e"
    code = main(["qa", "e2e", "--out", str(out), "--seed", "3", "--beams", "12",
                 "--mu", "600"])
    printed = capsys.readouterr().out
    doc = json.loads((out / "qa_e2e.json").read_text())
    run = doc["runs"][0]
    film_vec = np.array(run["error_ct_mm"])
    axis_vec = np.array(run["axis_point_error_ct_mm"])
    np.testing.assert_allclose(film_vec, axis_vec, atol=0.3)
    cor = np.array(run["films"]["coronal"]["error_mm"])
    sag = np.array(run["films"]["sagittal"]["error_mm"])
    np.testing.assert_allclose(film_vec, [cor[0], sag[0], 0.5 * (cor[1] + sag[1])], atol=1e-4)
    assert run["total_targeting_error_mm"] == pytest.approx(np.linalg.norm(film_vec), abs=1e-3)
    assert np.linalg.norm(run["setup_offset"]["translation_mm"]) > 0.5  # a real set-up offset
    assert code == 0 and run["passed"] and "PASS" in printed and "total targeting error" in printed
    for name in ("coronal", "sagittal"):
        img = np.load(out / f"film_{name}.npy")
        assert img.shape == (121, 121) and img.max() > 0
        assert (out / f"film_{name}.png").stat().st_size > 1000
    assert (out / "ball_cube_ct.nii.gz").exists()


def test_e2e_scene_sets_the_static_and_motion_tests(tmp_path):
    """The E2E scene: ball-cube CT and centre as the target, the set-up offset, no drift;
    static = no breathing + spine tracking, motion = breathing + spine_breathing."""
    from cyberknife_sim.qa import BallCube, Film, e2e_scene

    class _Vol:  # e2e_scene reads only the ball's centre and radius
        pass

    c = np.array([-0.6, -23.7, 18.3])
    ball = BallCube(_Vol(), c, 15.875, 63.5, (Film("coronal", c, np.zeros(1), np.zeros(1)),
                                              Film("sagittal", c, np.zeros(1), np.zeros(1))))
    ct = tmp_path / "ct.nii.gz"
    ct.write_bytes(b"")
    static = e2e_scene(ct, ball, setup_mm=(1.0, -2.0, 0.5), setup_deg=(0.2, 0.0, -0.3),
                       n_beams=20, total_mu=900.0, seed=4)
    assert static.tracking.mode == "spine" and not static.motion.breathing.enabled
    assert static.patient.ct == ct.resolve() and static.patient.phantom is None
    np.testing.assert_allclose(static.patient.target_ct_mm, c)
    assert static.patient.target_radius_mm == pytest.approx(15.875)
    np.testing.assert_allclose(static.motion.spine.setup_error_mm, (1.0, -2.0, 0.5))
    np.testing.assert_allclose(static.motion.spine.setup_error_deg, (0.2, 0.0, -0.3))
    np.testing.assert_allclose(static.motion.spine.drift_mm_per_min, 0.0)
    assert static.plan.n_beams == 20 and static.plan.total_mu == 900.0
    assert static.simulation.seed == 4
    motion = e2e_scene(ct, ball, motion=True, live_images="ideal")
    assert motion.tracking.mode == "spine_breathing" and motion.motion.breathing.enabled
    assert motion.room.imaging.live_images == "ideal"


def test_axis_intersection_recovers_the_common_point():
    """Axes through a known point (static pose, no breathing): their MU-weighted
    least-squares meeting point is that point (1e-9 mm), whatever the beam directions."""
    from types import SimpleNamespace

    from cyberknife_sim.qa import axis_intersection_ct

    rng = np.random.default_rng(5)
    n = 40
    target_ct = np.array([10.0, -20.0, 30.0])
    meet_room = np.array([0.4, -0.3, 0.25])  # where the axes cross, room (= CT - target)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    rec = SimpleNamespace(
        beam_on_s=rng.uniform(0.0, 1.0, n), beam_index=np.arange(n) % 7,
        beam_source=meet_room - 800.0 * d, beam_direction=d,
        room_from_anatomy=np.repeat(np.eye(4)[None], n, axis=0), target_offset=np.zeros((n, 3)))
    p = axis_intersection_ct(SimpleNamespace(record=rec), target_ct)
    np.testing.assert_allclose(p, target_ct + meet_room, atol=1e-9)
