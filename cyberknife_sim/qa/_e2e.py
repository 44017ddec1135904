"""The simulated end-to-end (E2E) targeting test on the ball-cube phantom.

The whole chain runs as in a clinical E2E test (AAPM TG-135, Dieterich et al., Med Phys
2011;38:2914; AAPM MPPG 9.a, Halvorsen et al., JACMP 2017;18(5):10): the ball-cube CT is
the planning CT, the plan aims at the ball, the phantom is set up with a (seeded) residual
offset, the loop images it (live X-ray pair + spine registration), moves the robot and delivers the
plan; the dose delivered to the two films (:func:`cyberknife_sim.dose.delivered_dose_gy`,
each step's actual beam axis in the moving phantom's CT frame) is analysed for the centroid
of its 50 % isodose (:mod:`._film`).

Tests
-----
* ``static``: no breathing, no drift, ``tracking.mode: spine`` (Xsight-Spine-style);
  tolerance 0.95 mm.
* ``motion``: the scene's breathing moves the phantom (the ball follows the target motion;
  ``breathing_moves_spine``), ``tracking.mode: spine_breathing`` (Synchrony-style);
  tolerance 1.5 mm.

Both tolerances are TG-135's E2E limits for the total targeting error (static tracking
methods <= 0.95 mm, Synchrony <= 1.5 mm: Dieterich et al. 2011, table of QA tolerances).

Reference point on the films. The plan here is the generator's: isocentric beams aimed at
the ball centre with un-optimised MU, mostly from the anterior half space (the robot cannot
reach below the couch). Its dose falls off along each beam (depth dose, inverse square), so
its own 50 % isodose centroid sits a few tenths of a mm toward the beams' entrance (measured:
about -0.5 to -0.9 mm in y, anterior). A clinical E2E plan is optimised on the ball and puts
that centroid on the ball centre. So each film's error is the delivered dose's centroid minus
the planned dose's centroid (both with the same engine, on the same film points); the
planned centroid's offset from the ball is reported beside it
(``plan_centroid_offset_mm``), and the delivered centroid minus the ball is their sum.

Set-up offset (assumption): translation per axis N(0, 2 mm) clipped to +-5 mm and rotation
per axis N(0, 0.3 deg) clipped to +-1 deg (inside the 1.5 deg correction limit with room for
the registration's own error), drawn from the run's seed; it enters the scene
as ``motion.spine.setup_error_mm`` / ``setup_error_deg``, the residual set-up at t = 0 that
the first X-ray pair finds and the robot corrects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError
from ._ballcube import BallCube, Film, make_ball_cube_phantom
from ._film import FilmResult, isodose_centroid_mm, total_targeting_error

__all__ = ["STATIC_TOLERANCE_MM", "MOTION_TOLERANCE_MM", "E2EResult", "axis_intersection_ct",
           "draw_setup_offset", "e2e_scene", "run_e2e"]

STATIC_TOLERANCE_MM = 0.95
"""TG-135 E2E total targeting error limit, static tracking (Dieterich et al. 2011)."""
MOTION_TOLERANCE_MM = 1.5
"""TG-135 E2E total targeting error limit, Synchrony motion tracking (Dieterich et al. 2011)."""

CT_NAME = "ball_cube_ct.nii.gz"


@dataclass
class E2EResult:
    """One E2E test.

    Attributes
    ----------
    films : tuple of FilmResult
        ``(coronal, sagittal)``: the delivered dose's isodose (``contour_mm``, relative to
        the ball centre) and its centroid's error ``error_mm`` = delivered centroid minus
        the planned dose's centroid, in each film's (u, v) = (x, z) / (y, z), CT mm (module
        docstring: the plan's own centroid offset).
    error_ct_mm : ndarray, shape (3,)
        ``(dx, dy, mean dz)`` (CT mm).
    total_mm, tolerance_mm : float
    passed : bool
    motion : bool
    seed : int
    setup_mm, setup_deg : ndarray, shape (3,)
        The set-up offset the phantom started with.
    axis_point_error_ct_mm : ndarray, shape (3,)
        Where the run's actual beam axes meet (MU-weighted least squares) minus the ball
        centre, CT mm: what the record's own targeting error predicts for the films.
    film_doses_gy : tuple of ndarray
        The two films' delivered dose images ``[iv, iu]`` (Gy).
    plan_films : tuple of FilmResult
        The planned dose on the films (no motion, no error): ``error_mm`` is the plan's own
        centroid offset from the ball centre.
    ball : BallCube
    run : RunResult
    """

    films: tuple[FilmResult, FilmResult]
    error_ct_mm: NDArray[np.float64]
    total_mm: float
    tolerance_mm: float
    passed: bool
    motion: bool
    seed: int
    setup_mm: NDArray[np.float64]
    setup_deg: NDArray[np.float64]
    axis_point_error_ct_mm: NDArray[np.float64]
    film_doses_gy: tuple[NDArray[np.float64], NDArray[np.float64]]
    plan_films: tuple[FilmResult, FilmResult]
    ball: BallCube
    run: Any = field(repr=False)

    def to_dict(self) -> dict:
        """JSON-ready summary (mm, CT frame)."""
        r = self.run.summary
        te = getattr(r, "targeting_error_mm", None)
        return {
            "test": "motion" if self.motion else "static",
            "seed": self.seed,
            "frame": "CT (DICOM LPS), mm; film error = delivered minus planned 50 % isodose "
                     "centroid (the planned one's offset from the ball centre beside it)",
            "films": {f.name: {"error_mm": np.round(f.error_mm, 4).tolist(),
                               "plan_centroid_offset_mm": np.round(p.error_mm, 4).tolist(),
                               "axes": ["x", "z"] if f.name == "coronal" else ["y", "z"],
                               "max_gy": round(f.max_gy, 4)}
                      for f, p in zip(self.films, self.plan_films, strict=True)},
            "error_ct_mm": np.round(self.error_ct_mm, 4).tolist(),
            "total_targeting_error_mm": round(self.total_mm, 4),
            "tolerance_mm": self.tolerance_mm,
            "passed": bool(self.passed),
            "setup_offset": {"translation_mm": np.round(self.setup_mm, 4).tolist(),
                             "rotation_deg": np.round(self.setup_deg, 4).tolist()},
            "axis_point_error_ct_mm": np.round(self.axis_point_error_ct_mm, 4).tolist(),
            "ball_center_ct_mm": np.round(self.ball.ball_center_ct, 4).tolist(),
            "ball_radius_mm": self.ball.ball_radius_mm,
            "live_images": self.run.scene.room.imaging.live_images,
            "tracking_mode": self.run.scene.tracking.mode,
            "run_targeting_error_mm": dict(te) if isinstance(te, dict) else te,
        }


def draw_setup_offset(seed: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Seeded set-up offset (translation mm, rotation deg; module docstring)."""
    rng = np.random.default_rng([int(seed), 0xE2E])
    t = np.clip(rng.normal(0.0, 2.0, 3), -5.0, 5.0)
    r = np.clip(rng.normal(0.0, 0.3, 3), -1.0, 1.0)
    return t, r


def e2e_scene(ct_path: str | Path, ball: BallCube, *, base: Any = None, motion: bool = False,
              seed: int = 0, setup_mm: ArrayLike = (0.0, 0.0, 0.0),
              setup_deg: ArrayLike = (0.0, 0.0, 0.0), n_beams: int = 60,
              total_mu: float = 3000.0,
              live_images: Literal["realistic", "ideal"] | None = None) -> Any:
    """The scene of one E2E run: ``base`` (default: the built-in defaults) with the ball-cube
    CT as the patient, the plan aimed at the ball, and the static or motion test's motion
    and tracking (module docstring).

    Parameters
    ----------
    ct_path : str or Path
        The ball-cube CT file.
    ball : BallCube
    base : Scene, optional
    motion : bool
        Motion test (breathing, ``spine_breathing``) instead of the static one.
    seed : int
        ``simulation.seed``.
    setup_mm, setup_deg : array-like, shape (3,)
        Set-up offset (room mm, deg).
    n_beams, total_mu : int, float
        The (short) plan.
    live_images : {"realistic", "ideal"}, optional
        Overrides ``room.imaging.live_images``.

    Returns
    -------
    Scene
    """
    from ..scene import scene_from_dict

    d = base.model_dump(mode="json") if base is not None else scene_from_dict({}).model_dump(
        mode="json")
    d["patient"] = {**d["patient"], "phantom": None, "ct": str(Path(ct_path).resolve()),
                    "ct_phases": [], "ct_phase_levels": [],
                    "target_ct_mm": [float(v) for v in ball.ball_center_ct],
                    "target_ras_mm": None, "target_voxel": None,
                    "target_radius_mm": float(ball.ball_radius_mm)}
    d["plan"] = {**d["plan"], "file": None, "n_beams": int(n_beams), "total_mu": float(total_mu)}
    mot = d["motion"]
    mot["breathing"] = {**mot["breathing"], "enabled": bool(motion)}
    mot["spine"] = {**mot["spine"], "drift_mm_per_min": [0.0, 0.0, 0.0],
                    "drift_deg_per_min": [0.0, 0.0, 0.0], "shifts": [],
                    "setup_error_mm": [float(v) for v in np.asarray(setup_mm, float)],
                    "setup_error_deg": [float(v) for v in np.asarray(setup_deg, float)]}
    mot["cough"] = {**mot["cough"], "rate_per_min": 0.0}
    mot["trace"] = {**mot["trace"], "file": None, "external_file": None, "kind": "target"}
    mot["breathing_moves_spine"] = True
    mot["target_moves_with_spine"] = True
    d["tracking"] = {**d["tracking"], "mode": "spine_breathing" if motion else "spine"}
    if live_images is not None:
        d["room"]["imaging"] = {**d["room"]["imaging"], "live_images": live_images}
    d["simulation"] = {**d["simulation"], "seed": int(seed)}
    if "dose" in d:  # the films' dose is computed here, not the run's plan dose
        d["dose"] = {**d["dose"], "enabled": False}
    return scene_from_dict(d, origin="qa e2e")


def axis_intersection_ct(run: Any, target_ct: ArrayLike) -> NDArray[np.float64]:
    """Point nearest (MU-weighted least squares) to every beam-on step's actual axis, in the
    moving phantom's CT frame (CT mm).

    A systematic offset ``d`` of every axis (all axes through ``target + d``) shifts the
    dose, hence its isodose centroid, by ``d``; the mean of the per-beam targeting-error
    vectors would not (each is ``d``'s projection on that beam's lateral plane).
    """
    from ..dose._delivered import axes_in_ct

    rec = run.record
    steps = np.flatnonzero((rec.beam_on_s > 0) & (rec.beam_index >= 0))
    if steps.size == 0:
        raise InputError("qa e2e: the run delivered no beam")
    src, d = axes_in_ct(rec, steps, target_ct)
    w = rec.beam_on_s[steps]
    proj = np.eye(3)[None] - d[:, :, None] * d[:, None, :]
    a = np.einsum("n,nij->ij", w, proj)
    b = np.einsum("n,nij,nj->i", w, proj, src)
    return np.linalg.solve(a, b)


def run_e2e(out_dir: str | Path, *, seed: int = 0, motion: bool = False,
            setup_mm: ArrayLike | None = None, setup_deg: ArrayLike | None = None,
            n_beams: int = 60, total_mu: float = 3000.0, level: float = 0.5,
            live_images: Literal["realistic", "ideal"] | None = None, base: Any = None,
            ball: BallCube | None = None,
            progress: Callable[[int, int], None] | None = None) -> E2EResult:
    """Run one E2E test; writes ``out_dir/ball_cube_ct.nii.gz``.

    Parameters
    ----------
    out_dir : str or Path
        Folder for the CT (created).
    seed : int
        Run seed; also draws the set-up offset unless given.
    motion : bool
        Motion test (module docstring).
    setup_mm, setup_deg : array-like, shape (3,), optional
        Set-up offset (room mm, deg); default :func:`draw_setup_offset` ``(seed)``.
    n_beams, total_mu : int, float
        The plan.
    level : float
        Isodose level of the film analysis (fraction of each film's maximum).
    live_images : {"realistic", "ideal"}, optional
        Overrides the scene's live-image path.
    base : Scene, optional
        Scene the E2E scene starts from (default: built-in defaults).
    ball : BallCube, optional
        A ready phantom (default :func:`make_ball_cube_phantom`).
    progress : callable, optional
        ``progress(steps_done, steps_total)`` of the loop.

    Returns
    -------
    E2EResult
    """
    from ..anatomy.io import write_volume
    from ..dose import delivered_dose_gy, planned_beam_ct
    from ..dose._engine import DoseEngine
    from ..simulation import simulate

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ball = make_ball_cube_phantom() if ball is None else ball
    ct_path = write_volume(ball.volume, out / CT_NAME)
    t_draw, r_draw = draw_setup_offset(seed)
    set_t = t_draw if setup_mm is None else np.asarray(setup_mm, dtype=np.float64)
    set_r = r_draw if setup_deg is None else np.asarray(setup_deg, dtype=np.float64)
    scene = e2e_scene(ct_path, ball, base=base, motion=motion, seed=seed, setup_mm=set_t,
                      setup_deg=set_r, n_beams=n_beams, total_mu=total_mu,
                      live_images=live_images)
    run = simulate(scene, seed=seed, progress=progress)
    if run.summary.stopped_early:
        raise InputError(f"qa e2e: the run stopped early ({run.summary.stopped_early})")
    engine = DoseEngine(ball.volume)
    films: tuple[Film, Film] = ball.films
    pts = np.vstack([f.points_ct() for f in films])
    c = ball.ball_center_ct
    beam_doses = [engine.beam(*planned_beam_ct(b, c), b.collimator_mm, pts) for b in run.beams]
    planned = np.sum([b.mu * bd.dense() for b, bd in zip(run.beams, beam_doses, strict=True)],
                     axis=0)
    delivered = delivered_dose_gy(engine, run.beams, run.record, target_ct=c, points_ct=pts,
                                  beam_doses=beam_doses)
    plan_res, raw_res = (_analyse(d, films, level) for d in (planned, delivered))
    res = tuple(replace(r, error_mm=r.error_mm - p.error_mm)
                for r, p in zip(raw_res[0], plan_res[0], strict=True))
    vec, total = total_targeting_error(res[0].error_mm, res[1].error_mm)
    tol = MOTION_TOLERANCE_MM if motion else STATIC_TOLERANCE_MM
    axis_err = axis_intersection_ct(run, c) - c
    return E2EResult(res, vec, total, tol, bool(total <= tol), bool(motion), int(seed),
                     np.asarray(set_t, float), np.asarray(set_r, float), axis_err, raw_res[1],
                     plan_res[0], ball, run)


def _analyse(dose: NDArray[np.float64], films: tuple[Film, Film], level: float
             ) -> tuple[tuple[FilmResult, FilmResult], tuple[NDArray[np.float64], ...]]:
    """Film results and images ``[iv, iu]`` of the two films' doses stacked in ``dose``."""
    n0 = films[0].u_mm.size * films[0].v_mm.size
    images = (dose[:n0].reshape(films[0].v_mm.size, films[0].u_mm.size),
              dose[n0:].reshape(films[1].v_mm.size, films[1].u_mm.size))
    res = tuple(isodose_centroid_mm(img, f.u_mm, f.v_mm, level=level, name=f.name)
                for img, f in zip(images, films, strict=True))
    return res, images  # type: ignore[return-value]
