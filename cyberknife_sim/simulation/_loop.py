"""The closed loop of one treatment, as the events of the real system.

One clock (``scene.simulation.time_step_s``). :meth:`TreatmentLoop.step` runs, for each step,
the events in the order the system sees them:

1. :meth:`~TreatmentLoop.expose` — an X-ray pair is exposed when due
   (``tracking.imaging_interval_s``, bursts of ``tracking.imaging.model_build_images`` to build
   or rebuild the correlation model, a retry after a rejected pair or a hold that needs one);
2. :meth:`~TreatmentLoop.image_ready` — a registration result comes in
   ``tracking.imaging.processing_s`` after its exposure: correction limits, the spine estimate,
   the correlation refit;
3. :meth:`~TreatmentLoop.marker_frame` — each camera frame that has reached the loop (camera
   latency, noise, dropped frames) goes through the predictor (horizon = system latency) and
   its output is queued to act when the command it drives reaches the servo;
4. :meth:`~TreatmentLoop.check_interlocks` — patient moved, markers lost, outside the
   model's range (each a function of :mod:`._interlocks`);
5. :meth:`~TreatmentLoop.command_robot` — commanded target = spine correction (last
   accepted pair) + breathing offset (correlation model at the predicted signal), sent to the
   robot, which then advances one step;
6. :meth:`~TreatmentLoop.deliver` — the dose delivery for the step: beam on (MU, beam
   changes) or held, and the holds' bookkeeping;
7. :meth:`~TreatmentLoop.record` — the truth-side record of the step.

Latency model: a marker frame exposed at ``t_f`` reaches the loop at ``t_f + camera``; the
command computed from it acts on the robot servo at ``t_f + system latency``
(``tracking.predictor.latency_s``), i.e. computation + transport take
``latency - camera - robot command latency`` and the robot adds its own command latency and
servo lag. The predictor's horizon is the system latency.

Measurement: each accepted X-ray pair gives the registered anatomy transform ``M̂`` (rotation
``R̂``) and the measured target position ``ŷ = M̂ xt`` at the planned target point ``xt``
(the room origin), see :mod:`._imaging`.

Commanded target for a beam aimed at ``x0``:

* ``none`` / ``spine``: ``c = M̂ x0`` of the last accepted pair (``none``: the set-up pair
  only). For a spinal target this carries the breathing phase at the image instant (Xsight
  Spine without Synchrony).
* ``spine_breathing``: ``c = f̂(ŝ, t) + R̂ (x0 − xt)`` with ``f̂`` the rolling correlation
  model (:class:`cyberknife_sim.tracking.RollingCorrelation`, drift term per
  ``tracking.correlation.drift_prior_mm_per_min``) fitted to the points ``(t_k, e_k, ŷ_k)``
  and ``ŝ`` the predicted external signal.

Error decomposition (per step, exact: the terms telescope; see
:mod:`cyberknife_sim.metrics`), with ``M(ti)`` the true imaged transform at the last pair,
``T(t)`` the true target now, ``f*`` a shadow model fitted to the TRUE target positions at
the same points, ``s`` the true external signal, ``R(ti)`` the true rotation at the pair:

* ``spine_breathing``: registration = ``f̂(s) − f*(s) + R̂ (x0 − xt) − R(ti) (x0 − xt)``;
  correlation = ``f*(s) + R(ti) (x0 − xt) − T(t)`` (model error, motion since the model's
  points); prediction = ``f̂(ŝ) − f̂(s)`` (latency, marker noise, dropped frames)
* ``none`` / ``spine``: registration = ``M̂ x0 − M(ti) x0``; correlation = ``M(ti) x0 − T(t)``
  (all motion since the last pair, breathing included); prediction = 0
* robot = ``a − c`` with ``a`` the point of the actual axis nearest the true target (servo
  lag, command latency, quantization)

each projected perpendicular to the actual beam; their sum is the targeting error vector.
The truth side (``T(t)``, the shadow model, the true signal) never feeds the loop's
decisions; :meth:`~TreatmentLoop.finish` projects the recorded vectors for all steps at once.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from ..geometry import matrix_from_pose
from ..motion import MarkerCamera, MotionTruth, marker_signal_mm
from ..plan import Beam
from ..scene import Scene
from ..tracking import RollingCorrelation, make_predictor
from . import _interlocks as il
from ._imaging import ImageResult
from ._record import LoopRecord, perpendicular
from ._seams import CorrelationSeam, ImagerSeam, PredictorSeam, RobotSeam

__all__ = ["REFERENCE_FRAMES", "VELOCITY_FRAMES", "LoopState", "StoppedEarly",
           "TreatmentLoop", "run_loop"]

VELOCITY_FRAMES = 4
"""Frames spanned by the external velocity (a backward difference over ``VELOCITY_FRAMES``
frames), used by the dual model's branch choice and by the ``linear_velocity`` model's ``c ė``
term: a one-frame difference of noisy markers flips the branch near the turning points and
puts marker noise into ``c ė``. The fit points and the treatment use the same span, so its lag
(``VELOCITY_FRAMES / 2`` frames) is absorbed by the model's coefficients. (A least-squares
slope over 5 or 9 frames changed the default scene's p95 by < 0.015 mm with ideal imaging.)"""

