"""Causal predictor table: relative RMS and worst error per method, trace and horizon.

Every trace is predicted on its own 5 Hz samples (no resampling, nothing looks ahead), as
``cksim predict`` does by default, with the methods' default guards (``--no-guard``: without
them). Scored from 20 s on against the signal at exactly t + horizon (linearly interpolated
between the samples around it). Traces: the real ones of ``../shared/data/traces`` (internal:
x, y, z translations in mm; external: the 1-D surface signal in mm, the
``mean_motion_091`` one stamped in tenths of a second), and synthetic irregular breathing
(5 mm amplitude, period 3.5-4.5 s, 0.1 mm noise; seed 0) as is, with a 12 mm step, a 22 mm
one-sample spike, a 0.05 mm/s linear drift, and 5 % dropped samples plus a 4 s dropout.

Cell: relative RMS (dimensionless) and, in brackets, the method's worst error / the worst
error with no prediction. Last column: no prediction's worst error (mm).

At another rate (``--rate-hz 26``, the tracking loop's camera clock) the synthetic traces are
generated at that rate (0.1 mm noise per sample) and each real trace is resampled causally
(``--real``): ``delayed-linear`` (default), the recording linearly interpolated one recorded
sample late (the value at t uses only samples recorded by t; the delayed signal is its own
truth), or ``hold``, sample-and-hold of the 5 Hz samples scored against the recording
interpolated at t + horizon (scoring only). Under ``hold`` the guards gate the 5 Hz steps of
the staircase and every method equals no prediction, see docs/tracking_prediction.md.

Run: ``python scripts/predictor_table.py [--no-guard] [--horizons-ms 115,200]
[--rate-hz 26] [--methods krr,svr]`` (prints Markdown; about 2 minutes at 5 Hz, about 10 at 26 Hz).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cyberknife_sim.motion import read_trace  # noqa: E402
from cyberknife_sim.tracking import make_predictor, relative_rms  # noqa: E402
from cyberknife_sim.tracking._predictors import METHODS, truth_ahead  # noqa: E402

DT_S = 0.2
SKIP_S = 20.0  # training left out of the score (s)
REAL = [("liver (internal)", "liver_trace1_6dof.txt", 1.0, (1, 2, 3)),
        ("lung (internal)", "lung_trace1_large_ap_6dof.txt", 1.0, (1, 2, 3)),
        ("pair mean_motion_091 internal", "pair_mean_motion_091_internal.txt", 1.0, (1, 2, 3)),
        ("pair sine internal", "pair_sine_internal.txt", 1.0, (1, 2, 3)),
        ("pair mean_motion_091 external (0.1 s units)", "pair_mean_motion_091_external.txt",
         0.1, (1,)),
        ("pair sine external", "pair_sine_external.txt", 1.0, (1,))]


def synthetic(dt_s: float = DT_S) -> dict[str, np.ndarray]:
    """Synthetic breathing at sample interval ``dt_s`` (s) and its faulted variants (mm)."""
    rng = np.random.default_rng(0)
    t = np.arange(0.0, 600.0, dt_s)
    period = 4.0 + 0.5 * np.sin(2 * np.pi * t / 47.0)
    phase = 2 * np.pi * np.cumsum(dt_s / period)
    base = 5.0 * (1 + 0.2 * np.sin(2 * np.pi * t / 31.0)) * np.sin(phase) \
        + rng.normal(0, 0.1, t.size)
    j = t.size // 2
    step, spike = base.copy(), base.copy()
    step[j:] += 12.0
    spike[j] += 22.0
    drops = base.copy()
    drops[rng.random(t.size) < 0.05] = np.nan
    drops[j: j + int(round(4.0 / dt_s))] = np.nan
    return {"synthetic breathing": base, "synthetic + 12 mm step": step,
            "synthetic + 22 mm spike": spike, "synthetic + 0.05 mm/s drift": base + 0.05 * t,
            "synthetic + dropouts (5 % + 4 s)": drops}


def score(x: np.ndarray, method: str, horizon_s: float, guard: bool, *, dt_s: float = DT_S,
          truth: np.ndarray | None = None) -> tuple[float, float, float]:
    """(relative RMS, worst error / no prediction's worst, no prediction's worst mm).

    ``x`` is what the predictor is fed (sample interval ``dt_s``); ``truth`` (same rows) the
    signal it is scored against, default ``x`` itself (dropped samples held)."""
    x = x.reshape(len(x), -1)
    p = make_predictor(method, horizon_s=horizon_s, dt_s=dt_s, dim=x.shape[1], guard=guard)
    pred = p.predict_series(x)
    # the truth of a dropped sample is unknown: score rows whose truth and input are known
    filled = x.copy()
    for i in range(1, len(filled)):
        filled[i] = np.where(np.isfinite(filled[i]), filled[i], filled[i - 1])
    ref_signal = filled if truth is None else truth.reshape(len(truth), -1)
    steps = horizon_s / dt_s
    skip = int(round(SKIP_S / dt_s))
    k = int(math.ceil(steps - 1e-9))
    ahead = truth_ahead(ref_signal, steps)[skip:]
    known = np.isfinite(x[skip + k:]).all(axis=1) & np.isfinite(x[skip: len(x) - k]).all(axis=1)
    err = np.linalg.norm(ahead - pred[skip: len(x) - k], axis=1)[known]
    ref = np.linalg.norm(ahead - filled[skip: len(x) - k], axis=1)[known]
    rel = float(np.sqrt(np.mean(err**2) / np.mean(ref**2)))
    if np.isfinite(x).all() and truth is None:
        assert abs(rel - relative_rms(x, pred, steps, skip=skip)) < 1e-9
    return rel, float(err.max() / ref.max()), float(ref.max())


def hold_resample(values: np.ndarray, dt_in_s: float, dt_s: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Causal sample-and-hold of a signal sampled every ``dt_in_s`` onto ``dt_s`` (s), and the
    same instants linearly interpolated (for scoring only).

    Returns (held input, interpolated truth), shape (m, d).
    """
    v = values.reshape(len(values), -1)
    t_in = np.arange(len(v)) * dt_in_s
    t = np.arange(0.0, t_in[-1] + 1e-9, dt_s)
    idx = np.floor(t / dt_in_s + 1e-9).astype(np.int64)
    truth = np.column_stack([np.interp(t, t_in, c) for c in v.T])
    return v[idx], truth


