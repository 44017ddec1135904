"""Correlation models offline: error of each model fitted on 12 points, causal velocity.

Usage: python scripts/correlation_table.py [--traces DIR] [--n-fit 12] [--fit-span-s 60]

Runs :func:`cyberknife_sim.tracking.evaluate_correlation` (external velocity a backward
difference; 12 fit points spread over the first minute, every later sample a test point;
each model clamps to its valid range and ``outside`` is the fraction of test samples beyond
it) on

* the paired traces in ``DIR`` (default ``../shared/data/traces``): ``pair_<name>_internal``
  (time s, x y z mm) with ``pair_<name>_external`` (time, signal mm; ``mean_motion_091``'s
  external is stamped in tenths of a second);
* synthetic phase-shifted pairs made here (not by the simulator's motion model): target
  ``A sin(wt + φ)`` (A = 5 mm, along z) against chest ``4 sin(wt)`` mm plus 0.06 mm noise,
  4 s period, 26 Hz, 300 s, φ = 0/5/10/15/20°; the law of a linear fit gives max ``A sin φ``
  and RMS ``A sin φ/√2``.

Prints one Markdown table: RMS, p95, max (mm) and outside fraction per model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cyberknife_sim.motion import Trace, read_trace
from cyberknife_sim.tracking import evaluate_correlation

MODELS = ("none", "linear", "quadratic", "dual", "linear_velocity")
REAL_PAIRS = {"mean_motion_091": 0.1, "sine": 1.0}
"""Paired traces and the external file's time unit (s)."""
SHIFTS_DEG = (0.0, 5.0, 10.0, 15.0, 20.0)


def synthetic_pair(shift_deg: float, *, seed: int = 0, duration_s: float = 300.0,
                   rate_hz: float = 26.0, period_s: float = 4.0, target_amp_mm: float = 5.0,
                   chest_amp_mm: float = 4.0, noise_mm: float = 0.06) -> tuple[Trace, Trace]:
    """(internal, external) traces: target leads the chest by ``shift_deg`` of the cycle."""
    t = np.arange(0.0, duration_s, 1.0 / rate_hz)
    w = 2.0 * np.pi / period_s
    z = target_amp_mm * np.sin(w * t + np.radians(shift_deg))
    ext = chest_amp_mm * np.sin(w * t)
    ext = ext + np.random.default_rng(seed).normal(0.0, noise_mm, t.size)
    internal = Trace(time_s=t, values=z[:, None], axes=("z",), source=f"sine {shift_deg:g}°")
    external = Trace(time_s=t, values=ext[:, None], axes=("s",), source="chest")
    return internal, external


def real_pair(folder: Path, name: str) -> tuple[Trace, Trace]:
    """A recorded pair from ``folder`` (see the module docstring for the format)."""
    internal = read_trace(folder / f"pair_{name}_internal.txt", columns=(1, 2, 3))
    external = read_trace(folder / f"pair_{name}_external.txt", columns=(1,),
                          time_unit_s=REAL_PAIRS[name])
    return internal, external


def rows(pairs: dict[str, tuple[Trace, Trace]], *, n_fit: int, fit_span_s: float) -> list[str]:
    """One Markdown row per pair and model."""
    out = []
    for label, (internal, external) in pairs.items():
        stats = evaluate_correlation(internal, external, n_fit=n_fit, fit_span_s=fit_span_s)
        for model in MODELS:
            s = stats[model]
            out.append(f"| {label} | {model} | {s['rms_mm']:.2f} | {s['p95_mm']:.2f} | "
                       f"{s['max_mm']:.2f} | {s['outside_fraction']:.3f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared/data/traces")
    ap.add_argument("--n-fit", type=int, default=12)
    ap.add_argument("--fit-span-s", type=float, default=60.0)
    args = ap.parse_args()
    pairs: dict[str, tuple[Trace, Trace]] = {}
    for name in REAL_PAIRS:
        if (args.traces / f"pair_{name}_internal.txt").exists():
            pairs[f"pair_{name}"] = real_pair(args.traces, name)
    for shift in SHIFTS_DEG:
        law = 5.0 * np.sin(np.radians(shift))
        pairs[f"synthetic {shift:g}° (law RMS {law / np.sqrt(2):.2f}, max {law:.2f})"] = \
            synthetic_pair(shift)
    print("| pair | model | RMS (mm) | p95 (mm) | max (mm) | outside |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows(pairs, n_fit=args.n_fit, fit_span_s=args.fit_span_s)))


if __name__ == "__main__":
    main()