REFERENCE_FRAMES = 13
"""Marker frames (about 0.5 s at 26 Hz) averaged into the marker-centroid reference at each
accepted pair, which the patient-motion interlock compares against."""

_EPS = 1e-9


class StoppedEarly(Exception):
    """Carries the partial record of a run that raised."""

    def __init__(self, record: LoopRecord):
        super().__init__(record.stopped_early)
        self.record = record
        self.result = None  # set by simulate(): the RunResult of the partial run


@dataclass
class LoopState:
    """Everything the loop knows between steps (the sensing and model side only)."""

    holds: set[str] = field(default_factory=lambda: {"setup"})
    # imaging
    next_image_s: float = 0.0
    build_left: int = 1
    pending_images: deque[tuple[float, ImageResult, int]] = field(default_factory=deque)
    anatomy_est: NDArray[np.float64] = field(default_factory=lambda: np.eye(4))  # M̂
    anatomy_true_at_image: NDArray[np.float64] = field(default_factory=lambda: np.eye(4))
    rotvec_est_deg: NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))
    have_spine: bool = False
    reference_xz_mm: NDArray[np.float64] = field(default_factory=lambda: np.zeros(2))
    images_accepted: int = 0
    # markers and prediction
    next_frame: int = 0
    last_valid_frame_s: float = -math.inf
    last_xz_mm: NDArray[np.float64] = field(default_factory=lambda: np.zeros(2))
    recent_predictions: deque[float] = field(
        default_factory=lambda: deque(maxlen=VELOCITY_FRAMES + 1))
    pending_commands: deque[tuple[float, float, float]] = field(default_factory=deque)
    ext_predicted_mm: float = math.nan
    ext_velocity_predicted_mm_s: float = 0.0
    # models (fitted to the measured / to the true target positions)
    model: CorrelationSeam | None = None
    shadow: CorrelationSeam | None = None
    # delivery
    beam_k: int = 0
    at_node: bool = False
    hold_started_s: float | None = None
    travel_started_s: float | None = None
    commanded_room: NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))
    model_output_room: NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))
    model_epoch: int = 0  # counts refits and rebuilds of the models


