"""Summary of a run and its files: ``summary.json``, ``timeseries.csv``, ``beams.csv``."""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import (
    COMPONENTS,
    beam_statistics,
    component_statistics,
    error_statistics,
)
from ..plan import Beam
from ..scene import Scene
from ._interlocks import HOLD_REASONS
from ._record import LoopRecord

__all__ = ["BEAMS_COLUMNS", "DECOMPOSITION_METHOD", "RunSummary", "summarize", "write_beams_csv",
           "write_summary", "write_timeseries_csv"]

DECOMPOSITION_METHOD = (
    "per-step vector decomposition, exact (the terms telescope): registration = the "
    "correlation model fitted to the registration's target positions minus a shadow model "
    "fitted to the TRUE target positions at the same X-ray points, both at the true external "
    "signal (plus the rotation error on the beam's lever from the target center); in modes "
    "without a breathing model, the registered minus the true imaged target position at the "
    "last image; correlation = shadow model minus the true target now (model error, motion "
    "since the model's points; all motion since the last image in modes without a breathing "
    "model, breathing included); prediction = model output at the predicted minus at the true "
    "external signal (latency, marker noise, dropped frames); robot = actual beam axis minus "
    "commanded target. Each is projected perpendicular to the actual beam, and the four "
    "vectors sum exactly to the targeting error vector; the RMS of each magnitude is reported "
    "(they add as vectors, not as RMS values).")


def _round(x, nd=6):
    if isinstance(x, dict):
        return {k: _round(v, nd) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_round(v, nd) for v in x]
    if isinstance(x, float | np.floating):
        return None if not np.isfinite(x) else round(float(x), nd)
    if isinstance(x, np.integer):
        return int(x)
    return x


@dataclass(frozen=True)
class RunSummary:
    """What ``summary.json`` holds (plain JSON types; floats rounded to 6 decimals; NaN as
    None). Lengths mm, times s, wall-clock times are informational (never used by the loop).

    Attributes
    ----------
    targeting_error_mm : dict
        ``rms``, ``mean``, ``p95``, ``max`` of the targeting error over beam-on time (None
        when the beam was never on).
    error_components_mm : dict
        Per source (registration, correlation, prediction, robot): RMS, p95, max (mm); see
        ``decomposition_method``.
    realtime_factor : float or None
        Simulated seconds per wall second of the loop (set-up excluded).
    realtime_factor_with_setup : float or None
        The same including the set-up (patient, plan, robot, imaging chain).
    robot_travel_s : float
        Time the robot spent on its way to a beam's node (beam off, not a hold; s). A robot
        that does not reach a node within ``tracking.interlocks.max_hold_s`` stops the run.
    imaging_wall_s : float
        Wall time spent in imaging events (render + registration) within the loop (s).
    predictor_guard : dict
        What the predictor's guard did over the run (gated samples, steps accepted, clamped
        predictions, time in fallback); its actions are also ``predictor_guard`` events.
    events : list of dict
        The event log (``time_s``, ``kind``, details).
    dose : dict or None
        Planned vs delivered dose (``planned``, ``delivered``: ``target`` and ``cord``
        metrics; ``gamma`` pass rates); None when the scene's dose is off.
    outputs : tuple of str
        Files of the run folder (set by ``write_run``).
    """

    scene: str
    scene_file: str | None
    seed: int
    tracking_mode: str
    imaging: str
    target_localization: str
    duration_requested_s: float
    simulated_s: float
    stopped_early: str | None
    plan_complete: bool
    beams_total: int
    beams_completed: int
    mu_planned: float
    plan_beam_on_s: float
    plan_delivery_s: float | None
    mu_delivered: float
    targeting_error_mm: dict[str, float | None]
    within_0_5mm_fraction: float | None
    within_1mm_fraction: float | None
    beam_on_s: float
    error_components_mm: dict[str, Any]
    decomposition_method: str
    mu_weighted: dict[str, Any]
    beam_hold_s: float
    beam_hold_s_by_reason: dict[str, float]
    robot_travel_s: float
    images: dict[str, int]
    registration_error_vs_truth: dict[str, float]
    predictor_guard: dict[str, Any]
    realtime_factor: float | None
    realtime_factor_with_setup: float | None
    loop_wall_s: float
    setup_wall_s: float
    imaging_wall_s: float
    mean_step_ms: float
    n_steps: int
    time_step_s: float
    events: list[dict] = field(default_factory=list)
    dose: dict[str, Any] | None = None
    outputs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (a deep copy; keys in field order)."""
        d = dataclasses.asdict(self)
        d["outputs"] = list(self.outputs)
        return d

    def to_json(self) -> str:
        """``summary.json``'s text (indented, keys in field order)."""
        return json.dumps(self.to_dict(), indent=1) + "\n"


