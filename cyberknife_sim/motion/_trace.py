"""Recorded motion traces: reading time-stamped text/CSV files and resampling them.

A trace is a time column plus 1 to 6 motion columns (translations in mm, rotations in
degrees). The caller states which columns hold what and the time unit; nothing is guessed.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError

__all__ = ["AXIS_NAMES", "BREATHING_PERIOD_RANGE_S", "TUMOUR_PEAK_TO_PEAK_MAX_MM", "Trace",
           "check_paired", "dominant_period_s", "implausible_breathing", "read_trace", "resample",
           "resample_lookahead_s"]

AXIS_NAMES = ("x", "y", "z", "rx", "ry", "rz")
"""Names a trace column may be mapped to (room frame; mm for x y z, degrees for rx ry rz)."""

MIN_SAMPLES = 4
"""Fewest samples a trace may have."""
MAX_FILE_BYTES = 64 * 2**20
"""Largest trace file read (bytes): about a day of 26 Hz 6-DoF samples."""
MAX_ABS_VALUE = 1e6
"""Largest |motion value| accepted after ``value_scale`` (mm or degrees)."""
TIME_UNIT_RANGE_S = (1e-9, 3600.0)
"""Accepted seconds per time unit (ns … hours)."""
SAMPLE_INTERVAL_RANGE_S = (1e-4, 10.0)
"""Accepted median interval between samples after the time unit (s)."""
MAX_DURATION_S = 1e6
"""Longest accepted span from first to last sample (s; about 11.6 days)."""
MAX_TIME_S = 1e9
"""Largest accepted |time stamp| after the time unit (s)."""


@dataclass(frozen=True)
class Trace:
    """A time-stamped motion trace.

    Attributes
    ----------
    time_s : ndarray, shape (n,)
        Strictly increasing sample times (s).
    values : ndarray, shape (n, d)
        Motion samples, one column per entry of ``axes`` (mm or degrees), after the caller's
        sign and scale mapping.
    axes : tuple of str
        Name of each column (``"x"``, ``"y"``, ``"z"``, ``"rx"``, ``"ry"``, ``"rz"``, or
        ``"s"`` for a 1-D signal such as a chest surface displacement).
    source : str
        Where the trace came from (file path), for messages.
    """

    time_s: NDArray[np.float64]
    values: NDArray[np.float64]
    axes: tuple[str, ...]
    source: str = "<array>"

    @property
    def duration_s(self) -> float:
        """Time from the first to the last sample (s)."""
        return float(self.time_s[-1] - self.time_s[0])

    @property
    def dt_s(self) -> float:
        """Median sample interval (s)."""
        return float(np.median(np.diff(self.time_s)))

    def xyz_mm(self) -> NDArray[np.float64]:
        """Translations as (n, 3) room-ordered columns (mm); axes not in the trace are 0."""
        out = np.zeros((self.time_s.size, 3))
        for j, name in enumerate(("x", "y", "z")):
            if name in self.axes:
                out[:, j] = self.values[:, self.axes.index(name)]
        return out


def _parse_axis(spec: str, where: str) -> tuple[str, float]:
    text = spec.strip().lower()
    sign = -1.0 if text.startswith("-") else 1.0
    name = text.lstrip("+-")
    if name not in AXIS_NAMES + ("s",):
        raise InputError(f"{where}: unknown axis '{spec}' (allowed: {', '.join(AXIS_NAMES)}, s, "
                         "optionally with a leading '-')")
    return name, sign


def _check_series(time_s: NDArray[np.float64], values: NDArray[np.float64], where: str,
                  min_samples: int) -> None:
    if time_s.size < min_samples:
        raise InputError(f"{where}: too few samples ({time_s.size}; at least {min_samples} needed)")
    bad_t = np.flatnonzero(~np.isfinite(time_s))
    if bad_t.size:
        raise InputError(f"{where}: time is NaN or infinite at row {bad_t[0] + 1}")
    bad_v = np.argwhere(~np.isfinite(values))
    if bad_v.size:
        row, col = bad_v[0]
        raise InputError(f"{where}: value is NaN or infinite at row {row + 1}, "
                         f"motion column {col + 1}")
    steps = np.diff(time_s)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = bad[0]
        raise InputError(f"{where}: time is not strictly increasing at row {i + 2} "
                         f"({time_s[i]:g} then {time_s[i + 1]:g} s)")


def _check_options(where: str, time_column: int, cols: list[int], time_unit_s: float,
                   value_scale: float, skip_rows: int) -> None:
    if not 1 <= len(cols) <= 6:
        raise InputError(f"{where}: between 1 and 6 motion columns are needed (got {len(cols)})")
    bad = [c for c in [time_column, *cols] if c < 0]
    if bad:
        raise InputError(f"{where}: column numbers are 0-based and must not be negative "
                         f"(got {bad[0]})")
    lo, hi = TIME_UNIT_RANGE_S
    if not (np.isfinite(time_unit_s) and lo <= time_unit_s <= hi):
        raise InputError(f"{where}: time_unit_s must be within {lo:g}..{hi:g} s "
                         f"(got {time_unit_s:g})")
    if not (np.isfinite(value_scale) and value_scale != 0):
        raise InputError(f"{where}: value_scale must be finite and non-zero "
                         f"(got {value_scale:g})")
    if skip_rows < 0:
        raise InputError(f"{where}: skip_rows must not be negative (got {skip_rows})")


def _parse_axes(where: str, axes: Sequence[str] | None,
                n: int) -> tuple[tuple[str, ...], NDArray[np.float64]]:
    if axes is None:
        axes = ("s",) if n == 1 else AXIS_NAMES[:n]
    if len(axes) != n:
        raise InputError(f"{where}: {len(axes)} axes given for {n} columns")
    parsed = [_parse_axis(a, where) for a in axes]
    names = tuple(name for name, _ in parsed)
    if len(set(names)) != len(names):
        raise InputError(f"{where}: an axis is named twice in {list(axes)}")
    return names, np.array([sign for _, sign in parsed])


def _read_text(path: str | Path, where: str) -> str:
    """The file's text; non-UTF-8 bytes survive as surrogates (refused in data lines only)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise InputError(f"{where}: cannot read trace ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{where}: is a folder, not a trace file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{where}: not a regular file (a device, FIFO or socket); give a "
                         "text trace file")
    if st.st_size > MAX_FILE_BYTES:
        raise InputError(f"{where}: {st.st_size / 2**20:.0f} MiB is more than the "
                         f"{MAX_FILE_BYTES // 2**20} MiB a trace file may have")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{where}: cannot read trace ({exc.strerror or exc})") from None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise InputError(f"{where}: damaged UTF-16 text") from None
    if b"\x00" in raw:
        raise InputError(f"{where}: binary data (NUL bytes), not a text trace (UTF-16 needs "
                         "a byte-order mark; UTF-8 or ASCII is best)")
    return raw.decode("utf-8-sig", errors="surrogateescape")


