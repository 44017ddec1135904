"""The time-stepped closed loop of one treatment.

One clock (``scene.simulation.time_step_s``). Per step: motion truth (precomputed for the
whole clock) → marker frames that have reached the loop (camera latency, noise, dropped
frames) → predictor (horizon = system latency) → correlation model → commanded target =
spine correction (last accepted registration) + breathing offset → command pipeline delay →
robot step → actual beam axis → targeting error (TRUE target to ACTUAL axis, beam-on only).
X-ray pairs at ``tracking.imaging_interval_s`` (and in bursts to build or rebuild the
correlation model) go through the imaging seam (:mod:`._imaging`).

Latency model: a marker frame exposed at ``t_f`` reaches the loop at ``t_f + camera``; the
command computed from it acts on the robot servo at ``t_f + system latency``
(``tracking.predictor.latency_s``), i.e. computation + transport take
``latency - camera - robot command latency`` and the robot adds its own command latency and
servo lag. The predictor's horizon is the system latency.

Measurement: each accepted X-ray pair gives the registered anatomy transform ``M̂`` (rotation
``R̂``) and the measured target position ``ŷ = M̂ xt`` at the planned target point ``xt``
(the room origin), see :mod:`._imaging` (for a spinal target the pair images the breathing
offset with the vertebrae; a soft-tissue target adds a sensor-model offset).

Commanded target for a beam aimed at ``x0``:

* ``none`` / ``spine``: ``c = M̂ x0`` of the last accepted pair (``none``: the set-up pair
  only). For a spinal target this carries the breathing phase at the image instant (Xsight
  Spine without Synchrony).
* ``spine_breathing``: ``c = f̂(ŝ, t) + R̂ (x0 − xt)`` with ``f̂`` the correlation model (with
  drift term, :class:`._drift_correlation.DriftCorrelation`) fitted to the points
  ``(t_k, e_k, ŷ_k)`` and ``ŝ`` the predicted external signal.

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
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from ..geometry import matrix_from_pose
from ..metrics import COMPONENTS
from ..motion import MarkerCamera, MotionTruth, marker_signal_mm
from ..tracking import make_predictor
from ._drift_correlation import DriftCorrelation
from ._imaging import Imager, ImageResult

__all__ = ["HOLD_REASONS", "VELOCITY_FRAMES", "Beam", "LoopOptions", "LoopRecord", "StoppedEarly",
           "run_loop"]

HOLD_REASONS = ("setup", "registration_failed", "correction_limit", "model_residual",
                "outside_model_range", "markers_lost", "patient_moved", "robot_following")
"""Interlocks that hold the beam; bit i of ``LoopRecord.hold_mask`` is ``HOLD_REASONS[i]``."""

VELOCITY_FRAMES = 4
"""Frames spanned by the external velocity (a difference over ``VELOCITY_FRAMES`` frames),
used by the dual model's branch choice and by the ``linear_velocity`` model's ``c ė`` term:
a one-frame difference of noisy markers flips the branch near the turning points and puts
marker noise into ``c ė``. The fit points and the treatment use the same span, so its lag
(``VELOCITY_FRAMES / 2`` frames) is absorbed by the model's coefficients. (A least-squares
slope over 5 or 9 frames changed the default scene's p95 by < 0.015 mm with ideal imaging.)"""


@dataclass(frozen=True)
class Beam:
    """One planned beam, in the room frame at planned alignment.

    Attributes
    ----------
    node : int
        Node number (the robot position).
    source_room : ndarray, shape (3,)
        Linac source (mm, room).
    direction_room : ndarray, shape (3,)
        Unit beam direction, source toward the aim point.
    mu : float
        Monitor units.
    aim_room : ndarray, shape (3,)
        Point the beam is aimed at (mm, room, planned alignment; the target's center for an
        isocentric beam). Its true position over time is "the target" of this beam.
    joints_deg : ndarray, shape (6,), optional
        The plan's IK solution at the node (deg).
    """

    node: int
    source_room: NDArray[np.float64]
    direction_room: NDArray[np.float64]
    mu: float
    aim_room: NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))
    joints_deg: NDArray[np.float64] | None = None


