"""One simulated treatment from a scene: build the parts, run the loop, write the outputs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..motion import MarkerCamera, MotionTruth
from ._imaging import Imager, ImagingMethod, make_imager
from ._loop import Beam, LoopOptions, LoopRecord, StoppedEarly, run_loop
from ._outputs import summarize, write_beams_csv, write_summary, write_timeseries_csv

__all__ = ["RunResult", "simulate", "write_run", "write_video"]


@dataclass
class RunResult:
    """A finished (or stopped) run: the record, the plan and the summary."""

    record: LoopRecord
    beams: list[Beam]
    summary: dict
    beam_rows: list[dict]
    robot: object = None


def _scene_for(scene, *, seed: int | None, duration_s: float | None):
    sim = scene.simulation
    update = {}
    if seed is not None:
        update["seed"] = int(seed)
    if duration_s is not None:
        if not duration_s > 0:
            from ..errors import InputError
            raise InputError(f"--duration-s must be positive (got {duration_s})")
        update["duration_s"] = float(duration_s)
    if update:
        sim = sim.model_copy(update=update)
        scene = scene.model_copy(update={"simulation": sim})
    return scene


def simulate(scene, *, seed: int | None = None, duration_s: float | None = None,
             imaging: ImagingMethod | Imager = "xray", options: LoopOptions | None = None,
             robot=None, beams: list[Beam] | None = None,
             progress: Callable[[int, int], None] | None = None,
             video_every_s: float | None = None) -> RunResult:
    """Simulate one treatment of ``scene``.

    Parameters
    ----------
    scene : Scene
        The scene (its ``simulation.seed`` and ``duration_s`` unless overridden).
    seed : int, optional
        Overrides ``scene.simulation.seed``.
    duration_s : float, optional
        Overrides ``scene.simulation.duration_s`` (s); the run also ends when the plan is
        delivered.
    imaging : {"xray", "truth"} or Imager
        The imaging seam: live X-ray pair + registration, or ideal registration (or an
        :class:`Imager` instance, e.g. a test double).
    options : LoopOptions
        Loop constants.
    robot, beams : optional
        Replace the PyBullet robot and the generated plan (tests, ablations).
    progress : callable, optional
        ``progress(steps_done, steps_total)``.
    video_every_s : float, optional
        Record the robot's joints this often (s) for :func:`write_run`'s video.

    Returns
    -------
    RunResult
        Also for a run stopped by an interlock or Ctrl-C (``summary["stopped_early"]``).
        A run that raised carries its partial result in the :class:`StoppedEarly` raised.
    """
    options = options or LoopOptions()
    scene = _scene_for(scene, seed=seed, duration_s=duration_s)
    sim = scene.simulation
    root = np.random.default_rng(sim.seed)
    rng_truth, rng_camera, rng_imaging, rng_plan = root.spawn(4)
    wall0 = time.perf_counter()
    truth = MotionTruth.from_scene(scene, rng_truth)
    camera = MarkerCamera(scene.tracking.markers, truth, rng_camera)
    if beams is None or robot is None:
        from ._robot import build_plan_and_robot
        beams, robot = build_plan_and_robot(scene, rng=rng_plan, beams=beams, robot=robot)
    if isinstance(imaging, Imager):
        imager = imaging
    else:
        imager = make_imager(imaging, scene, rng=rng_imaging,
                             target_localization_sigma_mm=options.target_localization_sigma_mm,
                             blank_times_s=tuple(getattr(sim, "blank_xray_at_s", ()) or ()))
    setup_wall = time.perf_counter() - wall0
    n_total = max(1, int(np.floor(sim.duration_s / sim.time_step_s + 1e-9)))
    cb = None if progress is None else (lambda k: progress(k, n_total))
    try:
        rec = run_loop(scene, beams=beams, truth=truth, camera=camera, imager=imager,
                       robot=robot, duration_s=sim.duration_s, options=options,
                       progress=cb, snapshot_every_s=video_every_s)
    except StoppedEarly as exc:
        exc.result = _result(exc.record, beams, scene, imager, setup_wall)
        exc.result.robot = robot
        raise
    result = _result(rec, beams, scene, imager, setup_wall)
    result.robot = robot
    return result


def _result(rec, beams, scene, imager, setup_wall) -> RunResult:
    summary, rows = summarize(rec, beams, scene=scene, seed=scene.simulation.seed,
                              imaging=imager.method, duration_s=scene.simulation.duration_s,
                              setup_wall_s=setup_wall, localization=imager.localization)
    return RunResult(record=rec, beams=beams, summary=summary, beam_rows=rows)


def write_run(out_dir: str | Path, result: RunResult, *, plots: bool = True,
              video: bool = False) -> dict[str, Path]:
    """Write ``summary.json``, ``timeseries.csv``, ``beams.csv``, plots and ``report.html``;
    with ``video``, ``robot.gif`` from the joint snapshots (``simulate(video_every_s=...)``).

    Returns
    -------
    dict
        Name → path of each file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"summary": out / "summary.json", "timeseries": out / "timeseries.csv",
             "beams": out / "beams.csv"}
    write_timeseries_csv(files["timeseries"], result.record)
    write_beams_csv(files["beams"], result.beam_rows)
    if plots:
        from ..report import write_plots, write_report
        pngs = write_plots(out, result.record, result.beams, result.summary)
        files["report"] = write_report(out, result.summary, result.beam_rows, pngs)
        files.update({p.stem: p for p in pngs})
    if video:
        files["video"] = write_video(out / "robot.gif", result)
    result.summary["outputs"] = sorted(p.name for p in files.values()) + ["summary.json"]
    write_summary(files["summary"], result.summary)
    return files


def write_video(path: Path, result: RunResult, *, size: tuple[int, int] = (320, 240),
                fps: float = 8.0) -> Path:
    """A GIF of the robot at each joint snapshot (PyBullet headless render, Pillow).

    Raises
    ------
    CksimError
        When the run recorded no snapshots (no PyBullet robot, or no ``video_every_s``).
    """
    from PIL import Image

    from ..errors import CksimError

    snaps = result.record.snapshots
    ctrl = getattr(result.robot, "controller", None)
    if not snaps or ctrl is None:
        raise CksimError("--video: no robot snapshots were recorded (needs the PyBullet robot)")
    world = ctrl.world
    frames = []
    for _, q in snaps:
        world.set_joints(q)
        frames.append(Image.fromarray(world.render_frame(*size)))
    frames[0].save(path, save_all=True, append_images=frames[1:],
                   duration=int(1000 / fps), loop=0)
    return Path(path)