def _cells(line: str, delimiter: str | None) -> list[str]:
    """A line's cells: split on ``delimiter`` when given (commas are then decimal commas unless
    it is the comma); else detected: ``;`` or a tab beside commas
    means a decimal comma (``0,2;1,545`` and ``0,2<TAB>1,545`` are 0.2 and 1.545), otherwise
    commas and whitespace separate."""
    if delimiter:  # any separator but the comma leaves commas to be decimal commas
        cells = [c.strip() for c in line.split(delimiter)]
        return cells if delimiter == "," else [c.replace(",", ".") for c in cells]
    for sep in (";", "\t"):
        if sep in line and ("," in line or sep == ";"):
            return [c.strip().replace(",", ".") for c in line.split(sep) if c.strip()]
    return line.replace(",", " ").split()


def _split_rows(text: str, where: str, delimiter: str | None,
                skip_rows: int) -> list[tuple[int, list[str]]]:
    rows: list[tuple[int, list[str]]] = []
    header_checked = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if lineno <= skip_rows or not stripped or stripped.startswith("#"):
            continue
        cells = _cells(stripped, delimiter)
        if not header_checked:
            header_checked = True
            try:
                float(cells[0])
            except ValueError:
                continue  # header line
        if any("\udc80" <= ch <= "\udcff" for ch in stripped):
            raise InputError(f"{where}: line {lineno} is not UTF-8 or ASCII text (binary data "
                             "or another encoding)")
        rows.append((lineno, cells))
    if not rows:
        raise InputError(f"{where}: no samples found")
    return rows


def _table(rows: list[tuple[int, list[str]]], where: str, time_column: int,
           cols: list[int]) -> NDArray[np.float64]:
    need = max([*cols, time_column])
    data = np.empty((len(rows), len(cols) + 1))
    for i, (lineno, cells) in enumerate(rows):
        if len(cells) <= need:
            raise InputError(f"{where}: line {lineno} has {len(cells)} columns; column "
                             f"{need} (0-based) is needed")
        try:
            data[i, 0] = float(cells[time_column])
            data[i, 1:] = [float(cells[c]) for c in cols]
        except ValueError:
            raise InputError(f"{where}: line {lineno}: non-numeric value") from None
    return data


