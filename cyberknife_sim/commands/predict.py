"""``cksim predict``: run a latency predictor over a recorded trace and score it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..motion import read_trace, resample
from ..tracking import make_predictor, relative_rms
from ..tracking._predictors import METHODS


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}"
                                         ) from None


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` sub-command."""
    p = sub.add_parser(
        "predict", help="predict a recorded motion trace ahead by the system latency",
        description="Resample a trace to the camera clock, run a predictor sample by sample "
        "(causal), write time, signal and prediction as CSV and print the relative RMS error "
        "(RMS of prediction error / RMS of the error with no prediction).")
    p.add_argument("--trace", required=True, type=Path, help="text/CSV trace file")
    p.add_argument("--time-column", type=int, default=0, help="0-based time column (default 0)")
    p.add_argument("--columns", type=_ints, default=(1, 2, 3),
                   help="0-based motion columns, comma separated (default 1,2,3)")
    p.add_argument("--time-unit-s", type=float, default=1.0,
                   help="seconds per time unit in the file (default 1; 0.1 for tenths)")
    p.add_argument("--horizon-ms", type=float, default=115.0,
                   help="latency to predict over (ms, default 115)")
    p.add_argument("--method", choices=METHODS, default="rls", help="prediction method")
    p.add_argument("--rate-hz", type=float, default=26.0,
                   help="resample to this rate before predicting (Hz, default 26; 0: keep "
                   "the file's samples, which must be uniform)")
    p.add_argument("--resample", choices=("linear", "cubic"), default="cubic",
                   help="interpolation for resampling (default cubic)")
    p.add_argument("--skip-s", type=float, default=20.0,
                   help="training time left out of the score (s, default 20)")
    p.add_argument("--out", type=Path, default=None,
                   help="CSV to write (default: <trace>.<method>.csv beside the trace)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Predict, write the CSV, print the score."""
    trace = read_trace(args.trace, time_column=args.time_column, columns=args.columns,
                       time_unit_s=args.time_unit_s)
    if args.rate_hz < 0 or args.horizon_ms < 0 or args.skip_s < 0:
        raise InputError("--rate-hz, --horizon-ms and --skip-s must not be negative")
    if args.rate_hz > 0:
        trace = resample(trace, 1.0 / args.rate_hz, method=args.resample)
    else:
        steps = np.diff(trace.time_s)
        if np.ptp(steps) > 1e-6 * trace.dt_s:
            raise InputError(f"{args.trace}: samples are not uniform; give --rate-hz")
    dt = 1.0 / args.rate_hz if args.rate_hz > 0 else trace.dt_s
    try:
        predictor = make_predictor(args.method, horizon_s=args.horizon_ms / 1e3, dt_s=dt,
                                   dim=trace.values.shape[1])
    except ValueError as exc:
        raise InputError(str(exc)) from None
    x = trace.values
    pred = predictor.predict_series(x)
    k = predictor.horizon_steps
    skip = int(round(args.skip_s / dt))
    if skip + k + 2 > x.shape[0]:
        raise InputError(f"{args.trace}: too short to score ({trace.duration_s:g} s with "
                         f"{args.skip_s:g} s skipped)")
    # the prediction made at i is of sample i + k: shift it onto the time it predicts
    aligned = np.full_like(pred, np.nan)
    aligned[k:] = pred[: len(pred) - k]
    out = args.out or args.trace.with_name(f"{args.trace.stem}.{args.method}.csv")
    names = [f"c{c}" for c in args.columns]
    header = ",".join(["time_s", *names, *(f"pred_{n}" for n in names)])
    try:
        np.savetxt(out, np.column_stack([trace.time_s, x, aligned]), delimiter=",",
                   header=header, comments="", fmt="%.6g")
    except OSError as exc:
        raise InputError(f"{out}: cannot write ({exc.strerror or exc})") from None
    rel = relative_rms(x, pred, k, skip=skip)
    err = np.linalg.norm(x[skip + k:] - pred[skip: len(pred) - k], axis=1)
    print(f"{args.trace.name}: method {args.method}, horizon {k * dt * 1e3:.1f} ms "
          f"({k} samples at {1 / dt:g} Hz), relative RMS {rel:.4f}, "
          f"RMS error {np.sqrt(np.mean(err**2)):.3f}, wrote {out}")
    sys.stdout.flush()
    return 0