class TreatmentLoop:
    """One treatment, closed loop (see the module docstring).

    Parameters
    ----------
    scene : Scene
        Every setting of the run (tracking mode, interlocks, imaging schedule, clock, dose
        rate).
    beams : list of Beam
        The plan in delivery order.
    truth : MotionTruth
        Motion truth.
    camera : MarkerCamera
        The marker camera observing it.
    imager : ImagerSeam
        X-ray pair + registration.
    robot : RobotSeam
        The robot pointing the linac.
    duration_s : float
        Simulated time limit (s).
    snapshot_every_s : float, optional
        Record ``(time s, joints deg)`` of a jointed robot this often (for the video).
    """

    def __init__(self, scene: Scene, *, beams: list[Beam], truth: MotionTruth,
                 camera: MarkerCamera, imager: ImagerSeam, robot: RobotSeam,
                 duration_s: float, snapshot_every_s: float | None = None):
        self.scene = scene
        self.tracking = tr = scene.tracking
        self.mode = tr.mode
        self.beams = beams
        self.truth, self.camera, self.imager, self.robot = truth, camera, imager, robot
        self.dt_s = dt = float(scene.simulation.time_step_s)
        self.n_steps = n = max(1, int(math.floor(duration_s / dt + _EPS)))
        self.rate_mu_s = scene.plan.dose_rate_mu_per_min / 60.0
        self.rec = LoopRecord.empty(n, len(beams))
        self.state = LoopState()
        self._precompute_truth(n)
        self._precompute_frames(duration_s)
        self.predictor: PredictorSeam = make_predictor(
            tr.predictor.method, horizon_s=tr.predictor.latency_s, dt_s=self.frame_dt_s)
        self._send_ahead_s = tr.predictor.latency_s - float(robot.command_latency_s)
        st = self.state
        st.build_left = tr.imaging.model_build_images if self.mode == "spine_breathing" else 1
        st.model, st.shadow = self.new_models()
        st.reference_xz_mm = self._ref_xz0.copy()
        st.last_xz_mm = self._ref_xz0.copy()
        self._snap_every = 0
        if snapshot_every_s and robot.joints_deg() is not None:
            self._snap_every = max(1, int(round(snapshot_every_s / dt)))
        # per-step raw vectors of the decomposition (projected in finish())
        z3 = np.zeros((n, 3))
        self._registration_part, self._at_image, self._prediction_part = z3, z3.copy(), z3.copy()
        self._aim_index = np.zeros(n, dtype=np.int64)
        self._model_version = np.full(n, -1, dtype=np.int64)  # -1: no breathing model
        self._model_snapshots: list[tuple[CorrelationSeam, CorrelationSeam]] = []
        self._snapshot_epoch = -1
        self._aims = np.array([b.aim_room for b in beams] or [np.zeros(3)], dtype=np.float64)
        self._levers: tuple | None = None  # cached per (beam, accepted pair)
        self._guard_seen = (0, 0, False)
        self._wall_imaging = 0.0
        self.plan_dose = None  # the session's plan dose (dose.PlanDose), never read by the loop
        if beams:
            robot.goto(beams[0])

    # ---- set-up -------------------------------------------------------------------------------
    def _precompute_truth(self, n: int) -> None:
        """Truth over the whole clock (vectorized); it depends on scene, seed and time only."""
        t_all = np.arange(n) * self.dt_s
        self.rec.time_s[:] = t_all
        self.pose_all = self.truth.spine_pose(t_all)
        self.offset_all = self.truth.target_offset_room(t_all)
        if self.truth.settings.target_moves_with_spine:
            self.m_all = matrix_from_pose(self.pose_all).reshape(-1, 4, 4)
        else:
            self.m_all = np.broadcast_to(np.eye(4), (n, 4, 4))

    def _precompute_frames(self, duration_s: float) -> None:
        """Every camera frame of the run (each frame's value depends only on its number)."""
        cam, truth = self.camera, self.truth
        frames = self.frames = cam.frames(0.0, duration_s + 1.0)
        valid = np.flatnonzero(frames.valid)
        reference = frames.positions_room[valid[0]] if valid.size \
            else truth.marker_positions_room([0.0])[0]
        self.sig_meas = marker_signal_mm(frames.positions_room, reference)  # NaN when dropped
        self.centroid_xz = frames.positions_room.mean(axis=1)[:, [0, 2]]  # NaN when dropped
        self._ref_xz0 = self.centroid_xz[valid[0]] if valid.size else np.zeros(2)
        sig_true = marker_signal_mm(truth.marker_positions_room(frames.time_s), reference)
        self.rec.ext_true[:] = np.interp(self.rec.time_s, frames.time_s, sig_true)
        self.frame_dt_s = 1.0 / cam.rate_hz
        self._available_s = frames.available_s
        self._n_frames = frames.time_s.size

    def new_models(self) -> tuple[CorrelationSeam, CorrelationSeam]:
        """A fresh correlation model and its truth-side shadow (never judged)."""
        c = self.tracking.correlation
        kw = {"n_points": c.n_points, "drift_prior_mm_per_min": c.drift_prior_mm_per_min,
              "point_sigma_mm": c.point_sigma_mm,
              "range_margin": self.tracking.interlocks.model_range_margin}
        return (RollingCorrelation(c.model, max_residual_mm=c.max_residual_mm, **kw),
                RollingCorrelation(c.model, max_residual_mm=1e9, **kw))

    def event(self, t_s: float, kind: str, **detail) -> None:
        """Append an event to the log."""
        self.rec.events.append({"time_s": round(float(t_s), 6), "kind": kind, **detail})

    # ---- 1. X-ray exposure --------------------------------------------------------------------
    def exposure_due(self, t_s: float) -> bool:
        """A pair is due: its time has come and the mode images (``none`` only until the
        set-up pair is accepted)."""
        st = self.state
        return t_s >= st.next_image_s - _EPS and (
            self.mode != "none" or not st.have_spine or "registration_failed" in st.holds)

    def expose(self, i: int) -> None:
        """Expose a pair of the true anatomy at step ``i``; schedule the next one."""
        st, sched = self.state, self.tracking.imaging
        t = self.rec.time_s[i]
        w0 = time.perf_counter()
        res = self.imager.acquire(t, self.pose_all[i], self.offset_all[i])
        self._wall_imaging += time.perf_counter() - w0
        self.rec.images.append(res)
        st.pending_images.append((t + sched.processing_s, res, i))
        if not res.accepted:
            st.next_image_s = t + sched.retry_s
        elif st.build_left > 1:
            st.build_left -= 1
            st.next_image_s = t + sched.model_build_spacing_s
        else:
            st.build_left = 0
            st.next_image_s = t + self.tracking.imaging_interval_s

    # ---- 2. registration result in ------------------------------------------------------------
    def image_ready(self, t_s: float, res: ImageResult, i_img: int) -> None:
        """A registration result reaches the loop at ``t_s``."""
        st = self.state
        detail = {"accepted": res.accepted, "reason": res.reason,
                  "pose": [round(float(v), 4) for v in res.pose]}
        if not il.registration_failed(res.accepted):
            self._accept_image(t_s, res, i_img, detail)
        else:
            st.holds.add("registration_failed")
            detail["interlock"] = "registration_failed"
        self.event(res.time_s, "image", **detail)
        if st.build_left == 0 and st.have_spine:
            st.holds.discard("setup")

    def _accept_image(self, t_s: float, res: ImageResult, i_img: int, detail: dict) -> None:
        st, lim = self.state, self.tracking.interlocks
        rebuild = "patient_moved" in st.holds and self.mode == "spine_breathing"
        self._reset_marker_reference(t_s)
        st.holds.discard("patient_moved")
        st.holds.discard("registration_failed")
        y_true = self.m_all[i_img][:3, 3] + self.offset_all[i_img]  # true target at xt
        detail["pose_error"] = [round(float(v), 4) for v in res.pose - res.pose_true]
        detail["target_measured"] = [round(float(v), 4) for v in res.target_room]
        detail["target_error"] = [round(float(v), 4) for v in res.target_room - y_true]
        if il.correction_limit(res.pose, max_translation_mm=lim.max_translation_mm,
                               max_rotation_deg=lim.max_rotation_deg):
            st.holds.add("correction_limit")
            detail["interlock"] = "correction_limit"
        else:
            st.holds.discard("correction_limit")
        st.anatomy_est = matrix_from_pose(res.pose)
        st.rotvec_est_deg = Rotation.from_matrix(st.anatomy_est[:3, :3]).as_rotvec(degrees=True)
        st.anatomy_true_at_image = matrix_from_pose(res.pose_true)
        st.have_spine = True
        st.images_accepted += 1
        self._levers = None
        if rebuild:  # the model's points describe the patient before it moved
            self._start_model_build(t_s, st.holds, build=self.tracking.imaging.model_build_images
                                    - 1)
            detail["interlock"] = "patient moved (rebuilding the model)"
        if self.mode == "spine_breathing":
            self._refit_model(t_s, res, y_true, detail)

    def _reset_marker_reference(self, t_s: float) -> None:
        """The patient-motion reference: the marker centroid over the frames just received."""
        kf = int(np.searchsorted(self._available_s, t_s, side="right"))
        recent = self.centroid_xz[max(kf - REFERENCE_FRAMES, 0):kf]
        recent = recent[np.isfinite(recent[:, 0])]
        if recent.size:
            self.state.reference_xz_mm = recent.mean(axis=0)

    def _start_model_build(self, t_s: float, holds: set[str], *, build: int) -> None:
        st = self.state
        st.model, st.shadow = self.new_models()
        st.model_epoch += 1
        st.build_left = build
        st.next_image_s = t_s + self.tracking.imaging.model_build_spacing_s
        holds.add("model_residual")

    def _refit_model(self, t_s: float, res: ImageResult, y_true: NDArray[np.float64],
                     detail: dict) -> None:
        """Add the pair's point (external signal at the exposure, measured target) to the
        correlation model; hold and rebuild when it is judged bad."""
        st = self.state
        # the marker frame captured nearest the exposure (time stamps are synchronised), not the
        # newest one received by then, which was captured a whole frame earlier and reads as a
        # lag the model would fit as hysteresis; it has arrived by now (processing_s is longer
        # than the camera latency), which the min() guarantees
        kf = min(int(np.searchsorted(self.frames.time_s, res.time_s + 0.5 * self.frame_dt_s,
                                     side="right")),
                 int(np.searchsorted(self._available_s, t_s + _EPS, side="right")))
        e_img, v_img = signal_at(self.sig_meas, kf - 1, self.frame_dt_s)
        if not math.isfinite(e_img):
            return
        status = st.model.add(e_img, res.target_room, v_img, time_s=res.time_s)
        st.shadow.add(e_img, y_true, v_img, time_s=res.time_s)
        st.model_epoch += 1
        detail["external_mm"] = round(e_img, 4)
        detail.update(model_residual_mm=round(status.residual_mm, 4), model_ok=status.model_ok)
        fallback = getattr(st.model.model, "fallback_reason", None)
        if fallback:  # e.g. linear_velocity on its first points
            detail["model_fallback"] = fallback
        if st.build_left == 0 and il.model_residual(status.model_ok):
            self._start_model_build(t_s, st.holds,
                                    build=self.tracking.imaging.model_build_images)
            detail["interlock"] = "model_residual (rebuilding)"
        elif st.build_left == 0:
            st.holds.discard("model_residual")

    # ---- 3. marker frame ----------------------------------------------------------------------
    def marker_frame(self, k: int) -> None:
        """Camera frame ``k`` reaches the loop: predict the signal one system latency ahead and
        queue it for when the command it drives acts on the servo."""
        st = self.state
        s = self.sig_meas[k]
        t_frame = self.frames.time_s[k]
        if s == s:  # not dropped (NaN)
            st.last_valid_frame_s = t_frame
            st.last_xz_mm = self.centroid_xz[k]
        p = float(self.predictor.update(s)[0])
        activity = self.predictor.guard_activity
        if activity != self._guard_seen:
            self._guard_event(t_frame, activity)
        recent = st.recent_predictions
        recent.append(p)  # velocity over VELOCITY_FRAMES frames: less noise
        v = (p - recent[0]) / (self.frame_dt_s * (len(recent) - 1)) if len(recent) > 1 else 0.0
        st.pending_commands.append((t_frame + self._send_ahead_s, p, v))

    def _guard_event(self, t_s: float, activity: tuple[int, int, bool]) -> None:
        """The predictor's guard acted: a sample gated, a step accepted, fallback on/off."""
        gated, steps, fallback = activity
        g0, s0, f0 = self._guard_seen
        self._guard_seen = activity
        what = []
        if gated > g0:
            what.append("sample gated (jump held until confirmed)")
        if steps > s0:
            what.append("step accepted")
        if fallback != f0:
            what.append("fallback to no prediction" if fallback else "prediction resumed")
        self.event(t_s, "predictor_guard", action="; ".join(what))

    def _frames_arrived(self, t_s: float) -> None:
        st = self.state
        while st.next_frame < self._n_frames and self._available_s[st.next_frame] <= t_s + _EPS:
            self.marker_frame(st.next_frame)
            st.next_frame += 1
        pend = st.pending_commands
        while pend and pend[0][0] <= t_s + _EPS:
            _, st.ext_predicted_mm, st.ext_velocity_predicted_mm_s = pend.popleft()

    # ---- 4. interlocks on the marker side -----------------------------------------------------
    def check_interlocks(self, t_s: float) -> None:
        """Patient motion (all imaging modes), lost markers and the model's range
        (``spine_breathing``)."""
        st, lim = self.state, self.tracking.interlocks
        if self.mode != "none" and st.have_spine and "patient_moved" not in st.holds:
            moved = il.patient_moved_mm(st.last_xz_mm, st.reference_xz_mm)
            if moved > lim.patient_moved_mm:
                st.holds.add("patient_moved")
                st.next_image_s = t_s
                self.event(t_s, "patient_moved", marker_shift_mm=round(moved, 3))
        if self.mode != "spine_breathing":
            return
        self._set_hold("markers_lost", il.markers_lost(
            t_s, st.last_valid_frame_s, camera_latency_s=self.camera.latency_s,
            limit_s=lim.markers_lost_s))
        self._set_hold("outside_model_range", st.model.fitted and il.outside_model_range(
            st.ext_predicted_mm, st.model.ext_range, margin_fraction=lim.model_range_margin))

    def _set_hold(self, name: str, on: bool) -> None:
        if on:
            self.state.holds.add(name)
        else:
            self.state.holds.discard(name)

    # ---- 5. command to the robot --------------------------------------------------------------
    def _breathing_model_active(self) -> bool:
        st = self.state
        return (self.mode == "spine_breathing" and st.model.fitted
                and math.isfinite(st.ext_predicted_mm))

    def _lever(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64],
                              NDArray[np.float64]]:
        """:meth:`_levers_at` the current beam's aim point (cached until the beam or the
        accepted pair changes)."""
        st = self.state
        key = (st.beam_k, st.images_accepted)
        if self._levers is None or self._levers[0] != key:
            self._levers = (key, self._levers_at(min(st.beam_k, len(self._aims) - 1)))
        return self._levers[1]

    def _levers_at(self, aim_k: int) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                              NDArray[np.float64], NDArray[np.float64]]:
        """``R̂ x0``, ``R(ti) x0``, ``M̂ x0`` and ``M(ti) x0`` for beam ``aim_k``'s aim point."""
        st = self.state
        x0 = self._aims[aim_k]
        est, img = st.anatomy_est, st.anatomy_true_at_image
        r_est, r_img = est[:3, :3] @ x0, img[:3, :3] @ x0
        return r_est, r_img, r_est + est[:3, 3], r_img + img[:3, 3]

    def command_robot(self, i: int) -> None:
        """Compute the commanded target for step ``i``, send it, and advance the robot."""
        st = self.state
        t = self.rec.time_s[i]
        lever_est, _, spine_est, _ = self._lever()
        if self._breathing_model_active():
            st.model_output_room = st.model.predict_one(
                st.ext_predicted_mm, st.ext_velocity_predicted_mm_s, t)
            c = st.model_output_room + lever_est
        else:
            c = spine_est
        st.commanded_room = c
        if st.beam_k < len(self.beams):
            beam = self.beams[st.beam_k]
            if not st.at_node and self.robot.arrived:
                st.at_node = True
                st.travel_started_s = None
                self.event(t, "node", beam=st.beam_k, node=beam.node.index)
            self.robot.command(beam, c, st.rotvec_est_deg)
        self.robot.step(t, self.dt_s)
        self._axis = self.robot.beam_axis()
        self._set_hold("robot_following", il.robot_following(
            st.at_node, self.robot.following_error_mm,
            limit_mm=self.tracking.interlocks.max_robot_error_mm))

    # ---- 6. dose delivery for the step --------------------------------------------------------
    def deliver(self, i: int) -> bool:
        """Beam on for the step (MU toward the current beam) or held; returns False when a
        hold lasted too long and the treatment stops."""
        st, rec = self.state, self.rec
        t = rec.time_s[i]
        rec.hold_mask[i] = il.hold_mask(st.holds)
        if st.beam_k >= len(self.beams):
            return True
        if not st.at_node:
            return self._travel(t)
        if st.holds:
            return self._hold(t)
        if st.hold_started_s is not None:
            self.event(t, "resume", held_s=round(t - st.hold_started_s, 4))
            st.hold_started_s = None
        k = st.beam_k
        beam = self.beams[k]
        on = min(self.dt_s, (beam.mu - rec.mu_delivered[k]) / self.rate_mu_s)
        rec.mu_delivered[k] += on * self.rate_mu_s
        rec.beam_on_s[i] = on
        rec.beam_index[i] = k
        if rec.mu_delivered[k] >= beam.mu - _EPS:
            rec.beams_completed += 1
            st.beam_k += 1
            st.at_node = False
            if st.beam_k < len(self.beams):
                self.robot.goto(self.beams[st.beam_k])
        return True

    def _travel(self, t_s: float) -> bool:
        """The robot is on its way to the current beam's node (beam off, not a hold); returns
        False when it has not arrived within ``max_hold_s`` (it cannot follow the target
        there) and the treatment stops, saying so."""
        st, rec = self.state, self.rec
        rec.travel_s += self.dt_s
        limit_s = self.tracking.interlocks.max_hold_s
        if st.travel_started_s is None:
            st.travel_started_s = t_s
        elif il.hold_too_long(t_s, st.travel_started_s, max_hold_s=limit_s):
            return self._stop(t_s, f"the robot did not reach beam {st.beam_k}'s node within "
                                   f"{limit_s:g} s (following error "
                                   f"{self.robot.following_error_mm:.2f} mm)")
        return True

    def _stop(self, t_s: float, reason: str) -> bool:
        """Stop the treatment at ``t_s`` for ``reason`` (recorded and logged); False."""
        self.rec.stopped_early = reason
        self.event(t_s, "stopped", reason=reason)
        return False

    def _hold(self, t_s: float) -> bool:
        st, rec = self.state, self.rec
        dt = self.dt_s
        if st.holds != {"setup"}:
            rec.hold_s += dt
        for name in st.holds:
            rec.hold_s_by_reason[name] = rec.hold_s_by_reason.get(name, 0.0) + dt
        if st.hold_started_s is None:
            st.hold_started_s = t_s
            self.event(t_s, "hold", reasons=sorted(st.holds))
        elif il.hold_too_long(t_s, st.hold_started_s,
                              max_hold_s=self.tracking.interlocks.max_hold_s):
            return self._stop(t_s, f"beam held for more than "
                                   f"{self.tracking.interlocks.max_hold_s:g} s "
                                   f"({', '.join(sorted(st.holds))})")
        return True

    # ---- 7. record ----------------------------------------------------------------------------
    def record(self, i: int, aim_k: int) -> None:
        """Record step ``i`` (aimed at beam ``aim_k``'s aim point): the actual axis, the
        command, and the decomposition's raw vectors (truth side, never fed back)."""
        st, rec = self.state, self.rec
        src, d = self._axis  # as the step left it (before a beam change's goto)
        rec.beam_source[i] = src
        rec.beam_direction[i] = d
        rec.target_commanded[i] = st.commanded_room
        rec.ext_predicted[i] = st.ext_predicted_mm
        rec.robot_error_mm[i] = self.robot.following_error_mm
        self._aim_index[i] = aim_k
        lever_est, lever_img, spine_est, spine_img = self._lever_for(aim_k)
        if self._breathing_model_active():
            # the models' terms at the TRUE signal are added for all steps in finish()
            self._model_version[i] = self._snapshot_models()
            self._registration_part[i] = lever_est - lever_img
            self._at_image[i] = lever_img
            self._prediction_part[i] = st.model_output_room
        else:
            self._registration_part[i] = spine_est - spine_img
            self._at_image[i] = spine_img

    def _snapshot_models(self) -> int:
        """Index of a frozen copy of the current model and shadow (copied once per refit)."""
        st = self.state
        if self._snapshot_epoch != st.model_epoch:
            self._model_snapshots.append((copy.deepcopy(st.model), copy.deepcopy(st.shadow)))
            self._snapshot_epoch = st.model_epoch
        return len(self._model_snapshots) - 1

    def _lever_for(self, aim_k: int):
        if aim_k == min(self.state.beam_k, len(self._aims) - 1):
            return self._lever()
        return self._levers_at(aim_k)  # the beam changed within the step: the old one's

    # ---- the clock ----------------------------------------------------------------------------
    def step(self, i: int) -> bool:
        """Run every event of step ``i``; False when the treatment ends (plan delivered or
        stopped by an interlock)."""
        st = self.state
        t = self.rec.time_s[i]
        if self.exposure_due(t):
            self.expose(i)
        while st.pending_images and st.pending_images[0][0] <= t + _EPS:
            _, res, i_img = st.pending_images.popleft()
            self.image_ready(t, res, i_img)
        self._frames_arrived(t)
        self.check_interlocks(t)
        aim_k = min(st.beam_k, len(self._aims) - 1)
        self.command_robot(i)
        go_on = self.deliver(i)
        self.record(i, aim_k)
        if self._snap_every and i % self._snap_every == 0:
            self.rec.snapshots.append((float(t), self.robot.joints_deg().copy()))
        if go_on and st.beam_k >= len(self.beams):
            self.event(t, "plan_complete")
            return False
        return go_on

    def run(self, progress: Callable[[int], None] | None = None) -> LoopRecord:
        """Run the whole clock (see the module docstring).

        Parameters
        ----------
        progress : callable, optional
            Called with the number of steps done (every 256 steps).

        Returns
        -------
        LoopRecord
            Also when stopped early (``stopped_early`` says why; Ctrl-C included).

        Raises
        ------
        StoppedEarly
            When a part raised: carries the partial record.
        """
        rec = self.rec
        wall0 = time.perf_counter()
        i = 0
        try:
            for i in range(self.n_steps):  # noqa: B007 - i is the number of steps done
                if not self.step(i):
                    i += 1
                    break
                if progress is not None and i % 256 == 0:
                    progress(i)
            else:
                i = self.n_steps
        except KeyboardInterrupt:
            rec.stopped_early = "interrupted (Ctrl-C)"
            self.event(rec.time_s[min(i, self.n_steps - 1)], "stopped", reason=rec.stopped_early)
        except Exception as exc:  # noqa: BLE001 - an early stop still writes what it has
            rec.stopped_early = f"{exc.__class__.__name__}: {exc}"
            self.event(rec.time_s[min(i, self.n_steps - 1)], "stopped", reason=rec.stopped_early)
            self.finish(i, time.perf_counter() - wall0)
            raise StoppedEarly(rec) from exc
        return self.finish(i, time.perf_counter() - wall0)

    def finish(self, n: int, wall_s: float) -> LoopRecord:
        """Cut the record to ``n`` steps and compute the truth-side metrics of every step."""
        rec = self.rec
        rec.n_steps = n
        rec.wall_s = wall_s
        rec.imaging_wall_s = self._wall_imaging
        rec.predictor_guard = dict(self.predictor.guard_stats)
        x0 = self._aims[self._aim_index[:n]]
        m = self.m_all[:n]
        tgt = np.einsum("nij,nj->ni", m[:, :3, :3], x0) + m[:, :3, 3] + self.offset_all[:n]
        rec.target_true[:n] = tgt
        rec.room_from_anatomy[:n] = m
        rec.target_offset[:n] = self.offset_all[:n]
        d = rec.beam_direction[:n]
        err = perpendicular(rec.beam_source[:n] - tgt, d)
        rec.error_vec[:n] = err
        self._add_model_terms(n)
        comp = rec.components
        comp["registration"][:n] = perpendicular(self._registration_part[:n], d)
        comp["correlation"][:n] = perpendicular(self._at_image[:n] - tgt, d)
        comp["prediction"][:n] = perpendicular(self._prediction_part[:n], d)
        comp["robot"][:n] = err - perpendicular(rec.target_commanded[:n] - tgt, d)
        rec.truncate()
        return rec

    def _add_model_terms(self, n: int) -> None:
        """The decomposition's model terms at the TRUE external signal, for every step that
        the breathing model commanded: ``f̂(s)`` (the model the loop used) and ``f*(s)`` (its
        shadow fitted to the true target positions), evaluated per model version."""
        version = self._model_version[:n]
        s_true = self.rec.ext_true[:n]
        # the same backward difference as the loop's (over VELOCITY_FRAMES frames), so that the
        # models' velocity terms book no velocity-estimate difference into the wrong component
        lag = np.minimum(np.arange(n), VELOCITY_FRAMES)
        v_true = np.zeros(n)
        v_true[1:] = (s_true[1:] - s_true[np.arange(1, n) - lag[1:]]) / (lag[1:] * self.dt_s)
        t = self.rec.time_s[:n]
        for k in np.unique(version[version >= 0]):
            idx = np.flatnonzero(version == k)
            model, shadow = self._model_snapshots[k]
            f_hat = model.predict(s_true[idx], v_true[idx], t[idx])
            f_star = shadow.predict(s_true[idx], v_true[idx], t[idx])
            self._registration_part[idx] += f_hat - f_star
            self._at_image[idx] += f_star
            self._prediction_part[idx] -= f_hat


