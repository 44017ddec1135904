"""``cksim predict``: run a latency predictor over a recorded trace and score it, causally.

Causal by construction: by default the predictor is fed the file's own samples (``--rate-hz
0``), one at a time, and each prediction uses nothing newer than the sample it is made at.
``--rate-hz N`` puts the trace on an N Hz camera clock causally: ``--resample
delayed_linear`` (the default) interpolates linearly between the file samples around one file
interval earlier, so each tick reads only samples recorded by then (a smooth signal, delayed
by one file interval, that is both the predictor's input and its truth); ``--resample hold``
gives each tick the latest file sample (causal too, but a 5 Hz staircase at 26 Hz makes every
guarded method fall back to no prediction: each step is gated as a jump).
``--resample linear|cubic`` are kept for comparison but are NOT causal (a linearly
interpolated value depends on the next file sample, up to one file
interval ahead; a cubic spline on the whole trace) and the printed line says so.

Any horizon works on any rate: the prediction is of the signal exactly ``--horizon-ms``
ahead, and is scored against the signal at that instant, linearly interpolated between the
two samples around it (a whole-sample horizon is scored against the sample itself). nLMS and
RLS learn that interpolated target directly; linear and Kalman extrapolate over the exact
horizon; methods that learn whole samples scale their ``ceil(h / dt)``-sample change onto it.

Scores: relative RMS (RMS of the prediction error / RMS of the error with no prediction,
dimensionless), RMS and worst prediction error in the trace's units (mm for translations),
and the worst error with no prediction. Every method runs inside the guards of
:mod:`cyberknife_sim.tracking._guard` (``--no-guard`` turns them off); their activity is
printed.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import numpy as np

from ..errors import CksimError, InputError
from ..motion import implausible_breathing, read_trace, resample
from ..motion._trace import RESAMPLING_METHODS, TIME_UNIT_RANGE_S, resample_lookahead_s
from ..tracking import make_predictor, relative_rms
from ..tracking._predictors import METHODS, truth_ahead

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
        description="Run a predictor sample by sample over a trace (causal: each prediction "
        "uses only samples up to the one it is made at), write time, signal and prediction as "
        "CSV and print the relative RMS error (RMS of prediction error / RMS of the error with "
        "no prediction, dimensionless), the RMS and worst error (trace units, mm) and the "
        "worst error with no prediction. Default: the file's own samples, no resampling.")
    p.add_argument("--trace", required=True, type=Path, help="text/CSV trace file")
    p.add_argument("--time-column", type=int, default=0, help="0-based time column (default 0)")
    p.add_argument("--columns", type=_ints, default=None,
                   help="0-based motion columns, comma separated (default: up to three "
                   "columns after the time column, e.g. 1 for a 2-column file, 1,2,3 for "
                   "time + translations + rotations)")
    p.add_argument("--delimiter", default=None,
                   help="column separator (default: detected: ';' or a tab with decimal "
                   "commas, else commas or whitespace)")
    p.add_argument("--time-unit-s", type=float, default=1.0,
                   help="seconds per time unit in the file (default 1; 0.1 for tenths)")
    p.add_argument("--horizon-ms", type=float, default=115.0,
                   help="latency to predict over (ms, default 115); any value on any rate: "
                   "scored against the signal at exactly that time, interpolated linearly "
                   "between the samples around it")
    p.add_argument("--method", choices=(*METHODS, "all"), default="rls",
                   help="prediction method; 'all' prints one comparison table")
    p.add_argument("--rate-hz", type=float, default=0.0,
                   help="put the trace on this clock before predicting (Hz; default 0: the "
                   "file's own samples, which must be uniform)")
    p.add_argument("--resample", choices=RESAMPLING_METHODS, default="delayed_linear",
                   help="how --rate-hz resamples: delayed_linear (default, causal: linear "
                   "between the file samples one file interval earlier) or hold (causal: "
                   "latest file sample at each tick); linear or cubic are NON-CAUSAL (they "
                   "look ahead: one file interval, or the whole trace) and flattering, for "
                   "comparison only")
    p.add_argument("--skip-s", type=float, default=20.0,
                   help="training time left out of the score (s, default 20)")
    p.add_argument("--no-guard", action="store_true",
                   help="run the methods without their guards (outlier gating, prediction "
                   "bound, fallback to no prediction)")
    p.add_argument("--out", type=Path, default=None,
                   help="CSV to write (default: <trace name>.<method>.csv in the current "
                   "folder, never beside the trace, whose folder may be read-only shared "
                   "data); row i: "
                   "time_s, the signal, pred_* = the prediction made at time_s of the signal "
                   "at for_time_s = time_s + horizon")
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


def default_columns(path: Path, time_column: int) -> tuple[int, ...]:
    """Up to three columns after the time column, counted on the first numeric row."""
    try:
        if not path.is_file():  # a FIFO or device would block: read_trace refuses it
            return (1,)
        with open(path, "rb") as fh:
            head = fh.read(1 << 16).decode("utf-8", errors="replace").splitlines()
    except OSError:
        return (1,)  # read_trace names the problem
    for line in head:
        cells = line.replace(",", " ").split()
        if not cells or cells[0].startswith("#"):
            continue
        try:
            [float(c) for c in cells]
        except ValueError:
            continue  # a header row
        cols = tuple(c for c in range(len(cells)) if c != time_column)[:3]
        return cols or (1,)
    return (1,)


def _clocked(trace, args: argparse.Namespace):
    """The trace on the predictor's clock, that clock's interval (s), and the look-ahead (s)
    of its resampling (0: causal)."""
    if args.rate_hz > 0:
        n = trace.duration_s * args.rate_hz + 1
        if n > MAX_SAMPLES:
            raise InputError(f"{args.trace}: {trace.duration_s:g} s at --rate-hz "
                             f"{args.rate_hz:g} is {n:.3g} samples; at most {MAX_SAMPLES:.0e} "
                             "are predicted (lower --rate-hz or shorten the trace)")
        ahead = resample_lookahead_s(trace, args.resample)
        return (resample(trace, 1.0 / args.rate_hz, method=args.resample), 1.0 / args.rate_hz,
                ahead)
    steps = np.diff(trace.time_s)
    if np.ptp(steps) > 1e-6 * trace.dt_s:
        raise InputError(f"{args.trace}: samples are not uniform; give --rate-hz (the trace "
                         "is then put on that clock causally, see --resample)")
    return trace, trace.dt_s, 0.0


def predict_trace(trace, method: str, *, horizon_s: float, rate_hz: float = 0.0,
                  resample_mode: str = "delayed_linear", guard: bool = True):
    """The pipeline of ``cksim predict`` as a function: clock, then predict.

    Parameters
    ----------
    trace : Trace
        The trace as read (its own samples, uniform when ``rate_hz`` is 0).
    method : str
        A prediction method (:data:`..tracking._predictors.METHODS`).
    horizon_s : float
        Latency predicted over (s).
    rate_hz : float
        0: the file's own samples; else the clock the trace is resampled to.
    resample_mode : {"delayed_linear", "hold", "linear", "cubic"}
        How it is resampled (``delayed_linear`` and ``hold`` are causal).
    guard : bool
        Run the method inside its guards.

    Returns
    -------
    (Trace, ndarray (n, d), dict, float)
        The clocked trace, row i the prediction made at its time i of the signal
        ``horizon_s`` later, the guard's counts, and the resampling's look-ahead (s; 0 when
        causal).
    """
    if rate_hz > 0:
        ahead = resample_lookahead_s(trace, resample_mode)
        trace = resample(trace, 1.0 / rate_hz, method=resample_mode)
        dt = 1.0 / rate_hz
    else:
        ahead, dt = 0.0, trace.dt_s
    p = make_predictor(method, horizon_s=horizon_s, dt_s=dt, dim=trace.values.shape[1],
                       guard=guard)
    return trace, p.predict_series(trace.values), p.guard_stats, ahead


def _scored_span(x: np.ndarray, k: int, skip: int, args: argparse.Namespace,
                 duration_s: float) -> None:
    """Refuse a trace too short to score or one that does not move over the horizon."""
    if skip + k + 2 > x.shape[0]:
        raise InputError(f"{args.trace}: too short to score ({duration_s:g} s with "
                         f"{args.skip_s:g} s skipped and a {args.horizon_ms:g} ms horizon)")
    if not np.any(x[skip + k:] != x[skip: x.shape[0] - k]):
        raise InputError(f"{args.trace}: the signal does not change over the scored span "
                         "(constant trace): the relative RMS is undefined")


def score(x: np.ndarray, pred: np.ndarray, steps: float, skip: int) -> dict[str, float]:
    """Relative RMS (dimensionless), RMS and worst error, and no prediction's worst error
    (signal units), over rows ``skip`` on, at a horizon of ``steps`` samples."""
    k = int(math.ceil(steps - 1e-9))
    truth = truth_ahead(x, steps)[skip:]
    err = np.linalg.norm(truth - pred[skip: len(pred) - k], axis=1)
    ref = np.linalg.norm(truth - x[skip: len(x) - k], axis=1)
    return {"relative_rms": relative_rms(x, pred, steps, skip=skip),
            "rms": float(np.sqrt(np.mean(err**2))), "worst": float(err.max()),
            "worst_none": float(ref.max())}


def _guard_text(stats: dict) -> str:
    if not stats.get("guarded"):
        return "guard off"
    return (f"guard: {stats['gated_samples']} samples gated, {stats['steps_accepted']} steps "
            f"accepted, {stats['clamped_predictions']} predictions clamped, "
            f"{stats['fallback_s']:.1f} s in fallback")


def _predict(method: str, args, x: np.ndarray, dt: float):
    try:
        predictor = make_predictor(method, horizon_s=args.horizon_ms / 1e3, dt_s=dt,
                                   dim=x.shape[1], guard=not args.no_guard)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    pred = predictor.predict_series(x)
    if not np.isfinite(pred).all():
        raise CksimError(f"{args.trace}: method {method} gave non-finite predictions "
                         "on this trace")
    return pred, predictor.guard_stats


def _write_csv(out: Path, trace, x, preds: dict, names: list[str], horizon_s: float) -> None:
    cols = [f"pred_{n}" if len(preds) == 1 else f"pred_{m}_{n}" for m in preds for n in names]
    header = ",".join(["time_s", "for_time_s", *names, *cols])
    data = np.column_stack([trace.time_s, trace.time_s + horizon_s, x, *preds.values()])
    try:
        np.savetxt(out, data, delimiter=",", header=header, comments="", fmt="%.6g")
    except OSError as exc:
        raise InputError(f"{out}: cannot write ({exc.strerror or exc})") from None


def _clock_text(args, dt: float, steps: float, ahead_s: float) -> str:
    text = f"horizon {args.horizon_ms:g} ms ({steps:.3g} samples at {1 / dt:g} Hz"
    if args.rate_hz > 0:
        text += f", {args.resample}-resampled"
    text += ")"
    if ahead_s > 0:
        look = "the whole trace" if math.isinf(ahead_s) else f"up to {ahead_s * 1e3:.0f} ms"
        text += f" (non-causal resampling: looks ahead {look})"
    return text


def run(args: argparse.Namespace) -> int:
    """Predict, write the CSV, print the score."""
    _check_options(args)
    columns = args.columns or default_columns(args.trace, args.time_column)
    trace = read_trace(args.trace, time_column=args.time_column, columns=columns,
                       delimiter=args.delimiter or None,
                       time_unit_s=args.time_unit_s)
    odd = implausible_breathing(trace, time_unit_s=args.time_unit_s)
    if odd:  # printed once, after the result (cli.main holds warnings back)
        warnings.warn(odd, UserWarning, stacklevel=1)
    trace, dt, ahead_s = _clocked(trace, args)
    steps = args.horizon_ms / 1e3 / dt
    k = int(math.ceil(steps - 1e-9))
    x = trace.values
    skip = int(round(args.skip_s / dt)) if args.skip_s / dt < x.shape[0] else x.shape[0]
    _scored_span(x, k, skip, args, trace.duration_s)
    methods = METHODS if args.method == "all" else (args.method,)
    preds, rows = {}, []
    for m in methods:
        preds[m], stats = _predict(m, args, x, dt)
        rows.append((m, score(x, preds[m], steps, skip), stats))
    out = args.out or Path.cwd() / f"{args.trace.stem}.{args.method}.csv"
    names = [f"c{c}" for c in columns]
    _write_csv(out, trace, x, preds, names, args.horizon_ms / 1e3)
    unit = "mm" if all(not a.lstrip("-").startswith("r") for a in trace.axes) else "mm|deg"
    clock = _clock_text(args, dt, steps, ahead_s)
    if len(rows) == 1:
        m, s, stats = rows[0]
        print(f"{args.trace.name}: method {m}, {clock}, relative RMS {s['relative_rms']:.4f} "
              f"(dimensionless), RMS error {s['rms']:.3f} {unit}, worst error "
              f"{s['worst']:.3f} {unit} (no prediction: {s['worst_none']:.3f} {unit}), "
              f"{_guard_text(stats)}; wrote {out}")
    else:
        print(f"{args.trace.name}: {clock}; wrote {out}\n")
        print(f"| method | relative RMS | RMS error ({unit}) | worst error ({unit}) | "
              f"worst / no prediction's worst | guard |")
        print("|---|---|---|---|---|---|")
        for m, s, stats in rows:
            print(f"| {m} | {s['relative_rms']:.3f} | {s['rms']:.3f} | {s['worst']:.2f} | "
                  f"{s['worst'] / s['worst_none']:.2f} | {_guard_text(stats)} |")
    sys.stdout.flush()
    return 0