@dataclass(frozen=True)
class LoopOptions:
    """Loop constants that are not scene settings (documented assumptions).

    Attributes
    ----------
    model_build_images : int
        X-ray pairs taken to build (or rebuild) the correlation model before treating.
    model_build_spacing_s : float
        Time between those pairs (s); not a multiple of a breathing period on purpose.
    retry_s : float
        Time to the next pair after a rejected image or a hold that needs one (s).
    image_processing_s : float
        Delay from exposure to the correction being applied (s).
    markers_lost_s : float
        Hold when no valid marker frame arrived for this long (s).
    model_range_margin : float
        Hold when the external signal leaves the fitted range by more than this fraction of
        the range.
    patient_moved_mm : float
        Hold and take an X-ray pair at once when the marker centroid moves this far across
        the breathing direction (room x-z plane) from where it was at the last pair (mm).
    max_hold_s : float
        Stop the treatment when the beam is held continuously this long (s).
    target_localization_sigma_mm : float
        Sensor-model noise of a soft-tissue target's offset at each X-ray pair (mm, 1 sigma
        per axis; not used for a spinal target, which the registration measures).
    drift_prior_mm_per_min : float
        Prior 1-sigma drift speed of the correlation model's drift term (mm/min); 0 turns
        the drift term off.
    model_point_sigma_mm : float
        Assumed noise of a measured target position, weighing that prior (mm).
    """

    model_build_images: int = 10
    model_build_spacing_s: float = 1.3
    retry_s: float = 5.0
    image_processing_s: float = 0.5
    markers_lost_s: float = 0.3
    model_range_margin: float = 0.6
    patient_moved_mm: float = 1.5
    max_hold_s: float = 300.0
    target_localization_sigma_mm: float = 0.1
    drift_prior_mm_per_min: float = 0.3
    model_point_sigma_mm: float = 0.2


@dataclass
class LoopRecord:
    """Per-step arrays and the event log of one run (room frame, mm, s)."""

    time_s: NDArray[np.float64]
    target_true: NDArray[np.float64]
    target_commanded: NDArray[np.float64]
    beam_source: NDArray[np.float64]
    beam_direction: NDArray[np.float64]
    error_vec: NDArray[np.float64]
    components: dict[str, NDArray[np.float64]]
    beam_on_s: NDArray[np.float64]
    beam_index: NDArray[np.int64]
    hold_mask: NDArray[np.int64]
    ext_true: NDArray[np.float64]
    ext_predicted: NDArray[np.float64]
    robot_error_mm: NDArray[np.float64]
    events: list[dict] = field(default_factory=list)
    n_steps: int = 0
    mu_delivered: NDArray[np.float64] | None = None
    beams_completed: int = 0
    hold_s: float = 0.0
    hold_s_by_reason: dict[str, float] = field(default_factory=dict)
    stopped_early: str | None = None
    wall_s: float = 0.0
    step_wall_s: float = 0.0
    images: list[ImageResult] = field(default_factory=list)
    snapshots: list[tuple[float, NDArray[np.float64]]] = field(default_factory=list)

    def truncate(self) -> None:
        """Cut the arrays to the steps actually simulated."""
        n = self.n_steps
        for name in ("time_s", "target_true", "target_commanded", "beam_source",
                     "beam_direction", "error_vec", "beam_on_s", "beam_index", "hold_mask",
                     "ext_true", "ext_predicted", "robot_error_mm"):
            setattr(self, name, getattr(self, name)[:n])
        self.components = {k: v[:n] for k, v in self.components.items()}


def _empty_record(n: int) -> LoopRecord:
    z3 = lambda: np.full((n, 3), np.nan)  # noqa: E731
    return LoopRecord(
        time_s=np.zeros(n), target_true=z3(), target_commanded=z3(), beam_source=z3(),
        beam_direction=z3(), error_vec=z3(), components={c: z3() for c in COMPONENTS},
        beam_on_s=np.zeros(n), beam_index=np.full(n, -1, dtype=np.int64),
        hold_mask=np.zeros(n, dtype=np.int64), ext_true=np.full(n, np.nan),
        ext_predicted=np.full(n, np.nan), robot_error_mm=np.full(n, np.nan))


def _perp(v: NDArray[np.float64], u: NDArray[np.float64]) -> NDArray[np.float64]:
    return v - (v @ u) * u


