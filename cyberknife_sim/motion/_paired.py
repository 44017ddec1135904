"""Paired traces: an internal (tumour) and an external (chest surface) trace recorded together.

The pair drives the truth: the target follows the internal trace, the chest markers ride the
external one. Both are truth, so they are interpolated smoothly (a C2 cubic spline through
the samples); the sensing side stays causal because the camera samples the truth at its own
frame times. The two files may use different time units (``time_unit_s`` of each); a pair
whose durations (or start times) disagree by more than a fraction of the duration is refused,
naming both files, which catches a time unit stated wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ._trace import Trace, check_paired, read_trace

__all__ = ["PairedTrace", "VelocityFit", "read_paired"]


@dataclass(frozen=True)
class VelocityFit:
    """The recorded internal motion as ``a + b e + c ė`` of the recorded external signal.

    Attributes
    ----------
    b_mm_per_mm : ndarray, shape (3,)
        Target motion per mm of external signal (x, y, z; mm/mm).
    c_s : ndarray, shape (3,)
        Target motion per mm/s of external velocity (mm per mm/s = s).
    residual_rms_mm : ndarray, shape (3,)
        RMS of the recording minus the fit, per axis (mm): how far the internal motion is
        from a function of the external signal and its velocity.
    """

    b_mm_per_mm: NDArray[np.float64]
    c_s: NDArray[np.float64]
    residual_rms_mm: NDArray[np.float64]

    def noise_gain(self, velocity_span_s: float) -> NDArray[np.float64]:
        """Target error (mm, per axis) per mm of white noise on the external signal when the
        velocity is a backward difference over ``velocity_span_s`` (s).

        The model's error from a noise ``n`` is ``b n_k + c (n_k - n_(k-N)) / T`` with
        ``T = velocity_span_s``: standard deviation ``sqrt((b + c/T)^2 + (c/T)^2)`` times the
        noise's.
        """
        if not velocity_span_s > 0:
            raise InputError(f"velocity_span_s must be > 0 (got {velocity_span_s})")
        ct = self.c_s / float(velocity_span_s)
        return np.sqrt((self.b_mm_per_mm + ct) ** 2 + ct**2)


class PairedTrace:
    """Interpolated internal and external motion from a pair of recorded traces.

    Parameters
    ----------
    internal : Trace
        Tumour motion; its x, y, z axes (mm, room) are used.
    external : Trace
        Chest surface displacement, one column (mm, outward positive).
    max_mismatch : float
        Largest accepted relative difference of durations and starts (fraction of the longer
        duration).

    Notes
    -----
    Times are relative to each trace's first sample. The internal offset is the recorded
    position minus its mean (the planned target sits at the mean position); the external
    signal is the recorded displacement minus its 5th percentile (about 0 at exhale).
    """

    def __init__(self, internal: Trace, external: Trace, *, max_mismatch: float = 0.03):
        from scipy.interpolate import CubicSpline

        longer = max(internal.duration_s, external.duration_s)
        check_paired(internal, external, tolerance_s=float(max_mismatch) * longer)
        self.internal, self.external = internal, external
        xyz = internal.xyz_mm()
        self.offset_mean_mm = xyz.mean(axis=0)
        self._offset = CubicSpline(internal.time_s - internal.time_s[0],
                                   xyz - self.offset_mean_mm, axis=0)
        ext = external.values[:, 0]
        self.external_zero_mm = float(np.percentile(ext, 5.0))
        self._external = CubicSpline(external.time_s - external.time_s[0],
                                     ext - self.external_zero_mm)
        self.duration_s = min(internal.duration_s, external.duration_s)

    def _check(self, t: NDArray[np.float64]) -> None:
        if np.any(t < -1e-9) or np.any(t > self.duration_s + 1e-9):
            raise InputError(f"{self.internal.source} + {self.external.source}: time outside "
                             f"the pair's 0..{self.duration_s:g} s")

    def offset_mm(self, t_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """Target offset from its mean position (mm, room), shape (n, 3)."""
        self._check(t_s)
        return np.asarray(self._offset(t_s), dtype=np.float64).reshape(-1, 3)

    def external_mm(self, t_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """Chest surface displacement (mm, outward), shape (n,); about 0 at exhale."""
        self._check(t_s)
        return np.asarray(self._external(t_s), dtype=np.float64).reshape(-1)

    def velocity_fit(self) -> VelocityFit:
        """Least-squares fit of the internal recording as ``a + b e + c ė`` (the loop's
        ``linear_velocity`` correlation model) at the internal samples, with the external
        signal and its exact derivative taken from the external spline: how well a
        correlation model can follow this pair at best, and how strongly it will amplify
        marker noise (:meth:`VelocityFit.noise_gain`)."""
        t = self.internal.time_s - self.internal.time_s[0]
        t = t[t <= self.duration_s + 1e-9]
        e = self._external(t)
        v = self._external(t, 1)
        design = np.column_stack([np.ones_like(t), e, v])
        y = self._offset(t)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        res = y - design @ coef
        return VelocityFit(b_mm_per_mm=coef[1], c_s=coef[2],
                           residual_rms_mm=np.sqrt(np.mean(res**2, axis=0)))

    def expected_model_noise_mm(self, *, signal_noise_mm: float,
                                velocity_span_s: float) -> float:
        """Expected target error (mm, 3-D RMS) of the best ``linear_velocity`` model from
        white noise of ``signal_noise_mm`` (1 sigma, in the external file's mm) on the
        external signal, its velocity a backward difference over ``velocity_span_s`` (s),
        added in quadrature to the fit's own residual. The loop's marker signal is the mean
        of ``m`` markers each with gain ``g`` on the external motion: pass
        ``marker_noise_mm / sqrt(m) / mean(g)``."""
        fit = self.velocity_fit()
        per_axis = fit.noise_gain(velocity_span_s) * float(signal_noise_mm)
        return float(np.sqrt(np.sum(per_axis**2 + fit.residual_rms_mm**2)))

    def external_relative(self, t_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """External signal scaled to ~0 at exhale and ~1 at inhale (5th..95th percentile)."""
        span = float(np.percentile(self.external.values[:, 0], 95.0)) - self.external_zero_mm
        return self.external_mm(t_s) / max(span, 1e-9)


def read_paired(internal_file: str | Path, external_file: str | Path, *,
                columns: tuple[int, ...] = (1, 2, 3), time_column: int = 0,
                time_unit_s: float = 1.0, external_time_column: int = 0,
                external_column: int = 1, external_time_unit_s: float | None = None,
                external_scale: float = 1.0, max_mismatch: float = 0.03) -> PairedTrace:
    """Read an internal and an external trace recorded together.

    Parameters
    ----------
    internal_file, external_file : path
        The tumour trace (time + x y z [rx ry rz]) and the surface trace (time + mm).
    columns, time_column, time_unit_s
        Motion columns (mapped to x, y, z, rx, ry, rz in order), time column and seconds per
        time unit of the internal file.
    external_time_column, external_column, external_time_unit_s, external_scale
        The same for the external file (unit: default the internal one; the displacement is
        multiplied by ``external_scale``).
    max_mismatch : float
        See :class:`PairedTrace`.

    Raises
    ------
    InputError
        A file cannot be read, or the two disagree in span (naming both).
    """
    cols = tuple(int(c) for c in columns)
    if len(cols) < 3:
        raise InputError(f"{internal_file}: a paired internal trace needs x y z columns "
                         f"(got {len(cols)})")
    internal = read_trace(internal_file, time_column=time_column, columns=cols,
                          time_unit_s=time_unit_s)
    ext_unit = time_unit_s if external_time_unit_s is None else external_time_unit_s
    external = read_trace(external_file, time_column=external_time_column,
                          columns=(int(external_column),), time_unit_s=ext_unit, axes=("s",),
                          value_scale=external_scale)
    return PairedTrace(internal, external, max_mismatch=max_mismatch)