def _check_magnitudes(time_s: NDArray[np.float64], values: NDArray[np.float64], where: str,
                      time_unit_s: float, linenos: list[int]) -> None:
    big = np.argwhere(np.abs(values) > MAX_ABS_VALUE)
    if big.size:
        row, col = big[0]
        raise InputError(f"{where}: line {linenos[row]}: value {values[row, col]:g} in motion "
                         f"column {col + 1} is beyond ±{MAX_ABS_VALUE:g} (mm or deg)")
    dt = float(np.median(np.diff(time_s))) if time_s.size > 1 else 1.0
    lo, hi = SAMPLE_INTERVAL_RANGE_S
    if not lo <= dt <= hi:
        raise InputError(f"{where}: median sampling interval {dt:g} s (time_unit_s "
                         f"{time_unit_s:g}) is outside {lo:g}..{hi:g} s; check the time unit")
    span = float(time_s[-1] - time_s[0])
    if span > MAX_DURATION_S or np.max(np.abs(time_s[[0, -1]])) > MAX_TIME_S:
        raise InputError(f"{where}: time runs {time_s[0]:g}..{time_s[-1]:g} s (time_unit_s "
                         f"{time_unit_s:g}); a trace may span at most {MAX_DURATION_S:g} s "
                         f"within ±{MAX_TIME_S:g} s; check the time column and unit")


def read_trace(path: str | Path, *, time_column: int = 0, columns: Sequence[int] = (1,),
               time_unit_s: float = 1.0, axes: Sequence[str] | None = None,
               value_scale: float = 1.0, delimiter: str | None = None,
               skip_rows: int = 0, min_samples: int = MIN_SAMPLES) -> Trace:
    """Read a time-stamped trace from a whitespace- or comma-separated text file.

    Parameters
    ----------
    path : str or Path
        Text file, one sample per row; lines starting with ``#`` are ignored. A first line
        that is not numeric (a CSV header) is skipped.
    time_column : int, keyword-only
        0-based column holding time.
    columns : sequence of int
        0-based columns holding motion (1 to 6 of them).
    time_unit_s : float
        Seconds per time unit in the file (1 for s, 0.1 for tenths of a second, 1e-3 for ms).
    axes : sequence of str, optional
        Name of each motion column in the room frame: ``x y z rx ry rz`` or ``s`` (a 1-D
        signal), with an optional leading ``-`` to flip the sign. Default: ``s`` for one
        column, else ``x y z rx ry rz`` in order.
    value_scale : float
        Multiplies the motion values (e.g. 10 for a file in cm).
    delimiter : str, optional
        Column separator; default: detected per line (``;``, or a tab with decimal commas,
        else commas or whitespace; see :func:`_cells`).
    skip_rows : int
        Rows to skip at the top of the file.
    min_samples : int
        Fewest samples accepted.

    Returns
    -------
    Trace
        Times in seconds (as stamped, not shifted), values (n, len(columns)).

    Raises
    ------
    InputError
        Missing/unreadable file, a folder, FIFO or device instead of a regular file, a file
        over :data:`MAX_FILE_BYTES`, binary or undecodable data lines (comments may be in
        any 8-bit encoding; UTF-16 with a byte-order mark is read), bad or negative column
        numbers, a time unit outside :data:`TIME_UNIT_RANGE_S`, non-numeric cells, NaN or
        infinite cells, |value| over :data:`MAX_ABS_VALUE` (after ``value_scale``),
        non-monotonic time, a median sampling interval outside
        :data:`SAMPLE_INTERVAL_RANGE_S` or a span over :data:`MAX_DURATION_S` (after
        ``time_unit_s``: a wrong unit shows up here) or too few samples; the message is
        one line naming the file and, where there is one, the line.
    """
    where = str(path)
    cols = [int(c) for c in columns]
    _check_options(where, int(time_column), cols, float(time_unit_s), float(value_scale),
                   int(skip_rows))
    names, signs = _parse_axes(where, axes, len(cols))
    rows = _split_rows(_read_text(path, where), where, delimiter, int(skip_rows))
    data = _table(rows, where, int(time_column), cols)
    with np.errstate(over="ignore", invalid="ignore"):
        time_s = data[:, 0] * time_unit_s
        values = data[:, 1:] * signs * value_scale
    _check_series(time_s, values, where, min_samples)
    _check_magnitudes(time_s, values, where, time_unit_s, [r[0] for r in rows])
    return Trace(time_s=time_s, values=values, axes=names, source=where)