def delayed_linear(values: np.ndarray, dt_in_s: float, dt_s: float) -> tuple[np.ndarray, None]:
    """Samples every ``dt_in_s`` linearly interpolated one sample late onto ``dt_s`` (s):
    causal (the value at t uses samples recorded at or before t); its own truth."""
    v = values.reshape(len(values), -1)
    t_in = np.arange(len(v)) * dt_in_s
    t = np.arange(dt_in_s, t_in[-1] + 1e-9, dt_s)
    return np.column_stack([np.interp(t - dt_in_s, t_in, c) for c in v.T]), None


def signals(shared: Path, dt_s: float = DT_S, real: str = "delayed-linear"
            ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Per trace: (predictor input, scoring truth or None for the input itself)."""
    out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for label, name, unit_s, cols in REAL:
        path = shared / "traces" / name
        if not path.is_file():
            continue
        tr = read_trace(path, columns=cols, time_unit_s=unit_s)
        assert abs(tr.dt_s - DT_S) < 1e-6, (name, tr.dt_s)
        if abs(dt_s - DT_S) < 1e-12:
            out[label] = (tr.values, None)
        elif real == "hold":
            out[label] = hold_resample(tr.values, DT_S, dt_s)
        else:
            out[label] = delayed_linear(tr.values, DT_S, dt_s)
    out.update({k: (v, None) for k, v in synthetic(dt_s).items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-guard", action="store_true", help="methods without their guards")
    ap.add_argument("--horizons-ms", default="115,200", help="comma-separated (ms)")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--rate-hz", type=float, default=1.0 / DT_S,
                    help="rate fed to the predictors (Hz); real traces sample-and-held")
    ap.add_argument("--real", choices=("delayed-linear", "hold"), default="delayed-linear",
                    help="causal resampling of the real 5 Hz traces at another rate")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="comma-separated methods (default all: " + ", ".join(METHODS) + ")")
    args = ap.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        ap.error(f"--methods: unknown {', '.join(unknown)} (choose from {', '.join(METHODS)})")
    dt_s = 1.0 / args.rate_hz
    sigs = signals(args.shared, dt_s, args.real)
    feed = "5 Hz own samples" if abs(dt_s - DT_S) < 1e-12 else \
        f"{args.rate_hz:g} Hz (real traces: {args.real})"
    guard = "unguarded" if args.no_guard else "guarded (default)"
    for h_ms in (float(v) for v in args.horizons_ms.split(",")):
        print(f"\n**Horizon {h_ms:g} ms, {feed} (causal), {guard}.** Cell: relative "
              "RMS (worst error / no prediction's worst).\n")
        print("| trace | " + " | ".join(methods) + " | no prediction's worst (mm) |")
        print("|---" * (len(methods) + 2) + "|")
        for label, (x, truth) in sigs.items():
            cells, worst_none = [], 0.0
            for m in methods:
                rel, ratio, worst_none = score(x, m, h_ms / 1e3, not args.no_guard,
                                               dt_s=dt_s, truth=truth)
                cells.append(f"{rel:.2f} ({ratio:.2f})")
            print(f"| {label} | " + " | ".join(cells) + f" | {worst_none:.1f} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
