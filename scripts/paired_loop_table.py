"""Closed loop driven by a recorded internal/external pair: targeting error and its sources.

Usage::

    python scripts/paired_loop_table.py INTERNAL EXTERNAL [--external-time-unit-s 0.1]
        [--duration-s 120] [--imaging truth xray] [--set KEY=VALUE ...] [--velocity-frames N]

Builds ``scenes/default.yaml`` with ``motion.trace`` set to the pair (``kind: paired``; the
spine does not breathe), runs it once per imaging seam (``truth``: ideal registration, an
ablation; ``xray``: live X-ray pairs rendered from the truth patient and registered to the
planning CT, the realistic default) and prints one Markdown row per run: beam-on targeting
error (RMS / p95 / max, mm), the decomposition (RMS of the registration / correlation /
prediction / robot terms, mm), beam-on time, the holds by reason (s), the number of model
rebuilds and the median correlation-model residual reported at the X-ray points (mm).

``--set tracking.markers.noise_mm=0`` (dotted scene keys, YAML values) changes the scene, e.g.
to measure the run without marker noise or with another correlation model.
``--velocity-frames N`` is a measurement knob only: it sets the loop's backward-difference
velocity span (``simulation._loop.VELOCITY_FRAMES``, default 4 frames) for this process.

The traces are read from the paths given: the product never needs them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from cyberknife_sim import simulate
from cyberknife_sim.scene import load_scene, scene_from_dict

COMPONENTS = ("registration", "correlation", "prediction", "robot")


def paired_scene(internal: Path, external: Path, *, external_time_unit_s: float | None,
                 overrides: dict[str, object] | None = None):
    """``scenes/default.yaml`` driven by the pair (spine breathing off), with dotted-key
    overrides applied."""
    data = load_scene("scenes/default.yaml").model_dump(mode="json")
    data["motion"]["trace"] = {"kind": "paired", "file": str(Path(internal).resolve()),
                               "external_file": str(Path(external).resolve()),
                               "external_time_unit_s": external_time_unit_s}
    data["motion"]["breathing_moves_spine"] = False
    for key, value in (overrides or {}).items():
        node = data
        *path, last = key.split(".")
        for k in path:
            node = node.setdefault(k, {})
        node[last] = value
    return scene_from_dict(data)


def run_row(scene, *, imaging: str, duration_s: float) -> dict[str, object]:
    """One run: error statistics, components, holds and the model residuals (mm, s)."""
    res = simulate(scene, duration_s=duration_s, imaging=imaging)
    s = res.summary
    images = [ev for ev in s.events if ev["kind"] == "image"]
    resid = [ev["model_residual_mm"] for ev in images
             if "model_residual_mm" in ev and "model_fallback" not in ev]
    return {
        "imaging": imaging,
        "error": s.targeting_error_mm,
        "components": {c: s.error_components_mm[c]["rms"] for c in COMPONENTS},
        "beam_on_s": s.beam_on_s,
        "holds": {k: round(v, 1) for k, v in s.beam_hold_s_by_reason.items() if v > 0},
        "rebuilds": sum("rebuilding" in str(ev.get("interlock", "")) for ev in images),
        "residual_median_mm": float(np.median(resid)) if resid else float("nan"),
        "images": s.images["total"],
    }


def expected_noise_mm(scene) -> tuple[float, float]:
    """(expected target error of the best ``linear_velocity`` model from marker noise at the
    X-ray points, the model's residual limit), both mm: ``PairedTrace.expected_model_noise_mm``
    with the scene's marker count, noise and rate, the markers' mean gain and the loop's
    velocity span."""
    from cyberknife_sim.motion import MotionTruth
    from cyberknife_sim.simulation import _loop

    m = scene.tracking.markers
    truth = MotionTruth(scene.motion, duration_s=1.0, rng=np.random.default_rng(0),
                        marker_count=m.count)
    noise = m.noise_mm / np.sqrt(m.count) / float(np.mean(truth.marker_gain))
    span_s = _loop.VELOCITY_FRAMES / m.rate_hz
    expected = truth.paired.expected_model_noise_mm(signal_noise_mm=noise,
                                                    velocity_span_s=span_s)
    return expected, scene.tracking.correlation.max_residual_mm


def _fmt(v: object) -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.2f}"


def markdown(rows: list[dict[str, object]]) -> str:
    """The rows as a Markdown table."""
    head = ("| imaging | RMS | p95 | max | reg | corr | pred | robot | beam-on (s) | images "
            "| rebuilds | median model residual | holds (s) |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        e, c = r["error"], r["components"]
        lines.append(
            f"| {r['imaging']} | {_fmt(e['rms'])} | {_fmt(e['p95'])} | {_fmt(e['max'])} | "
            + " | ".join(_fmt(c[k]) for k in COMPONENTS)
            + f" | {r['beam_on_s']:.1f} | {r['images']} | {r['rebuilds']} | "
            f"{_fmt(r['residual_median_mm'])} | {r['holds']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("internal", type=Path)
    ap.add_argument("external", type=Path)
    ap.add_argument("--external-time-unit-s", type=float, default=None)
    ap.add_argument("--duration-s", type=float, default=120.0)
    ap.add_argument("--imaging", nargs="+", choices=("truth", "xray"),
                    default=["truth", "xray"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--velocity-frames", type=int, default=None)
    args = ap.parse_args()
    if args.velocity_frames is not None:
        from cyberknife_sim.simulation import _loop

        _loop.VELOCITY_FRAMES = int(args.velocity_frames)
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    scene = paired_scene(args.internal, args.external,
                         external_time_unit_s=args.external_time_unit_s, overrides=overrides)
    expected, limit = expected_noise_mm(scene)
    print(f"expected linear_velocity model error from marker noise at the X-ray points: "
          f"{expected:.2f} mm (model residual limit {limit:g} mm)", flush=True)
    rows = []
    for imaging in args.imaging:
        rows.append(run_row(scene, imaging=imaging, duration_s=args.duration_s))
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(markdown(rows))


if __name__ == "__main__":
    main()
