"""Recorded motion traces: reading time-stamped text/CSV files and resampling them.

A trace is a time column plus 1 to 6 motion columns (translations in mm, rotations in
degrees). The caller states which columns hold what and the time unit; nothing is guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError

__all__ = ["AXIS_NAMES", "Trace", "check_paired", "read_trace", "resample"]

AXIS_NAMES = ("x", "y", "z", "rx", "ry", "rz")
"""Names a trace column may be mapped to (room frame; mm for x y z, degrees for rx ry rz)."""

MIN_SAMPLES = 4
"""Fewest samples a trace may have."""


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
        Column separator; default: commas or whitespace.
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
        Missing/unreadable file, bad column numbers, non-numeric cells, NaN, non-monotonic
        time or too few samples; the message names the file and the row.
    """
    where = str(path)
    cols = [int(c) for c in columns]
    if not 1 <= len(cols) <= 6:
        raise InputError(f"{where}: between 1 and 6 motion columns are needed (got {len(cols)})")
    if time_unit_s <= 0 or not np.isfinite(time_unit_s):
        raise InputError(f"{where}: time_unit_s must be positive (got {time_unit_s})")
    if axes is None:
        axes = ("s",) if len(cols) == 1 else AXIS_NAMES[: len(cols)]
    if len(axes) != len(cols):
        raise InputError(f"{where}: {len(axes)} axes given for {len(cols)} columns")
    parsed = [_parse_axis(a, where) for a in axes]
    names = tuple(n for n, _ in parsed)
    if len(set(names)) != len(names):
        raise InputError(f"{where}: an axis is named twice in {list(axes)}")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InputError(f"{where}: cannot read trace ({exc.strerror or exc})") from None
    rows: list[list[str]] = []
    first_line = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if lineno <= skip_rows:
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        cells = (stripped.split(delimiter) if delimiter
                 else stripped.replace(",", " ").split())
        if not rows and first_line == 0:
            first_line = lineno
            try:
                float(cells[0])
            except ValueError:
                continue  # header line
        rows.append([lineno, *cells])  # type: ignore[list-item]
    if not rows:
        raise InputError(f"{where}: no samples found")
    need = max(cols + [time_column])
    data = np.empty((len(rows), len(cols) + 1))
    for i, row in enumerate(rows):
        lineno, cells = row[0], row[1:]
        if len(cells) <= need:
            raise InputError(f"{where}: line {lineno} has {len(cells)} columns; column "
                             f"{need} (0-based) is needed")
        try:
            data[i, 0] = float(cells[time_column])
            data[i, 1:] = [float(cells[c]) for c in cols]
        except ValueError:
            raise InputError(f"{where}: line {lineno}: non-numeric value") from None
    signs = np.array([s for _, s in parsed])
    time_s = data[:, 0] * time_unit_s
    values = data[:, 1:] * signs * value_scale
    _check_series(time_s, values, where, min_samples)
    return Trace(time_s=time_s, values=values, axes=names, source=where)


def resample(trace: Trace, dt_s: float, *, t0_s: float | None = None,
             t1_s: float | None = None,
             method: Literal["linear", "cubic"] = "linear") -> Trace:
    """Resample a trace onto a uniform clock.

    Parameters
    ----------
    trace : Trace
        Input trace.
    dt_s : float
        Output sample interval (s).
    t0_s, t1_s : float, optional
        First and last output times (s); default: the trace's own span. Must lie inside it.
    method : {"linear", "cubic"}
        Interpolation between samples.

    Returns
    -------
    Trace
        Samples at ``t0_s + k dt_s`` for every k with time <= ``t1_s``.
    """
    if method not in ("linear", "cubic"):
        raise ValueError(f"method must be one of 'linear', 'cubic' (got {method!r})")
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
    if method == "linear":
        vals = np.column_stack([np.interp(t, trace.time_s, trace.values[:, j])
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
