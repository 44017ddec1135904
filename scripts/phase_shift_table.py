"""Targeting error vs the internal/external phase shift, per correlation model, beside the
analytic law of a linear fit.

Usage: python scripts/phase_shift_table.py [--duration-s 300] [--imaging truth|xray]
       [--amplitudes-mm 10 20 27] [--models linear dual linear_velocity] [--seeds 0]
       [--shape-n 1] [--shifts-deg 0 5 10 15 20] [--set tracking.x.y=VALUE ...]

Runs scenes/phase_shift.yaml as a phantom (no period or amplitude variability; ``shape_n 1``:
a pure sine, the case the law is for) with ``motion.breathing.hysteresis_deg`` set to each
shift, ``motion.breathing.target_amplitude_mm`` (peak to peak) to each amplitude and
``tracking.correlation.model`` to each model. Prints a Markdown table of the beam-on
targeting error (RMS, p95, max; mm), its correlation component (RMS, max; mm) and the law:
for internal ``A sin(wt + φ)`` against external ``B sin(wt)`` the least-squares line leaves
``A sin φ cos(wt)``: max ``A sin φ``, RMS ``A sin φ / √2`` (``A`` = half the peak to peak),
which is also the smallest maximum any linear model can reach.
"""

from __future__ import annotations

import argparse

import numpy as np

from cyberknife_sim import simulate
from cyberknife_sim.scene import load_scene, scene_from_dict

SHIFTS_DEG = (0.0, 5.0, 10.0, 15.0, 20.0)
MODELS = ("linear", "dual", "linear_velocity")
AMPLITUDES_MM = (10.0, 20.0, 27.0)


def law_mm(shift_deg: float, amplitude_pp_mm: float) -> tuple[float, float]:
    """(RMS, max) (mm) of the least-squares linear fit's residual for a sine target of
    ``amplitude_pp_mm`` peak to peak leading a sine chest by ``shift_deg``."""
    a = 0.5 * amplitude_pp_mm * abs(np.sin(np.radians(shift_deg)))
    return a / np.sqrt(2.0), a


def run_errors(shift_deg: float, model: str, *, duration_s: float, imaging: str,
               amplitude_pp_mm: float | None = None, shape_n: int | None = None,
               seed: int | None = None, phantom: bool = False,
               overrides: dict[str, float] | None = None,
               scene_path: str = "scenes/phase_shift.yaml") -> dict[str, np.ndarray | float]:
    """Beam-on 3-D error magnitudes (mm) of one run: ``total`` and per component
    (``correlation``, ``prediction``, ...), and ``beam_on_s``.

    ``phantom`` turns off period and amplitude variability (a regular phantom motion);
    ``amplitude_pp_mm`` sets the target's peak-to-peak motion (the chest's stays the scene's);
    ``shape_n`` the Lujan exponent (1: a sine); ``overrides`` other scene values by dotted
    key (e.g. ``{"tracking.correlation.max_residual_mm": 10}``).
    """
    data = load_scene(scene_path).model_dump(mode="json")
    b = data["motion"]["breathing"]
    b["hysteresis_deg"] = float(shift_deg)
    if phantom:
        b["period_cv"] = b["amplitude_cv"] = 0.0
    if amplitude_pp_mm is not None:
        b["target_amplitude_mm"] = float(amplitude_pp_mm)
    if shape_n is not None:
        b["shape_n"] = int(shape_n)
    if seed is not None:
        data["simulation"]["seed"] = int(seed)
    if "dose" in data:
        data["dose"]["enabled"] = False
    data["tracking"]["correlation"]["model"] = model
    for key, value in (overrides or {}).items():
        *path, leaf = key.split(".")
        node = data
        for k in path:
            node = node[k]
        if leaf not in node:
            raise KeyError(f"--set {key}: no such scene setting")
        node[leaf] = value
    res = simulate(scene_from_dict(data), duration_s=duration_s, imaging=imaging)
    rec = res.record
    on = rec.beam_on_s > 0
    out: dict[str, np.ndarray | float] = {
        "total": np.linalg.norm(rec.error_vec[on], axis=1),
        "beam_on_s": float(rec.beam_on_s.sum())}
    for name, vec in rec.components.items():
        out[name] = np.linalg.norm(vec[on], axis=1)
    return out


def error_mm(shift_deg: float, model: str, *, duration_s: float, imaging: str,
             scene_path: str = "scenes/phase_shift.yaml") -> tuple[float, float]:
    """Beam-on targeting error (RMS, p95; mm) for one shift and correlation model (the scene
    as it is: period and amplitude variability on)."""
    err = run_errors(shift_deg, model, duration_s=duration_s, imaging=imaging,
                     scene_path=scene_path)["total"]
    if err.size == 0:
        return float("nan"), float("nan")
    return float(np.sqrt(np.mean(err**2))), float(np.percentile(err, 95))


def _stats(errs: list[np.ndarray]) -> tuple[float, float, float]:
    """RMS, p95, max (mm) of each seed's errors, median over seeds (NaN when no beam-on)."""
    rows = [(np.sqrt(np.mean(e**2)), np.percentile(e, 95), e.max()) if e.size else
            (np.nan,) * 3 for e in errs]
    return tuple(float(np.median(c)) for c in zip(*rows, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-s", type=float, default=300.0)
    ap.add_argument("--imaging", choices=("truth", "xray"), default="truth")
    ap.add_argument("--amplitudes-mm", type=float, nargs="+", default=list(AMPLITUDES_MM))
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--shape-n", type=int, default=1)
    ap.add_argument("--shifts-deg", type=float, nargs="+", default=list(SHIFTS_DEG))
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="scene overrides (numbers), e.g. tracking.correlation.max_residual_mm=10")
    args = ap.parse_args()
    overrides = {k: float(v) for k, v in (item.split("=", 1) for item in args.set)}
    print(f"phantom (no variability), shape_n {args.shape_n}, {args.duration_s:g} s, imaging "
          f"{args.imaging}, seeds {args.seeds}, overrides {overrides or 'none'}; median over "
          "seeds; mm")
    print("| p-p (mm) | shift (°) | model | total RMS | total p95 | total max | corr. RMS | "
          "corr. max | law RMS | law max | beam-on (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for amp in args.amplitudes_mm:
        for shift in args.shifts_deg:
            law_rms, law_max = law_mm(shift, amp)
            for model in args.models:
                runs = [run_errors(shift, model, duration_s=args.duration_s,
                                   imaging=args.imaging, amplitude_pp_mm=amp,
                                   shape_n=args.shape_n, seed=s, phantom=True,
                                   overrides=overrides)
                        for s in args.seeds]
                tot = _stats([r["total"] for r in runs])
                cor = _stats([r["correlation"] for r in runs])
                on_s = float(np.median([r["beam_on_s"] for r in runs]))
                print(f"| {amp:g} | {shift:g} | {model} | {tot[0]:.2f} | {tot[1]:.2f} | "
                      f"{tot[2]:.2f} | {cor[0]:.2f} | {cor[2]:.2f} | {law_rms:.2f} | "
                      f"{law_max:.2f} | {on_s:.0f} |", flush=True)


if __name__ == "__main__":
    main()