def _registration_errors(rec: LoopRecord) -> dict[str, float]:
    pose_err = np.array([ev["pose_error"] for ev in rec.events
                         if ev["kind"] == "image" and ev.get("accepted")]).reshape(-1, 6)
    if not pose_err.size:
        return {}
    return {"translation_rms_mm": float(np.sqrt(np.mean(np.sum(pose_err[:, :3]**2, 1)))),
            "translation_max_mm": float(np.max(np.linalg.norm(pose_err[:, :3], axis=1))),
            "rotation_rms_deg": float(np.sqrt(np.mean(np.sum(pose_err[:, 3:]**2, 1)))),
            "rotation_max_deg": float(np.max(np.abs(pose_err[:, 3:])))}


def summarize(rec: LoopRecord, beams: list[Beam], *, scene: Scene, imaging: str,
              setup_wall_s: float = 0.0, localization: str = "") -> tuple[RunSummary, list[dict]]:
    """The run's summary and its per-beam rows.

    Parameters
    ----------
    rec : LoopRecord
        The run.
    beams : list of Beam
        The plan.
    scene : Scene
        The resolved scene that ran (name, seed, duration, tracking mode, clock).
    imaging : str
        Imaging seam used (``"xray"`` or ``"truth"``).
    setup_wall_s : float
        Wall time spent building the patient, plan and robot before the loop (s).
    localization : str
        How the target position was measured at each X-ray pair (registration, or the
        sensor model of a soft-tissue target).

    Returns
    -------
    summary : RunSummary
    beam_rows : list of dict
        Per beam: ``beam``, ``mu``, ``beam_on_s``, ``rms_mm``, ``mean_mm``, ``p95_mm``,
        ``max_mm``.
    """
    on = rec.beam_on_s > 0
    w = rec.beam_on_s[on]
    err = np.linalg.norm(rec.error_vec[on], axis=1)
    stats = error_statistics(err, w)
    comps = component_statistics({k: rec.components[k][on] for k in COMPONENTS}, w)
    mu = np.array([b.mu for b in beams])
    rows, mu_weighted = beam_statistics(rec.beam_index, np.linalg.norm(rec.error_vec, axis=1)
                                        if rec.n_steps else np.zeros(0), rec.beam_on_s, mu)
    sim_s = rec.n_steps * scene.simulation.time_step_s
    rate_mu_s = scene.plan.dose_rate_mu_per_min / 60.0
    images = rec.images
    total_wall = rec.wall_s + setup_wall_s
    summary = {
        "scene": scene.name,
        "scene_file": str(scene.source) if scene.source else None,
        "seed": int(scene.simulation.seed),
        "tracking_mode": scene.tracking.mode,
        "imaging": imaging,
        "target_localization": localization,
        "duration_requested_s": float(scene.simulation.duration_s),
        "simulated_s": sim_s,
        "stopped_early": rec.stopped_early,
        "plan_complete": rec.beams_completed == len(beams),
        "beams_total": len(beams),
        "beams_completed": rec.beams_completed,
        "mu_planned": float(mu.sum()),
        "plan_beam_on_s": float(mu.sum()) / rate_mu_s,
        "plan_delivery_s": next((ev["time_s"] for ev in rec.events
                                 if ev["kind"] == "plan_complete"), None),
        "mu_delivered": float(rec.mu_delivered.sum()),
        "targeting_error_mm": {k: stats[k] for k in ("rms", "mean", "p95", "max")},
        "within_0_5mm_fraction": stats["within_0_5mm"],
        "within_1mm_fraction": stats["within_1mm"],
        "beam_on_s": stats["beam_on_s"],
        "error_components_mm": comps,
        "decomposition_method": DECOMPOSITION_METHOD,
        "mu_weighted": mu_weighted,
        "beam_hold_s": rec.hold_s,
        "beam_hold_s_by_reason": rec.hold_s_by_reason,
        "robot_travel_s": rec.travel_s,
        "images": {"total": len(images), "rejected": sum(not r.accepted for r in images),
                   "blank": sum(r.blank for r in images)},
        "registration_error_vs_truth": _registration_errors(rec),
        "predictor_guard": rec.predictor_guard,
        "realtime_factor": sim_s / rec.wall_s if rec.wall_s > 0 else None,
        "realtime_factor_with_setup": sim_s / total_wall if total_wall > 0 else None,
        "loop_wall_s": rec.wall_s,
        "setup_wall_s": setup_wall_s,
        "imaging_wall_s": rec.imaging_wall_s,
        "mean_step_ms": 1e3 * rec.wall_s / max(rec.n_steps, 1),
        "n_steps": rec.n_steps,
        "time_step_s": scene.simulation.time_step_s,
        "events": rec.events,
    }
    return RunSummary(**_round(summary)), rows