def run_loop(scene: Scene, *, beams: list[Beam], truth: MotionTruth, camera: MarkerCamera,
             imager: ImagerSeam, robot: RobotSeam, duration_s: float,
             progress: Callable[[int], None] | None = None,
             snapshot_every_s: float | None = None) -> LoopRecord:
    """Build a :class:`TreatmentLoop` and run it (see its parameters)."""
    loop = TreatmentLoop(scene, beams=beams, truth=truth, camera=camera, imager=imager,
                         robot=robot, duration_s=duration_s, snapshot_every_s=snapshot_every_s)
    return loop.run(progress)


def signal_at(sig: NDArray[np.float64], k: int, frame_dt_s: float) -> tuple[float, float]:
    """External signal (mm) and its backward-difference velocity (mm/s) from the newest
    valid frames up to index ``k`` (nothing after ``k`` is read)."""
    valid = [j for j in range(max(k - VELOCITY_FRAMES, 0), k + 1) if np.isfinite(sig[j])]
    if not valid:
        return float("nan"), 0.0
    j1 = valid[-1]
    j0 = valid[0] if len(valid) > 1 else j1
    v = (sig[j1] - sig[j0]) / ((j1 - j0) * frame_dt_s) if j1 > j0 else 0.0
    return float(sig[j1]), float(v)
