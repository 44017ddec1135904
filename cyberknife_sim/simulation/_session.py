"""One simulated treatment from a scene: build the parts, run the loop, write the outputs.

Random streams: the run's seed is split (``numpy.random.Generator.spawn``) into one
independent stream per process — motion truth, marker camera, live-image noise, plan and
robot — so that no process's draws depend on another's or on the run's length: the first
60 s of a 120 s run are those of a 60 s run, bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import CksimError, InputError
from ..motion import MarkerCamera, MotionTruth
from ..plan import Beam
from ..scene import Scene, scene_to_yaml
from ._imaging import make_imager
from ._loop import StoppedEarly, TreatmentLoop
from ._outputs import (
    TIMESERIES_COLUMNS,
    RunSummary,
    summarize,
    write_beams_csv,
    write_summary,
    write_timeseries_csv,
)
from ._record import LoopRecord
from ._seams import ImagerSeam, RobotSeam

if TYPE_CHECKING:  # pragma: no cover
    from ..dose import DoseResult, PlanDose

__all__ = ["RunResult", "build_loop", "resolve_scene", "simulate", "write_run", "write_video"]

ImagingMethod = Literal["xray", "truth"]


@dataclass
class RunResult:
    """A finished (or stopped) run.

    Attributes
    ----------
    scene : Scene
        The resolved scene that ran (seed and duration overrides applied).
    summary : RunSummary
        What ``summary.json`` holds.
    record : LoopRecord
        Every step's arrays and the event log.
    beams : list of Beam
        The plan in delivery order.
    beam_rows : list of dict
        Per-beam statistics (``beams.csv``).
    robot : RobotSeam
        The robot that ran (the PyBullet one renders the video).
    dose : DoseResult or None
        Planned and delivered dose (None when the scene's dose is off).
    """

    scene: Scene
    summary: RunSummary
    record: LoopRecord
    beams: list[Beam]
    beam_rows: list[dict]
    robot: RobotSeam
    dose: DoseResult | None = None

    @property
    def timeseries(self) -> dict[str, NDArray]:
        """The time series as arrays, one per ``timeseries.csv`` column (room mm, s; the
        ``holds`` and ``events`` columns are left to the CSV), each of length ``n_steps``."""
        rec = self.record
        out: dict[str, NDArray] = {"time_s": rec.time_s}
        for name, arr in (("target_true", rec.target_true),
                          ("target_commanded", rec.target_commanded),
                          ("beam_source", rec.beam_source)):
            for j, a in enumerate("xyz"):
                out[f"{name}_{a}_mm"] = arr[:, j]
        for j, a in enumerate("xyz"):
            out[f"beam_dir_{a}"] = rec.beam_direction[:, j]
        out["error_mm"] = np.linalg.norm(rec.error_vec, axis=1)
        for c, v in rec.components.items():
            out[f"err_{c}_mm"] = np.linalg.norm(v, axis=1)
        out.update(beam_on=(rec.beam_on_s > 0).astype(np.int64), beam_on_s=rec.beam_on_s,
                   beam=rec.beam_index, ext_true_mm=rec.ext_true,
                   ext_predicted_mm=rec.ext_predicted, robot_following_mm=rec.robot_error_mm)
        assert list(out) == TIMESERIES_COLUMNS[:-2]
        return out


def resolve_scene(scene: Scene, *, seed: int | None = None,
                  duration_s: float | None = None) -> Scene:
    """``scene`` with the seed and duration overrides applied (validated like the file)."""
    sim = scene.simulation
    update: dict = {}
    if seed is not None:
        update["seed"] = seed
    if duration_s is not None:
        update["duration_s"] = duration_s
    if not update:
        return scene
    from ..scene import scene_from_dict

    data = scene.model_dump(mode="json")
    data["simulation"] = {**sim.model_dump(mode="json"), **update}
    origin = "--seed/--duration-s"
    resolved = scene_from_dict(data, origin=origin)
    return resolved.model_copy(update={"source": scene.source})


def build_loop(scene: Scene, *, seed: int | None = None, duration_s: float | None = None,
               imaging: ImagingMethod | ImagerSeam = "xray", robot: RobotSeam | None = None,
               beams: list[Beam] | None = None,
               video_every_s: float | None = None) -> TreatmentLoop:
    """Build every part of a run of ``scene`` and the :class:`TreatmentLoop` that drives them,
    ready to :meth:`~TreatmentLoop.run` (or to step through event by event). Parameters as
    :func:`simulate`."""
    scene = resolve_scene(scene, seed=seed, duration_s=duration_s)
    sim = scene.simulation
    rng_truth, rng_camera, rng_imaging, rng_plan = np.random.default_rng(sim.seed).spawn(4)
    truth = MotionTruth.from_scene(scene, rng_truth)
    camera = MarkerCamera(scene.tracking.markers, truth, rng_camera)
    generated = beams is None and scene.plan.file is None
    if beams is None or robot is None:
        from ._robot import build_plan_and_robot

        beams, robot = build_plan_and_robot(scene, rng=rng_plan, beams=beams, robot=robot)
    plan_dose = None
    if scene.dose.enabled:
        from ..anatomy.patient import load_patient
        from ..dose import plan_dose as _plan_dose

        plan_dose, beams = _plan_dose(scene, load_patient(scene), list(beams),
                                      optimize=generated and scene.dose.optimize_mu)
    if isinstance(imaging, str):
        if imaging not in ("xray", "truth"):
            raise InputError(f"imaging must be xray or truth (got {imaging!r})")
        imager: ImagerSeam = make_imager(
            imaging, scene, rng=rng_imaging,
            breathing=lambda t: truth.breathing(t, internal=True))
    else:
        imager = imaging
    loop = TreatmentLoop(scene, beams=beams, truth=truth, camera=camera, imager=imager,
                         robot=robot, duration_s=sim.duration_s, snapshot_every_s=video_every_s)
    loop.plan_dose = plan_dose
    return loop


def simulate(scene: Scene, *, seed: int | None = None, duration_s: float | None = None,
             imaging: ImagingMethod | ImagerSeam = "xray", robot: RobotSeam | None = None,
             beams: list[Beam] | None = None,
             progress: Callable[[int, int], None] | None = None,
             video_every_s: float | None = None) -> RunResult:
    """Simulate one treatment of ``scene``.

    Parameters
    ----------
    scene : Scene
        The scene; it defines the run (its ``simulation.seed`` and ``duration_s`` unless
        overridden here).
    seed : int, optional
        Overrides ``scene.simulation.seed``.
    duration_s : float, optional
        Overrides ``scene.simulation.duration_s`` (s); the run also ends when the plan is
        delivered.
    imaging : {"xray", "truth"} or ImagerSeam
        The imaging seam: live X-ray pair + registration, or ideal registration (ablation),
        or an imager instance (e.g. a test double).
    robot, beams : optional
        Replace the PyBullet robot and the generated plan (tests, ablations).
    progress : callable, optional
        ``progress(steps_done, steps_total)``.
    video_every_s : float, optional
        Record the robot's joints this often (s) for :func:`write_run`'s video.

    Returns
    -------
    RunResult
        Also for a run stopped by an interlock or Ctrl-C (``summary.stopped_early``).

    Raises
    ------
    StoppedEarly
        When a part raised; carries the partial :class:`RunResult` in ``.result``.
    InputError
        Bad overrides (one line).
    """
    wall0 = time.perf_counter()
    loop = build_loop(scene, seed=seed, duration_s=duration_s, imaging=imaging, robot=robot,
                      beams=beams, video_every_s=video_every_s)
    scene, beams, imager, robot = loop.scene, loop.beams, loop.imager, loop.robot
    setup_wall = time.perf_counter() - wall0
    cb = None if progress is None else (lambda k: progress(k, loop.n_steps))
    pd = loop.plan_dose
    try:
        rec = loop.run(cb)
    except StoppedEarly as exc:
        exc.result = _result(exc.record, beams, scene, imager, robot, setup_wall, pd)
        raise
    return _result(rec, beams, scene, imager, robot, setup_wall, pd)


def _result(rec: LoopRecord, beams: list[Beam], scene: Scene, imager: ImagerSeam,
            robot: RobotSeam, setup_wall: float, plan_dose: PlanDose | None) -> RunResult:
    summary, rows = summarize(rec, beams, scene=scene, imaging=imager.method,
                              setup_wall_s=setup_wall, localization=imager.localization)
    dose = None
    if plan_dose is not None:
        from ..dose import run_dose

        dose = run_dose(plan_dose, scene, beams, rec)
        summary = replace(summary, dose=dose.metrics)
    return RunResult(scene=scene, summary=summary, record=rec, beams=beams, beam_rows=rows,
                     robot=robot, dose=dose)


def write_run(out_dir: str | Path, result: RunResult, *, plots: bool = True,
              video: bool = False, video_size: tuple[int, int] = (640, 480),
              video_fps: float = 10.0) -> dict[str, Path]:
    """Write the run folder: ``scene.yaml`` (the resolved scene, so that
    ``cksim run DIR/scene.yaml`` reproduces the run), ``summary.json``, ``timeseries.csv``,
    ``beams.csv``, plots and ``report.html``; with ``video``, ``robot.mp4`` (or
    ``robot.gif`` where OpenCV cannot write MP4) from the joint snapshots
    (``simulate(video_every_s=...)``), ``video_size`` (width, height) pixels at
    ``video_fps`` frames per second (see :func:`write_video`).

    Returns
    -------
    dict
        Name → path of each file written. ``result.summary`` gets the list of outputs.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"scene": out / "scene.yaml", "summary": out / "summary.json",
             "timeseries": out / "timeseries.csv", "beams": out / "beams.csv"}
    files["scene"].write_text(scene_to_yaml(result.scene), encoding="utf-8")
    if result.dose is not None:
        from ..dose import write_dose_files

        files.update(write_dose_files(out, result.dose))
    write_timeseries_csv(files["timeseries"], result.record)
    write_beams_csv(files["beams"], result.beam_rows, result.beams)
    if plots:
        from ..report import write_plots, write_report

        plain = result.summary.to_dict()
        pngs = write_plots(out, result.record, result.beams, plain, scene=result.scene,
                           dose=result.dose)
        files["report"] = write_report(out, plain, result.beam_rows, pngs, dose=result.dose,
                                       record=result.record, beams=result.beams,
                                       scene=result.scene)
        files.update({p.stem: p for p in pngs})
    if video:
        files["video"] = write_video(out / "robot.mp4", result, size=video_size, fps=video_fps)
    result.summary = replace(result.summary,
                             outputs=tuple(sorted({p.name for p in files.values()})))
    write_summary(files["summary"], result.summary)
    return files


