"""The closed loop against analytic truth, with ideal registration and a kinematic robot.

The robot here is a test double: a first-order lag (time constant ``tau_s``) on the linac
source point and beam direction, arriving at a node ``travel_s`` after ``goto``; with
``tau_s = 0`` it follows every command exactly. The PyBullet robot is exercised by the
end-to-end tests.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from cyberknife_sim.plan import Beam, Node
from cyberknife_sim.scene import ImagingScheduleSettings, load_scene, scene_from_dict
from cyberknife_sim.simulation import RobotSeam, TruthImager, simulate

SCENE = "scenes/default.yaml"


class LagRobot:
    command_latency_s = 0.0

    def __init__(self, tau_s: float = 0.0, travel_s: float = 1.0):
        self.tau_s, self.travel_s = tau_s, travel_s
        self.src = np.array([0.0, -800.0, 0.0])
        self.d = np.array([0.0, 1.0, 0.0])
        self.cmd_src, self.cmd_d = self.src.copy(), self.d.copy()
        self.arrive_t = 0.0
        self.t = 0.0
        self.following_error_mm = 0.0

    @property
    def arrived(self) -> bool:
        return self.t >= self.arrive_t - 1e-9

    def goto(self, beam):
        self.arrive_t = self.t + self.travel_s
        self.src = np.array(beam.source_room, float)
        self.d = np.array(beam.direction_room, float)

    def command(self, beam, target_room, rotation_deg):
        d = Rotation.from_rotvec(rotation_deg, degrees=True).apply(beam.direction_room)
        self.cmd_d = d
        self.cmd_src = np.asarray(target_room) - d * np.linalg.norm(beam.source_room
                                                                     - beam.aim_room)

    def step(self, t_s, dt_s):
        self.t = t_s + dt_s
        a = 1.0 if self.tau_s == 0 else 1.0 - np.exp(-dt_s / self.tau_s)
        self.src = self.src + a * (self.cmd_src - self.src)
        d = self.d + a * (self.cmd_d - self.d)
        self.d = d / np.linalg.norm(d)
        self.following_error_mm = float(np.linalg.norm(self.cmd_src - self.src))

    def beam_axis(self):
        return self.src.copy(), self.d.copy()

    def joints_deg(self):
        return None


def test_the_test_robot_satisfies_the_robot_seam():
    assert isinstance(LagRobot(), RobotSeam)


def make_beams(n: int = 12, mu: float = 50.0) -> list[Beam]:
    out = []
    for k in range(n):
        az = np.radians(-60 + 120 * k / max(n - 1, 1))
        d = np.array([np.sin(az) * 0.6, 0.8, np.cos(az) * 0.6])
        d /= np.linalg.norm(d)
        out.append(loop_beam(k, -800.0 * d, np.zeros(3), mu))
    return out


def loop_beam(node, source_room, aim_room, mu):
    """A beam from ``source_room`` through ``aim_room`` (mm) with ``mu`` MU."""
    return Beam(Node(node, np.asarray(source_room, float)), np.asarray(aim_room, float),
                float(mu), 20.0, 1000.0)


def scene_with(**sections):
    """The default scene with nested keys replaced (validated like a scene file)."""
    with open(SCENE, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    _merge(data, sections)
    return scene_from_dict(data)


def _merge(base: dict, upd: dict) -> None:
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


STILL = {"breathing": {"enabled": False},
         "spine": {"drift_mm_per_min": [0.0, 0.0, 0.0], "drift_deg_per_min": [0.0, 0.0, 0.0]}}
EXACT = ImagingScheduleSettings(target_localization_sigma_mm=0.0)
"""The scene's imaging schedule with an exact soft-tissue sensor model (the tests' default)."""


def with_settings(scene, section: str, **values):
    """``scene`` with keys of ``tracking.<section>`` replaced (validated like a file)."""
    data = scene.model_dump(mode="json")
    data["tracking"][section].update(values)
    return scene_from_dict(data)


def run(scene, *, duration_s=60.0, robot=None, beams=None, sigma_mm=0.0, seed=0):
    scene = with_settings(scene, "imaging", target_localization_sigma_mm=sigma_mm)
    return simulate(scene, seed=seed, duration_s=duration_s, imaging="truth",
                    robot=robot or LagRobot(), beams=beams or make_beams())


def beam_on_errors(res):
    rec = res.record
    on = rec.beam_on_s > 0
    return rec.time_s[on], np.linalg.norm(rec.error_vec[on], axis=1)


@pytest.mark.parametrize("mode", ["none", "spine", "spine_breathing"])
def test_no_motion_perfect_robot_gives_zero_error(mode):
    sc = scene_with(motion=STILL, tracking={"mode": mode, "markers": {"noise_mm": 0.0}})
    res = run(sc)
    _, e = beam_on_errors(res)
    assert e.size > 100
    assert e.max() < 1e-9


class NoisyImager(TruthImager):
    """Ideal registration plus known Gaussian pose noise (mm, deg): a registration error."""

    def __init__(self, *, sigma_mm=0.3, sigma_deg=0.2, seed=5, **kwargs):
        super().__init__(rng=np.random.default_rng(seed), **kwargs)
        self.sigma_mm, self.sigma_deg = sigma_mm, sigma_deg
        self.noise_rng = np.random.default_rng(seed + 1)

    def _register(self, time_s, pose_imaged, *, blank, rng):
        reg, tgt = super()._register(time_s, pose_imaged, blank=blank, rng=rng)
        if reg.accepted:
            pose = reg.pose + np.concatenate([self.noise_rng.normal(0, self.sigma_mm, 3),
                                              self.noise_rng.normal(0, self.sigma_deg, 3)])
            reg, tgt = dataclasses.replace(reg, pose=pose), pose[:3].copy()
        return reg, tgt


def off_center_beams(n=12, mu=50.0):
    """Beams aimed 15 mm off the target center: rotation errors act on a lever."""
    return [loop_beam(b.node.index, b.source_room + [15.0, 0, 0], [15.0, 0.0, 0.0], b.mu)
            for b in make_beams(n, mu)]


@pytest.mark.parametrize("mode", ["spine_breathing", "spine", "none"])
@pytest.mark.parametrize("spinal", [True, False])
def test_decomposition_sums_to_the_error_vector(mode, spinal):
    sc = scene_with(tracking={"mode": mode},
                    motion={"breathing_moves_spine": spinal,
                            "spine": {"drift_deg_per_min": [0.5, 0.0, 1.0]}})
    res = simulate(sc, seed=0, duration_s=90.0, robot=LagRobot(0.05),
                   beams=off_center_beams(),
                   imaging=NoisyImager(breathing_moves_spine=spinal))
    rec = res.record
    on = rec.beam_on_s > 0
    assert on.sum() > 100
    total = sum(rec.components.values())
    np.testing.assert_allclose(total[on], rec.error_vec[on], atol=1e-9)
    # every stage contributes (no prediction without a model; a fixed command in "none"
    # mode leaves the lag robot at rest on the node)
    for name, v in rec.components.items():
        big = np.linalg.norm(v[on], axis=1).max()
        if name == "prediction" and mode != "spine_breathing":
            assert big == 0.0
        elif not (name == "robot" and mode == "none"):
            assert big > 1e-3, name


@pytest.mark.parametrize("mode", ["spine_breathing", "spine"])
def test_exact_registration_books_nothing_to_registration(mode):
    sc = scene_with(tracking={"mode": mode})
    res = run(sc, duration_s=90.0, robot=LagRobot(tau_s=0.05), beams=off_center_beams())
    rec = res.record
    on = rec.beam_on_s > 0
    assert np.abs(rec.components["registration"][on]).max() < 1e-9
    assert np.linalg.norm(rec.error_vec[on], axis=1).max() > 0.05


def test_spinal_target_is_measured_by_the_image_of_the_breathing_spine():
    """The pair images the anatomy at spine pose + breathing offset; the model's points are
    the registered target positions, not truth plus noise."""
    sc = scene_with(tracking={"mode": "spine_breathing"})
    res = run(sc, duration_s=120.0, sigma_mm=5.0)
    imgs = [e for e in res.summary.events if e["kind"] == "image" and e["accepted"]]
    assert len(imgs) >= 10
    assert res.summary.target_localization.startswith("registration")
    for e in imgs:  # exact registration: the measured target is the true one (no 5 mm noise)
        assert np.abs(e["target_error"]).max() < 1e-4
    # the imaged pose carries the breathing: its translation moves with the external signal
    imgs = [e for e in imgs if "external_mm" in e]  # the set-up pair precedes any frame
    ty = np.array([e["pose"][2] for e in imgs])
    ext = np.array([e["external_mm"] for e in imgs])
    assert np.ptp(ty) > 0.8 and abs(np.corrcoef(ty, ext)[0, 1]) > 0.8


def test_soft_tissue_target_uses_the_labelled_sensor_model():
    sc = scene_with(motion={"breathing_moves_spine": False},
                    tracking={"mode": "spine_breathing", "imaging_interval_s": 10.0})
    res = run(sc, duration_s=300.0, sigma_mm=0.3,
              beams=make_beams(n=80))
    assert res.summary.target_localization.startswith("sensor model")
    err = np.array([e["target_error"] for e in res.summary.events
                    if e["kind"] == "image" and e["accepted"]])
    assert err.shape[0] >= 30
    assert np.std(err) == pytest.approx(0.3, rel=0.25)
    # the spine images do not show the breathing: the registered pose is the spine pose
    pose_err = np.array([e["pose_error"] for e in res.summary.events
                         if e["kind"] == "image" and e["accepted"]])
    assert np.abs(pose_err).max() < 1e-4


def test_spine_only_carries_the_breathing_phase_of_the_image_instant():
    """Xsight-style spine tracking of a spinal target: the correction is the registered
    target of the last pair, so the beam misses by the breathing since that instant."""
    sc = scene_with(motion={"spine": STILL["spine"]},
                    tracking={"mode": "spine", "imaging_interval_s": 15.0})
    res = run(sc, duration_s=60.0)
    rec = res.record
    dt = sc.simulation.time_step_s
    imgs = [e["time_s"] for e in res.summary.events if e["kind"] == "image"]
    on = np.flatnonzero(rec.beam_on_s > 0)
    assert on.size > 200
    for i in on:
        ti = max(x for x in imgs if x + EXACT.processing_s <= rec.time_s[i] + 1e-9)
        k = int(round(ti / dt))
        np.testing.assert_allclose(rec.target_commanded[i], rec.target_true[k], atol=1e-12)
        v = rec.target_true[k] - rec.target_true[i]
        d = rec.beam_direction[i]
        np.testing.assert_allclose(rec.error_vec[i], v - (v @ d) * d, atol=1e-9)
    assert np.linalg.norm(rec.error_vec[on], axis=1).max() > 0.5  # breathing is missed


def test_a_shift_along_y_is_missed_until_the_next_image():
    """Markers ride the chest along y (anterior), so a y shift is invisible to the patient-
    motion check: the beam misses by the shift until the next X-ray pair corrects it."""
    shift = {"time_s": 20.0, "translation_mm": [0.0, 5.0, 0.0]}
    sc = scene_with(motion={**STILL, "spine": {**STILL["spine"], "shifts": [shift]}},
                    tracking={"mode": "spine", "imaging_interval_s": 30.0})
    res = run(sc, duration_s=60.0)
    t, e = beam_on_errors(res)
    first_image_after = 30.0 + EXACT.processing_s
    before = t < 20.0
    during = (t >= 20.0 + 0.04) & (t < first_image_after - 0.04)
    after = t >= first_image_after + 0.04
    assert before.any() and during.any() and after.any()
    assert e[before].max() < 1e-9
    # the beam misses by the shift's component perpendicular to each beam
    d = res.record.beam_direction[res.record.beam_on_s > 0][during]
    v = np.array([0.0, 5.0, 0.0])
    expect = np.linalg.norm(v - (d @ v)[:, None] * d, axis=1)
    np.testing.assert_allclose(e[during], expect, atol=1e-9)
    assert e[after].max() < 1e-9
    # the error is booked to the motion model (spine motion since the last image)
    corr = np.linalg.norm(res.record.components["correlation"][res.record.beam_on_s > 0], axis=1)
    np.testing.assert_allclose(corr[during], e[during], atol=1e-9)


def test_a_lateral_shift_is_seen_by_the_markers_and_corrected_at_once():
    shift = {"time_s": 20.0, "translation_mm": [5.0, 0.0, 0.0]}
    sc = scene_with(motion={**STILL, "spine": {**STILL["spine"], "shifts": [shift]}},
                    tracking={"mode": "spine", "imaging_interval_s": 30.0})
    res = run(sc, duration_s=40.0)
    ev = [e for e in res.summary.events if e["kind"] == "patient_moved"]
    assert len(ev) == 1
    cam = sc.tracking.markers
    dt = sc.simulation.time_step_s
    # detected within camera latency + one frame + one step of the shift
    assert 20.0 <= ev[0]["time_s"] <= 20.0 + cam.latency_s + 1 / cam.rate_hz + dt + 1e-9
    images = [e for e in res.summary.events if e["kind"] == "image" and e["time_s"] > 20.0]
    assert images and images[0]["time_s"] <= ev[0]["time_s"] + dt + 1e-9
    t, e = beam_on_errors(res)
    fixed = images[0]["time_s"] + EXACT.processing_s + dt
    assert e[t > fixed].max() < 1e-9
    assert (t[(e > 1e-6)] < fixed).all()
    assert res.summary.beam_hold_s_by_reason["patient_moved"] > 0


def test_tracking_off_error_grows_with_the_drift():
    drift = [0.0, 0.0, 1.2]  # mm/min along z
    sc = scene_with(motion={"breathing": {"enabled": False},
                            "spine": {"drift_mm_per_min": drift,
                                      "drift_deg_per_min": [0.0, 0.0, 0.0]}},
                    tracking={"mode": "none"})
    res = run(sc, duration_s=60.0)
    rec = res.record
    on = rec.beam_on_s > 0
    d = rec.beam_direction[on]
    v = np.outer(rec.time_s[on] / 60.0, drift)
    expect = np.linalg.norm(v - np.sum(v * d, axis=1)[:, None] * d, axis=1)
    np.testing.assert_allclose(np.linalg.norm(rec.error_vec[on], axis=1), expect, atol=1e-9)


def test_same_seed_same_run_different_seed_differs():
    sc = load_scene(SCENE)
    a = run(sc, duration_s=40.0, seed=3).record
    b = run(sc, duration_s=40.0, seed=3).record
    c = run(sc, duration_s=40.0, seed=4).record
    assert np.array_equal(a.error_vec, b.error_vec, equal_nan=True)
    assert np.array_equal(a.target_true, b.target_true)
    assert not np.array_equal(a.target_true, c.target_true)


def test_mu_accounting_when_the_plan_completes():
    sc = scene_with(motion=STILL)
    beams = make_beams(n=4, mu=20.0)
    res = run(sc, duration_s=120.0, beams=beams)
    rate = sc.plan.dose_rate_mu_per_min / 60.0
    assert res.summary.plan_complete
    assert res.record.beam_on_s.sum() == pytest.approx(80.0 / rate, rel=1e-9)
    assert res.record.mu_delivered == pytest.approx([20.0] * 4)
    assert res.summary.events[-1]["kind"] == "plan_complete"


@pytest.mark.parametrize(("live", "tol_mm", "tol_deg"),
                         [("ideal", 0.2, 0.3), ("realistic", 0.5, 0.4)])
def test_xray_pair_images_the_breathing_offset_with_the_spine(live, tol_mm, tol_deg):
    """The pair images the spine pose plus the breathing offset o (ideal: the planning CT
    at translation(o) @ spine pose; realistic: the truth patient with the target's vertebra
    moved by o); registration recovers both within its accuracy (realistic: independent
    images, measured 0.27 mm) and the target from result.room_from_ct."""
    from cyberknife_sim.simulation import make_imager

    sc = load_scene(SCENE)
    sc = sc.model_copy(update={"room": sc.room.model_copy(update={
        "imaging": sc.room.imaging.model_copy(update={"live_images": live})})})
    im = make_imager("xray", sc, rng=np.random.default_rng(0))
    spine = np.array([0.5, 0.2, -0.3, 0.2, 0.0, 0.3])
    for o in ([0.0, -0.6, -1.9], [0.3, -0.3, -1.0]):
        r = im.acquire(10.0, spine, np.array(o))
        assert r.accepted
        np.testing.assert_allclose(r.pose_true[:3], spine[:3] + o, atol=1e-12)
        np.testing.assert_allclose(r.pose[:3], spine[:3] + o, atol=tol_mm)
        np.testing.assert_allclose(r.pose[3:], spine[3:], atol=tol_deg)  # registration
        # target at the room origin (planned alignment): the registered translation
        np.testing.assert_allclose(r.target_room, r.pose[:3], atol=1e-6)