def run_loop(scene, *, beams: list[Beam], truth: MotionTruth, camera: MarkerCamera,
             imager: Imager, robot, duration_s: float, options: LoopOptions | None = None,
             progress: Callable[[int], None] | None = None,
             snapshot_every_s: float | None = None) -> LoopRecord:
    """Simulate the treatment; see the module docstring.

    Parameters
    ----------
    scene : Scene
        Settings (tracking mode, interlocks, clock, plan dose rate).
    beams : list of Beam
        The plan in delivery order.
    truth, camera : MotionTruth, MarkerCamera
        Motion truth and the marker camera observing it.
    imager : Imager
        The imaging seam.
    robot : object
        The robot seam: ``goto(beam)`` (start moving to a beam's node), ``command(beam,
        target_room, rotation_deg)`` (aim that beam's axis through ``target_room``, mm,
        turned by the anatomy rotation vector ``rotation_deg``), ``step(t_s, dt_s)``,
        ``beam_axis()`` → (source (3,), unit direction (3,)), ``arrived`` (bool, at the
        node and following) and ``following_error_mm`` (commanded target to actual axis).
    duration_s : float
        Simulated time limit (s).
    options : LoopOptions
        Loop constants.
    progress : callable, optional
        Called with the number of steps done (every ~1 % of the run).
    snapshot_every_s : float, optional
        Record ``(time s, joints deg)`` of a PyBullet robot seam (one with ``.controller``)
        this often into ``LoopRecord.snapshots`` (for the video).

    Returns
    -------
    LoopRecord
        Also when stopped early (``stopped_early`` says why; KeyboardInterrupt included).
    """
    options = options or LoopOptions()
    tr = scene.tracking
    mode = tr.mode
    lim = tr.interlocks
    dt = float(scene.simulation.time_step_s)
    n = max(1, int(math.floor(duration_s / dt + 1e-9)))
    rec = _empty_record(n)
    rec.mu_delivered = np.zeros(len(beams))
    rate_mu_s = scene.plan.dose_rate_mu_per_min / 60.0
    latency_s = tr.predictor.latency_s
    robot_cmd_latency = float(getattr(robot, "command_latency_s", 0.0))

    # --- truth over the whole clock (vectorized) -----------------------------------------
    t_all = np.arange(n) * dt
    rec.time_s[:] = t_all
    pose_all = truth.spine_pose(t_all)
    offset_all = truth.target_offset_room(t_all)
    if truth.settings.target_moves_with_spine:
        m_all = matrix_from_pose(pose_all).reshape(-1, 4, 4)
    else:
        m_all = np.broadcast_to(np.eye(4), (n, 4, 4))

    # --- camera frames over the whole clock -------------------------------------------------
    frames = camera.frames(0.0, duration_s + 1.0)
    reference = frames.positions_room[np.flatnonzero(frames.valid)[0]] if frames.valid.any() \
        else truth.marker_positions_room([0.0])[0]
    sig_meas = marker_signal_mm(frames.positions_room, reference)  # NaN when dropped
    centroid_xz = frames.positions_room.mean(axis=1)[:, [0, 2]]  # NaN when dropped
    ref_xz = centroid_xz[np.flatnonzero(frames.valid)[0]] if frames.valid.any() \
        else np.zeros(2)
    last_xz = ref_xz
    sig_true_frames = marker_signal_mm(truth.marker_positions_room(frames.time_s), reference)
    rec.ext_true[:] = np.interp(t_all, frames.time_s, sig_true_frames)
    frame_dt = 1.0 / camera.rate_hz
    predictor = make_predictor(tr.predictor.method, horizon_s=latency_s, dt_s=frame_dt)
    next_frame = 0
    last_valid_frame_t = -np.inf
    sig_pred = np.nan
    vel_pred = 0.0
    recent_pred: deque[float] = deque(maxlen=VELOCITY_FRAMES + 1)
    pending: deque[tuple[float, float, float]] = deque()  # (apply time, ŝ, ŝ velocity)
    s_hat_now, v_hat_now = np.nan, 0.0

    def new_models() -> tuple[DriftCorrelation, DriftCorrelation]:
        kw = {"n_points": tr.correlation.n_points,
              "drift_prior_mm_per_min": options.drift_prior_mm_per_min,
              "point_sigma_mm": options.model_point_sigma_mm}
        return (DriftCorrelation(tr.correlation.model,
                                 max_residual_mm=tr.correlation.max_residual_mm, **kw),
                DriftCorrelation(tr.correlation.model, max_residual_mm=1e9, **kw))

    corr, shadow = new_models()  # fitted to measured / to true target positions

    # --- estimates and state --------------------------------------------------------------
    anat_est = np.eye(4)            # M̂: registered anatomy transform (last accepted pair)
    anat_true_at_image = np.eye(4)  # M(ti): true imaged transform at that pair
    rotvec_est = np.zeros(3)
    have_spine = False
    holds: set[str] = {"setup"}
    build_left = options.model_build_images if mode == "spine_breathing" else 1
    next_image_t = 0.0
    pending_images: deque[tuple[float, ImageResult, int]] = deque()
    beam_k = 0
    at_node = False
    hold_started: float | None = None
    events = rec.events

    def event(t: float, kind: str, **detail) -> None:
        events.append({"time_s": round(float(t), 6), "kind": kind, **detail})

    snap_every = 0
    if snapshot_every_s and hasattr(robot, "controller"):
        snap_every = max(1, int(round(snapshot_every_s / dt)))
    if beams:
        robot.goto(beams[0])
    wall0 = time.perf_counter()
    step_wall = 0.0
    i = 0
    try:
        for i in range(n):
            t = t_all[i]
            ts = time.perf_counter()
            # ---- imaging events -----------------------------------------------------------
            if t >= next_image_t - 1e-9 and (mode != "none" or not have_spine
                                             or "registration_failed" in holds):
                res = imager.acquire(t, pose_all[i], offset_all[i])
                rec.images.append(res)
                pending_images.append((t + options.image_processing_s, res, i))
                if not res.accepted:
                    next_image_t = t + options.retry_s
                elif build_left > 1:
                    build_left -= 1
                    next_image_t = t + options.model_build_spacing_s
                else:
                    build_left = 0
                    next_image_t = t + tr.imaging_interval_s
            while pending_images and pending_images[0][0] <= t + 1e-9:
                t_img, res, i_img = pending_images.popleft()
                ok = res.accepted
                detail = {"accepted": ok, "reason": res.reason,
                          "pose": [round(float(v), 4) for v in res.pose]}
                rebuild = "patient_moved" in holds and mode == "spine_breathing"
                if ok:
                    kf = int(np.searchsorted(frames.available_s, t, side="right"))
                    recent = centroid_xz[max(kf - 13, 0):kf]
                    recent = recent[np.isfinite(recent[:, 0])]
                    if recent.size:
                        ref_xz = recent.mean(axis=0)
                    holds.discard("patient_moved")
                    pose_err = res.pose - res.pose_true
                    detail["pose_error"] = [round(float(v), 4) for v in pose_err]
                    y_true = m_all[i_img][:3, 3] + offset_all[i_img]  # true target at xt
                    detail["target_measured"] = [round(float(v), 4) for v in res.target_room]
                    detail["target_error"] = [round(float(v), 4)
                                              for v in res.target_room - y_true]
                    over_t = np.linalg.norm(res.pose[:3]) > lim.max_translation_mm
                    over_r = np.max(np.abs(res.pose[3:])) > lim.max_rotation_deg
                    holds.discard("registration_failed")
                    if over_t or over_r:
                        holds.add("correction_limit")
                        detail["interlock"] = "correction_limit"
                    else:
                        holds.discard("correction_limit")
                    anat_est = matrix_from_pose(res.pose)
                    rotvec_est = Rotation.from_matrix(anat_est[:3, :3]).as_rotvec(
                        degrees=True)
                    anat_true_at_image = matrix_from_pose(res.pose_true)
                    have_spine = True
                    if rebuild:  # the model's points describe the patient before it moved
                        corr, shadow = new_models()
                        build_left = options.model_build_images - 1
                        next_image_t = t + options.model_build_spacing_s
                        holds.add("model_residual")
                        detail["interlock"] = "patient moved (rebuilding the model)"
                    if mode == "spine_breathing":
                        kf = int(np.searchsorted(frames.available_s, res.time_s, side="right"))
                        e_img, v_img = _signal_at(sig_meas, kf - 1, frame_dt)
                        if np.isfinite(e_img):
                            st = corr.add(res.time_s, e_img, res.target_room, v_img)
                            shadow.add(res.time_s, e_img, y_true, v_img)
                            detail["external_mm"] = round(e_img, 4)
                            detail.update(model_residual_mm=round(st.residual_mm, 4),
                                          model_ok=st.model_ok)
                            fallback = getattr(corr.model, "fallback_reason", None)
                            if fallback:  # e.g. linear_velocity on its first points
                                detail["model_fallback"] = fallback
                            if build_left == 0 and not st.model_ok:
                                holds.add("model_residual")
                                corr, shadow = new_models()
                                build_left = options.model_build_images
                                next_image_t = t + options.model_build_spacing_s
                                detail["interlock"] = "model_residual (rebuilding)"
                            elif build_left == 0:
                                holds.discard("model_residual")
                else:
                    holds.add("registration_failed")
                    detail["interlock"] = "registration_failed"
                event(res.time_s, "image", **detail)
                if build_left == 0 and have_spine:
                    holds.discard("setup")

            # ---- markers → predictor -------------------------------------------------------
            while next_frame < frames.time_s.size and frames.available_s[next_frame] <= t + 1e-9:
                s = sig_meas[next_frame]
                if np.isfinite(s):
                    last_valid_frame_t = frames.time_s[next_frame]
                    last_xz = centroid_xz[next_frame]
                p = float(predictor.update(s)[0])
                recent_pred.append(p)  # velocity over VELOCITY_FRAMES frames: less noise
                vel_pred = (p - recent_pred[0]) / (frame_dt * (len(recent_pred) - 1)) \
                    if len(recent_pred) > 1 else 0.0
                sig_pred = p
                apply_at = frames.time_s[next_frame] + latency_s - robot_cmd_latency
                pending.append((apply_at, sig_pred, vel_pred))
                next_frame += 1
            while pending and pending[0][0] <= t + 1e-9:
                _, s_hat_now, v_hat_now = pending.popleft()
            if (mode != "none" and have_spine and "patient_moved" not in holds
                    and np.hypot(*(last_xz - ref_xz)) > options.patient_moved_mm):
                holds.add("patient_moved")
                next_image_t = t
                event(t, "patient_moved", marker_shift_mm=round(float(np.hypot(
                    *(last_xz - ref_xz))), 3))
            if mode == "spine_breathing":
                if t - last_valid_frame_t - camera.latency_s > options.markers_lost_s:
                    holds.add("markers_lost")
                else:
                    holds.discard("markers_lost")
                ext_lo, ext_hi = corr.ext_range
                span = max(ext_hi - ext_lo, 1e-6)
                margin = options.model_range_margin * span
                if corr.fitted and np.isfinite(s_hat_now) and not (
                        ext_lo - margin <= s_hat_now <= ext_hi + margin):
                    holds.add("outside_model_range")
                else:
                    holds.discard("outside_model_range")
            rec.ext_predicted[i] = s_hat_now

            # ---- commanded target ------------------------------------------------------------
            x0 = beams[min(beam_k, len(beams) - 1)].aim_room if beams else np.zeros(3)
            m = m_all[i]
            tgt = m[:3, :3] @ x0 + m[:3, 3] + offset_all[i]
            rec.target_true[i] = tgt
            if mode == "spine_breathing" and corr.fitted and np.isfinite(s_hat_now):
                s_true = rec.ext_true[i]
                v_true = (s_true - rec.ext_true[max(i - 1, 0)]) / dt
                f_hat_pred = corr.predict_one(s_hat_now, v_hat_now, t)
                f_hat_true = corr.predict_one(s_true, v_true, t)
                f_star_true = shadow.predict_one(s_true, v_true, t)
                lever_est = anat_est[:3, :3] @ x0           # R̂ (x0 − xt), xt = 0
                lever_img = anat_true_at_image[:3, :3] @ x0  # R(ti) (x0 − xt)
                c = f_hat_pred + lever_est
                reg_part = f_hat_true - f_star_true + lever_est - lever_img
                at_image = f_star_true + lever_img
            else:
                c = anat_est[:3, :3] @ x0 + anat_est[:3, 3]
                at_image = anat_true_at_image[:3, :3] @ x0 + anat_true_at_image[:3, 3]
                reg_part = c - at_image
                f_hat_pred = f_hat_true = np.zeros(3)
            rec.target_commanded[i] = c

            # ---- delivery state -------------------------------------------------------------
            if beam_k < len(beams):
                beam = beams[beam_k]
                if not at_node and robot.arrived:
                    at_node = True
                    event(t, "node", beam=beam_k, node=beam.node)
                robot.command(beam, c, rotvec_est)
            robot.step(t, dt)
            src, d = robot.beam_axis()
            rec.robot_error_mm[i] = robot.following_error_mm
            if at_node and robot.following_error_mm > lim.max_robot_error_mm:
                holds.add("robot_following")
            else:
                holds.discard("robot_following")

            # ---- beam on / hold ---------------------------------------------------------------
            mask = 0
            for b, name in enumerate(HOLD_REASONS):
                if name in holds:
                    mask |= 1 << b
            rec.hold_mask[i] = mask
            delivering = beam_k < len(beams) and at_node
            if delivering and holds:
                if holds != {"setup"}:
                    rec.hold_s += dt
                for name in holds:
                    rec.hold_s_by_reason[name] = rec.hold_s_by_reason.get(name, 0.0) + dt
                if hold_started is None:
                    hold_started = t
                    event(t, "hold", reasons=sorted(holds))
                elif t - hold_started > options.max_hold_s:
                    rec.stopped_early = (f"beam held for more than {options.max_hold_s:g} s "
                                         f"({', '.join(sorted(holds))})")
                    event(t, "stopped", reason=rec.stopped_early)
                    i += 1
                    break
            elif delivering:
                if hold_started is not None:
                    event(t, "resume", held_s=round(t - hold_started, 4))
                    hold_started = None
                need = beams[beam_k].mu - rec.mu_delivered[beam_k]
                on = min(dt, need / rate_mu_s)
                rec.mu_delivered[beam_k] += on * rate_mu_s
                rec.beam_on_s[i] = on
                rec.beam_index[i] = beam_k
                if rec.mu_delivered[beam_k] >= beams[beam_k].mu - 1e-9:
                    rec.beams_completed += 1
                    beam_k += 1
                    at_node = False
                    if beam_k < len(beams):
                        robot.goto(beams[beam_k])
            # ---- truth-side metrics -----------------------------------------------------------
            rec.beam_source[i] = src
            rec.beam_direction[i] = d
            err = _perp(src - tgt, d)
            rec.error_vec[i] = err
            comp = rec.components
            comp["registration"][i] = _perp(reg_part, d)
            comp["correlation"][i] = _perp(at_image - tgt, d)
            comp["prediction"][i] = _perp(f_hat_pred - f_hat_true, d)
            comp["robot"][i] = err - _perp(c - tgt, d)
            step_wall += time.perf_counter() - ts
            if snap_every and i % snap_every == 0:
                rec.snapshots.append((float(t), robot.controller.joints_deg.copy()))
            if progress is not None and i % 256 == 0:
                progress(i)
            if beam_k >= len(beams):
                event(t, "plan_complete")
                i += 1
                break
        else:
            i = n
    except KeyboardInterrupt:
        rec.stopped_early = "interrupted (Ctrl-C)"
        event(t_all[i], "stopped", reason=rec.stopped_early)
    except Exception as exc:  # noqa: BLE001 - an early stop still writes what it has
        rec.stopped_early = f"{exc.__class__.__name__}: {exc}"
        event(t_all[i], "stopped", reason=rec.stopped_early)
        rec.n_steps = i
        rec.truncate()
        rec.wall_s = time.perf_counter() - wall0
        rec.step_wall_s = step_wall
        raise StoppedEarly(rec) from exc
    rec.n_steps = i
    rec.truncate()
    rec.wall_s = time.perf_counter() - wall0
    rec.step_wall_s = step_wall
    return rec


class StoppedEarly(Exception):
    """Carries the partial record of a run that raised."""

    def __init__(self, record: LoopRecord):
        super().__init__(record.stopped_early)
        self.record = record
        self.result = None  # set by simulate(): the RunResult of the partial run


def _signal_at(sig: NDArray[np.float64], k: int, frame_dt: float) -> tuple[float, float]:
    """External signal and its velocity from the newest valid frames up to index ``k``."""
    valid = [j for j in range(max(k - VELOCITY_FRAMES, 0), k + 1) if np.isfinite(sig[j])]
    if not valid:
        return float("nan"), 0.0
    j1 = valid[-1]
    j0 = valid[0] if len(valid) > 1 else j1
    v = (sig[j1] - sig[j0]) / ((j1 - j0) * frame_dt) if j1 > j0 else 0.0
    return float(sig[j1]), float(v)