def write_summary(path: Path, summary: RunSummary) -> None:
    """Write ``summary.json`` (UTF-8, indented, keys in field order)."""
    Path(path).write_text(summary.to_json(), encoding="utf-8")


BEAMS_COLUMNS = (["beam", "node", "collimator_mm"] + [f"source_{a}_mm" for a in "xyz"]
                 + [f"aim_{a}_mm" for a in "xyz"]
                 + ["mu", "beam_on_s", "rms_mm", "mean_mm", "p95_mm", "max_mm"])
"""Columns of ``beams.csv``: the plan's beam (node, collimator, linac source and aim point in
room mm at planned alignment) and its delivered error statistics (mm; beam-on seconds)."""


def write_beams_csv(path: Path, rows: list[dict], beams: list[Beam]) -> None:
    """One row per delivered beam: its geometry and its error statistics (BEAMS_COLUMNS)."""
    stats = BEAMS_COLUMNS[9:]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh)
        wr.writerow(BEAMS_COLUMNS)
        for r in rows:
            b = beams[r["beam"]]
            wr.writerow([r["beam"], b.node.index, f"{b.collimator_mm:g}"]
                        + [f"{v:.4f}" for v in b.source_room] + [f"{v:.4f}" for v in b.aim_room]
                        + [f"{r[c]:.6g}" for c in stats])


TIMESERIES_COLUMNS = (
    ["time_s"] + [f"target_true_{a}_mm" for a in "xyz"]
    + [f"target_commanded_{a}_mm" for a in "xyz"] + [f"beam_source_{a}_mm" for a in "xyz"]
    + [f"beam_dir_{a}" for a in "xyz"] + ["error_mm"] + [f"err_{c}_mm" for c in COMPONENTS]
    + ["beam_on", "beam_on_s", "beam", "ext_true_mm", "ext_predicted_mm", "robot_following_mm",
       "holds", "events"])
"""Columns of ``timeseries.csv`` (room frame, mm, 4 decimals; beam direction unit vector,
8 decimals; ``holds`` and ``events`` are ``|``-joined)."""


def write_timeseries_csv(path: Path, rec: LoopRecord) -> None:
    """One row per step: truth, estimate, beam axis, error and its components, state."""
    n = rec.n_steps
    err = np.linalg.norm(rec.error_vec, axis=1)
    comp = np.column_stack([np.linalg.norm(rec.components[c], axis=1) for c in COMPONENTS]) \
        if n else np.zeros((0, len(COMPONENTS)))
    num = np.column_stack([rec.target_true, rec.target_commanded, rec.beam_source,
                           rec.beam_direction, err, comp])
    ev_by_step: dict[int, list[str]] = {}
    dt = rec.time_s[1] - rec.time_s[0] if n > 1 else 1.0
    for ev in rec.events:
        k = min(max(int(round(ev["time_s"] / dt)), 0), max(n - 1, 0))
        ev_by_step.setdefault(k, []).append(ev["kind"])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh)
        wr.writerow(TIMESERIES_COLUMNS)
        for i in range(n):
            holds = "|".join(name for b, name in enumerate(HOLD_REASONS)
                             if rec.hold_mask[i] >> b & 1)
            wr.writerow([f"{rec.time_s[i]:.4f}"] + [f"{v:.4f}" for v in num[i, :9]]
                        + [f"{v:.8f}" for v in num[i, 9:12]] + [f"{v:.4f}" for v in num[i, 12:]]
                        + [int(rec.beam_on_s[i] > 0), f"{rec.beam_on_s[i]:.5f}",
                           int(rec.beam_index[i]), f"{rec.ext_true[i]:.4f}",
                           f"{rec.ext_predicted[i]:.4f}", f"{rec.robot_error_mm[i]:.4f}",
                           holds, "|".join(ev_by_step.get(i, ()))])