RESAMPLING_METHODS: tuple[str, ...] = ("hold", "delayed_linear", "linear", "cubic")
"""Interpolations of :func:`resample`; ``hold`` and ``delayed_linear`` are causal
(:func:`resample_lookahead_s`)."""


def resample_lookahead_s(trace: Trace, method: str) -> float:
    """How far into the future (s) a resampled value may depend on the input samples.

    ``hold`` (sample-and-hold: the latest sample at or before each output time) uses no later
    sample: 0; nor does ``delayed_linear`` (linear between the two samples around one input
    interval earlier). ``linear`` uses the next sample: up to the largest input interval.
    ``cubic`` is a spline through the whole trace: every value depends on every sample (``inf``).
    """
    if method in ("hold", "delayed_linear"):
        return 0.0
    if method == "linear":
        return float(np.max(np.diff(trace.time_s))) if trace.time_s.size > 1 else 0.0
    if method == "cubic":
        return float(np.inf)
    raise ValueError(f"method must be one of {', '.join(RESAMPLING_METHODS)} (got {method!r})")


def resample(trace: Trace, dt_s: float, *, t0_s: float | None = None,
             t1_s: float | None = None,
             method: Literal["hold", "delayed_linear", "linear", "cubic"] = "linear"
             ) -> Trace:
    """Resample a trace onto a uniform clock.

    Parameters
    ----------
    trace : Trace
        Input trace.
    dt_s : float
        Output sample interval (s).
    t0_s, t1_s : float, optional
        First and last output times (s); default: the trace's own span. Must lie inside it.
    method : {"hold", "delayed_linear", "linear", "cubic"}
        ``hold``: the latest input sample at or before each output time (causal: what a
        camera clock reading the latest measurement sees). ``delayed_linear``: the linear
        interpolation at ``t - D``, D the largest input interval, so only samples at or before
        ``t`` are read (causal, a smooth signal delayed by D; the first D seconds hold the
        first sample). ``linear`` and ``cubic``
        interpolate between samples and so look ahead (NOT causal: up to one input interval,
        and the whole trace, see :func:`resample_lookahead_s`); fine for a truth signal, not
        for a predictor's input.

    Returns
    -------
    Trace
        Samples at ``t0_s + k dt_s`` for every k with time <= ``t1_s``.
    """
    if method not in RESAMPLING_METHODS:
        raise ValueError(f"method must be one of {', '.join(repr(m) for m in RESAMPLING_METHODS)}"
                         f" (got {method!r})")
    if not dt_s > 0:
        raise InputError(f"{trace.source}: resampling interval must be positive (got {dt_s})")
    lo, hi = float(trace.time_s[0]), float(trace.time_s[-1])
    t0 = lo if t0_s is None else float(t0_s)
    t1 = hi if t1_s is None else float(t1_s)
    if t0 < lo - 1e-9 or t1 > hi + 1e-9 or t1 <= t0:
        raise InputError(f"{trace.source}: resampling span [{t0:g}, {t1:g}] s is not inside "
                         f"the trace's [{lo:g}, {hi:g}] s")
    n = int(np.floor((t1 - t0) / dt_s + 1e-9)) + 1
    t = t0 + dt_s * np.arange(n)
    t = np.minimum(t, hi)
    if method == "hold":
        idx = np.searchsorted(trace.time_s, t + 1e-9 * dt_s, side="right") - 1
        vals = trace.values[np.clip(idx, 0, trace.time_s.size - 1)].copy()
    elif method in ("linear", "delayed_linear"):
        at = t if method == "linear" else t - resample_lookahead_s(trace, "linear")
        vals = np.column_stack([np.interp(at, trace.time_s, trace.values[:, j])
                                for j in range(trace.values.shape[1])])
    else:
        from scipy.interpolate import CubicSpline

        vals = CubicSpline(trace.time_s, trace.values, axis=0)(t)
    return Trace(time_s=t, values=vals, axes=trace.axes, source=trace.source)