def write_video(path: Path, result: RunResult, *, size: tuple[int, int] = (640, 480),
                fps: float = 10.0, fmt: Literal["auto", "mp4", "gif"] = "auto") -> Path:
    """The robot tracking, one frame per joint snapshot: the PyBullet headless render with
    the beam axis (red while the beam is on), the target, a time stamp, the beam's state
    (on, hold and why, moving) and a beam's-eye inset of the targeting error drawn on it.

    Parameters
    ----------
    path : Path
        Output file; its suffix is set by the format (``.mp4`` or ``.gif``).
    result : RunResult
        A run simulated with ``video_every_s`` (the snapshots' spacing, s of simulated time).
    size : (int, int)
        Frame width and height (pixels, 64..4096).
    fps : float
        Frames per second of the video (0 < fps <= 120).
    fmt : {"auto", "mp4", "gif"}
        ``"auto"``: MP4 (OpenCV ``mp4v``) where OpenCV can write it, GIF otherwise.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    CksimError
        When the run recorded no snapshots (no PyBullet robot, or no ``video_every_s``).
    ValueError
        Bad ``size`` or ``fps``.
    """
    from ._interlocks import HOLD_REASONS
    from ._robot import ControllerRobot
    from ._video import Camera, camera_matrices, draw_overlay, encode_frames, frame_state

    width, height = (int(v) for v in size)
    if not (64 <= width <= 4096 and 64 <= height <= 4096):
        raise ValueError(f"size must be 64..4096 pixels each, got {width}x{height}")
    if not 0 < fps <= 120:
        raise ValueError(f"fps must be in (0, 120], got {fps}")
    rec = result.record
    snaps = rec.snapshots
    if not snaps or not isinstance(result.robot, ControllerRobot):
        raise CksimError("--video: no robot snapshots were recorded (needs the PyBullet robot)")
    world = result.robot.controller.world
    camera = Camera()
    view, proj = camera_matrices(camera, width, height)
    every_s = snaps[1][0] - snaps[0][0] if len(snaps) > 1 else 1.0 / fps
    speedup = round(every_s * fps, 3)

    def frames():
        for t, q in snaps:
            world.set_joints(q)
            src, d = world.beam_axis()
            i = min(int(np.searchsorted(rec.time_s, t - 1e-9)), rec.time_s.size - 1)
            st = frame_state(rec, i, source_room=src, direction_room=d,
                             n_beams=len(result.beams), speedup=speedup,
                             hold_reasons=HOLD_REASONS)
            img = world.render_frame(width, height, eye_room=camera.eye_room,
                                     look_at_room=camera.look_at_room, fov_deg=camera.fov_deg)
            yield draw_overlay(img, st, view, proj)

    return encode_frames(frames(), Path(path), size=(width, height), fps=fps, fmt=fmt)
