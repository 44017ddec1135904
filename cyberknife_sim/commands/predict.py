"""``cksim predict``: run a latency predictor over a recorded trace and score it."""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import numpy as np

from ..errors import CksimError, InputError
from ..motion import implausible_breathing, read_trace, resample
from ..motion._trace import TIME_UNIT_RANGE_S
from ..tracking import make_predictor, relative_rms
from ..tracking._predictors import METHODS, horizon_steps

MAX_SAMPLES = 5_000_000
"""Most samples (after resampling) one run predicts: bounds memory and time."""
MAX_HORIZON_MS = 10_000.0
"""Longest latency predicted (ms)."""
MAX_RATE_HZ = 10_000.0
"""Highest resampling rate (Hz)."""


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}"
                                         ) from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"column numbers are 0-based and must not be "
                                         f"negative (got {text!r})")
    return values


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


def _check_options(args: argparse.Namespace) -> None:
    """Finite, non-negative and bounded option values, each error naming its option."""
    for name, value in (("--rate-hz", args.rate_hz), ("--horizon-ms", args.horizon_ms),
                        ("--skip-s", args.skip_s), ("--time-unit-s", args.time_unit_s)):
        if not math.isfinite(value):
            raise InputError(f"{name} must be a finite number (got {value})")
        if value < 0:
            raise InputError(f"{name} must not be negative (got {value:g})")
    if args.time_column < 0:
        raise InputError(f"--time-column is 0-based and must not be negative "
                         f"(got {args.time_column})")
    lo, hi = TIME_UNIT_RANGE_S
    if not lo <= args.time_unit_s <= hi:
        raise InputError(f"--time-unit-s must be within {lo:g}..{hi:g} s "
                         f"(got {args.time_unit_s:g})")
    if args.horizon_ms == 0:
        raise InputError("--horizon-ms must be positive: with no latency to predict over "
                         "there is nothing to score")
    if args.horizon_ms > MAX_HORIZON_MS:
        raise InputError(f"--horizon-ms {args.horizon_ms:g} is longer than the "
                         f"{MAX_HORIZON_MS:g} ms this command predicts over")
    if args.rate_hz > MAX_RATE_HZ:
        raise InputError(f"--rate-hz {args.rate_hz:g} is above the {MAX_RATE_HZ:g} Hz this "
                         "command resamples to")


def _clocked(trace, args: argparse.Namespace):
    """The trace on the predictor's clock, and that clock's interval (s)."""
    if args.rate_hz > 0:
        n = trace.duration_s * args.rate_hz + 1
        if n > MAX_SAMPLES:
            raise InputError(f"{args.trace}: {trace.duration_s:g} s at --rate-hz "
                             f"{args.rate_hz:g} is {n:.3g} samples; at most {MAX_SAMPLES:.0e} "
                             "are predicted (lower --rate-hz or shorten the trace)")
        return resample(trace, 1.0 / args.rate_hz, method=args.resample), 1.0 / args.rate_hz
    steps = np.diff(trace.time_s)
    if np.ptp(steps) > 1e-6 * trace.dt_s:
        raise InputError(f"{args.trace}: samples are not uniform; give --rate-hz")
    return trace, trace.dt_s


def _scored_span(x: np.ndarray, k: int, skip: int, args: argparse.Namespace,
                 duration_s: float) -> None:
    """Refuse a trace too short to score or one that does not move over the horizon."""
    if skip + k + 2 > x.shape[0]:
        raise InputError(f"{args.trace}: too short to score ({duration_s:g} s with "
                         f"{args.skip_s:g} s skipped and a {args.horizon_ms:g} ms horizon)")
    if not np.any(x[skip + k:] != x[skip: x.shape[0] - k]):
        raise InputError(f"{args.trace}: the signal does not change over the scored span "
                         "(constant trace): the relative RMS is undefined")


def run(args: argparse.Namespace) -> int:
    """Predict, write the CSV, print the score."""
    _check_options(args)
    trace = read_trace(args.trace, time_column=args.time_column, columns=args.columns,
                       time_unit_s=args.time_unit_s)
    odd = implausible_breathing(trace, time_unit_s=args.time_unit_s)
    if odd:  # printed once, after the result (cli.main holds warnings back)
        warnings.warn(odd, UserWarning, stacklevel=1)
    trace, dt = _clocked(trace, args)
    try:
        k = horizon_steps(args.horizon_ms / 1e3, dt)
    except ValueError as exc:
        raise InputError(f"--horizon-ms {args.horizon_ms:g}: {exc}") from None
    x = trace.values
    skip = int(round(args.skip_s / dt)) if args.skip_s / dt < x.shape[0] else x.shape[0]
    _scored_span(x, k, skip, args, trace.duration_s)
    try:
        predictor = make_predictor(args.method, horizon_s=args.horizon_ms / 1e3, dt_s=dt,
                                   dim=trace.values.shape[1])
    except ValueError as exc:
        raise InputError(str(exc)) from None
    pred = predictor.predict_series(x)
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
    if not math.isfinite(rel):
        raise CksimError(f"{args.trace}: method {args.method} gave non-finite predictions "
                         "on this trace")
    print(f"{args.trace.name}: method {args.method}, horizon {k * dt * 1e3:.1f} ms "
          f"({k} samples at {1 / dt:g} Hz), relative RMS {rel:.4f}, "
          f"RMS error {np.sqrt(np.mean(err**2)):.3f}, wrote {out}")
    sys.stdout.flush()
    return 0