def check_paired(first: Trace, second: Trace, *, tolerance_s: float | None = None) -> None:
    """Raise when two traces recorded together do not cover the same time span.

    Parameters
    ----------
    first, second : Trace
        E.g. an internal (tumour) and an external (surface) trace.
    tolerance_s : float, optional
        Allowed difference of start and of duration (s); default: the larger sample interval.

    Raises
    ------
    InputError
        Naming both files and their durations (a wrong ``time_unit_s`` shows up here).
    """
    tol = max(first.dt_s, second.dt_s) if tolerance_s is None else float(tolerance_s)
    if (abs(first.duration_s - second.duration_s) > tol
            or abs(first.time_s[0] - second.time_s[0]) > tol):
        raise InputError(
            f"paired traces disagree: {first.source} spans {first.time_s[0]:g}..."
            f"{first.time_s[-1]:g} s but {second.source} spans {second.time_s[0]:g}..."
            f"{second.time_s[-1]:g} s (check the time unit of each file)")


BREATHING_PERIOD_RANGE_S = (1.0, 20.0)
"""Dominant periods (s) plausible for a breathing trace (resting adults: about 2.5-8 s);
outside, the time column is probably in other units than ``time_unit_s`` says."""


def dominant_period_s(trace: Trace) -> float:
    """The period (s) of the strongest spectral peak of the trace's velocity, on its most
    moving column (resampled to its median sample interval, smoothed over 0.25 s). The
    velocity's spectrum is the signal's times the frequency, so slow baseline drift, which
    dominates many real traces' own spectrum, does not hide the breathing. NaN when it
    cannot be told (fewer than 8 samples, or a constant signal)."""
    t = trace.time_s
    if t.size < 8:
        return float("nan")
    dt = float(np.median(np.diff(t)))
    if not dt > 0:
        return float("nan")
    grid = np.arange(t[0], t[-1], dt)
    vel = np.diff(np.column_stack([np.interp(grid, t, c) for c in trace.values.T]), axis=0)
    if vel.shape[0] < 8:
        return float("nan")
    v = vel[:, int(np.argmax(np.var(vel, axis=0)))]
    width = max(1, int(round(0.25 / dt)))
    v = np.convolve(v, np.ones(width) / width, mode="same")
    spec = np.abs(np.fft.rfft(v - v.mean()))
    if spec.size < 3 or not np.any(spec[1:] > 0):
        return float("nan")
    k = 1 + int(np.argmax(spec[1:]))
    return float(v.size * dt / k)


TUMOUR_PEAK_TO_PEAK_MAX_MM = 60.0
"""Largest plausible peak-to-peak excursion (mm) of a tumour trace on one room axis. Reported
tumour motion reaches about 25 mm in lung (Seppenwoolde et al., IJROBP 53 (2002) 822) and
rarely beyond 30-40 mm anywhere; a trace beyond 60 mm is a test pattern for a motion
platform or in other units than mm."""


def implausible_breathing(trace: Trace, *, time_unit_s: float) -> str | None:
    """A one-line warning when the trace is not plausible tumour or chest breathing; else None.

    Flags a dominant period outside :data:`BREATHING_PERIOD_RANGE_S` (naming the period and
    the time unit to check) and, on the translation axes x y z, a peak-to-peak excursion
    beyond :data:`TUMOUR_PEAK_TO_PEAK_MAX_MM` (naming the axis and its excursion); several
    findings are joined by "; ".
    """
    found = []
    period = dominant_period_s(trace)
    lo, hi = BREATHING_PERIOD_RANGE_S
    if np.isfinite(period) and not lo <= period <= hi:
        hint = " (0.1 if the times are in tenths of a second)" if period > hi else ""
        found.append(f"{trace.source}: the dominant period is {period:.3g} s, not a breathing "
                     f"period ({lo:g}-{hi:g} s) with time_unit_s {time_unit_s:g}: check the "
                     f"time unit{hint}")
    xyz = [j for j, a in enumerate(trace.axes) if a in ("x", "y", "z")]
    if xyz:
        ptp = np.ptp(trace.values[:, xyz], axis=0)
        j = int(np.argmax(ptp))
        if ptp[j] > TUMOUR_PEAK_TO_PEAK_MAX_MM:
            found.append(f"{trace.source}: the target moves {ptp[j]:.3g} mm peak to peak in "
                         f"{trace.axes[xyz[j]]}, beyond any reported tumour motion "
                         f"(> {TUMOUR_PEAK_TO_PEAK_MAX_MM:g} mm): a motion-platform test "
                         f"pattern, or values not in mm")
    return "; ".join(found) or None
