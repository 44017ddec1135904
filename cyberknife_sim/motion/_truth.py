"""Motion truth: time -> spine pose, target position and chest surface, vectorized over time.

Frames: ``anatomy`` is the patient's rigid (spine) frame; at pose zero it coincides with the
room frame (DESIGN.md), so ``room_from_anatomy(t)`` is the 6-DoF spine motion (set-up error,
drift, sudden shifts, small rotations) about the room origin. Breathing moves the target
relative to the spine (``target_offset_room``) and the chest surface that external markers
ride on (``external_signal``). All randomness is drawn from the generator at construction,
so any time may be evaluated, in any order, with the same result. Breathing and coughs each
get their own child stream, and each draws its breaths / events in order, so the motion at a
time depends on the motion settings, the generator's seed and that time only, not on
``duration_s``: a 60 s run sees the first minute of the 1800 s run with the same seed.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError
from ..geometry import matrix_from_pose
from ..scene import MotionSettings, Scene, SpineMotionSettings
from ._breathing import BreathingPattern, CoughEvents
from ._paired import PairedTrace, read_paired
from ._trace import Trace, implausible_breathing, read_trace

__all__ = ["MotionTruth", "spine_pose"]

LEAD_IN_S = 60.0
"""Breathing is defined this long before 0 and after the duration (s)."""

ANTERIOR_ROOM = np.array([0.0, -1.0, 0.0])
"""Outward chest-surface normal for a supine patient (room LPS: -y is anterior)."""


def _times(t_s: ArrayLike) -> NDArray[np.float64]:
    t = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
    if t.ndim != 1:
        raise ValueError(f"t_s: expected a scalar or shape (n,), got {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("t_s: times must be finite")
    return t


def spine_pose(t_s: ArrayLike, spine: SpineMotionSettings) -> NDArray[np.float64]:
    """Spine pose parameters over time.

    Parameters
    ----------
    t_s : array-like, shape (n,)
        Times (s).
    spine : SpineMotionSettings
        Set-up error, linear drift (per minute) and sudden shifts (steps at their times).

    Returns
    -------
    ndarray, shape (n, 6)
        ``(tx, ty, tz, rx, ry, rz)`` in mm and degrees (DESIGN.md pose convention).
    """
    t = _times(t_s)
    minutes = (t / 60.0)[:, None]
    pose = np.empty((t.size, 6))
    pose[:, :3] = np.asarray(spine.setup_error_mm) + minutes * np.asarray(spine.drift_mm_per_min)
    pose[:, 3:] = (np.asarray(spine.setup_error_deg)
                   + minutes * np.asarray(spine.drift_deg_per_min))
    for shift in spine.shifts:
        after = (t >= shift.time_s)[:, None]
        pose += after * np.concatenate([shift.translation_mm, shift.rotation_deg])
    return pose


def _unit(v: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else np.zeros(3)


class MotionTruth:
    """The true motion of the patient over a treatment.

    Parameters
    ----------
    motion : MotionSettings
        Breathing, coughs, spine motion and an optional recorded trace.
    duration_s : float, keyword-only
        Treatment length (s); times in ``[-60, duration_s + 60]`` s can be evaluated.
    rng : numpy.random.Generator
        Source of every random draw (irregular breathing, coughs); used only here, through
        child streams spawned from it (one per random process).
    marker_count : int
        Number of chest LED markers (see :meth:`marker_positions_room`).
    """

    def __init__(self, motion: MotionSettings, *, duration_s: float,
                 rng: np.random.Generator, marker_count: int = 3):
        self.settings = motion
        self.duration_s = float(duration_s)
        b = motion.breathing
        self.direction_room = _unit(b.direction)
        # one stream per process: neither the other's draws nor the duration shift it
        rng_breathing, rng_cough = rng.spawn(2)
        self.pattern = BreathingPattern.generate(
            duration_s=self.duration_s, period_s=b.period_s, shape_n=b.shape_n,
            period_cv=b.period_cv, amplitude_cv=b.amplitude_cv, rng=rng_breathing,
            lead_in_s=LEAD_IN_S)
        c = motion.cough
        self.coughs = CoughEvents.generate(duration_s=self.duration_s,
                                           rate_per_min=c.rate_per_min,
                                           event_s=c.duration_s, rng=rng_cough)
        self.trace: Trace | None = None
        self.paired: PairedTrace | None = None
        if motion.trace.kind == "paired" and motion.trace.file is not None:
            self._read_paired()
        elif motion.trace.file is not None:
            tr = motion.trace
            self.trace = read_trace(tr.file, time_column=tr.time_column, columns=tr.columns,
                                    time_unit_s=tr.time_unit_s,
                                    axes=("s",) if tr.kind == "external" and
                                    len(tr.columns) == 1 else None)
            if self.trace.duration_s < self.duration_s:
                raise InputError(f"{tr.file}: trace lasts {self.trace.duration_s:g} s, shorter "
                                 f"than the simulation ({self.duration_s:g} s)")
            odd = implausible_breathing(self.trace, time_unit_s=tr.time_unit_s)
            if odd:  # `cksim run` prints it once at the end (cli.main holds warnings)
                warnings.warn(odd, UserWarning, stacklevel=2)
            self._prepare_trace()
        self.marker_count = int(marker_count)
        # Markers on the anterior chest (anatomy mm): a row along z, alternating in x.
        k = np.arange(self.marker_count)
        self.marker_base_anatomy = np.column_stack([
            np.where(k % 2 == 0, -40.0, 40.0) * (k > 0), np.full(k.size, -120.0),
            -60.0 + 40.0 * k])
        self.marker_gain = np.linspace(1.0, 0.6, self.marker_count) if self.marker_count > 1 \
            else np.ones(1)

    @classmethod
    def from_scene(cls, scene: Scene, rng: np.random.Generator) -> MotionTruth:
        """Motion truth for a :class:`~cyberknife_sim.scene.Scene` (its motion, duration,
        marker count)."""
        return cls(scene.motion, duration_s=scene.simulation.duration_s, rng=rng,
                   marker_count=scene.tracking.markers.count)

    # -- recorded trace ----------------------------------------------------------------
    def _read_paired(self) -> None:
        tr = self.settings.trace
        self.paired = read_paired(
            tr.file, tr.external_file, columns=tr.columns, time_column=tr.time_column,
            time_unit_s=tr.time_unit_s, external_time_column=tr.external_time_column,
            external_column=tr.external_column, external_time_unit_s=tr.external_time_unit_s,
            external_scale=tr.external_scale, max_mismatch=tr.max_duration_mismatch)
        if self.paired.duration_s < self.duration_s:
            raise InputError(f"{tr.file} + {tr.external_file}: the pair lasts "
                             f"{self.paired.duration_s:g} s, shorter than the simulation "
                             f"({self.duration_s:g} s)")
        for trace, unit in ((self.paired.internal, tr.time_unit_s),
                            (self.paired.external, tr.external_time_unit_s or tr.time_unit_s)):
            odd = implausible_breathing(trace, time_unit_s=unit)
            if odd:
                warnings.warn(odd, UserWarning, stacklevel=3)

    def _prepare_trace(self) -> None:
        tr = self.trace
        assert tr is not None
        self._trace_t = tr.time_s - tr.time_s[0]
        if self.settings.trace.kind == "target":
            xyz = tr.xyz_mm()
            self._trace_offset = xyz - xyz.mean(axis=0)
            # the principal axis of the target motion gives a 1-D breathing signal
            _, _, vt = np.linalg.svd(self._trace_offset, full_matrices=False)
            axis = vt[0] if vt[0] @ self.direction_room >= 0 else -vt[0]
            proj = self._trace_offset @ axis
        else:
            proj = tr.values[:, 0]
            self._trace_offset = None
        lo, hi = np.percentile(proj, [5.0, 95.0])
        self._trace_signal = (proj - lo) / max(hi - lo, 1e-9)  # ~0 exhale .. ~1 inhale

    def _trace_eval(self, values: NDArray[np.float64], t: NDArray[np.float64]):
        if np.any(t < self._trace_t[0] - 1e-9) or np.any(t > self._trace_t[-1] + 1e-9):
            raise InputError(f"{self.trace.source}: time outside the trace's "
                             f"0..{self._trace_t[-1]:g} s")
        if values.ndim == 1:
            return np.interp(t, self._trace_t, values)
        return np.column_stack([np.interp(t, self._trace_t, values[:, j])
                                for j in range(values.shape[1])])

    @property
    def _lag_s(self) -> float:
        """Time by which the internal motion leads the external one (s)."""
        return self.settings.breathing.hysteresis_deg / 360.0 * self.settings.breathing.period_s

    # -- breathing -----------------------------------------------------------------------
    def breathing(self, t_s: ArrayLike, *, internal: bool) -> NDArray[np.float64]:
        """Relative breathing signal, 0 at exhale and about 1 at an average inhale.

        Parameters
        ----------
        t_s : array-like, shape (n,)
            Times (s).
        internal : bool
            True: the target's phase (leads the chest by ``hysteresis_deg``); False: chest.
        """
        t = _times(t_s)
        b = self.settings.breathing
        if self.paired is not None:
            return self.paired.external_relative(t)
        if self.trace is not None:
            if self.settings.trace.kind == "target":
                tt = t if internal else np.clip(t - self._lag_s, 0.0, None)
            else:
                tt = np.clip(t + self._lag_s, 0.0, None) if internal else t
            return self._trace_eval(self._trace_signal, tt)
        if not b.enabled:
            return np.zeros(t.size)
        return self.pattern(t, lead_deg=b.hysteresis_deg if internal else 0.0)

    def target_offset_room(self, t_s: ArrayLike) -> NDArray[np.float64]:
        """Target motion relative to the spine (breathing, coughs, recorded trace).

        Parameters
        ----------
        t_s : array-like, shape (n,)
            Times (s).

        Returns
        -------
        ndarray, shape (n, 3)
            Offset in room axes (mm); zero at exhale.
        """
        t = _times(t_s)
        if self.paired is not None:
            off = self.paired.offset_mm(t)
        elif self.trace is not None and self._trace_offset is not None:
            off = self._trace_eval(self._trace_offset, t)
        else:
            amp = self.settings.breathing.target_amplitude_mm
            off = (amp * self.breathing(t, internal=True))[:, None] * self.direction_room
        cough = self.settings.cough.amplitude_mm * self.coughs(t)
        return self._internal_changes(t, off) + cough[:, None] * self.direction_room

    def _internal_changes(self, t: NDArray[np.float64],
                          off: NDArray[np.float64]) -> NDArray[np.float64]:
        """Amplitude-ratio drift and baseline shift of the internal motion alone (skipped
        when off, so the default truth is unchanged bit for bit)."""
        b = self.settings.breathing
        if b.amplitude_ratio_drift_per_min != 0.0:
            off = off * np.maximum(1.0 + b.amplitude_ratio_drift_per_min * t / 60.0, 0.0)[:, None]
        if any(v != 0.0 for v in b.internal_baseline_shift_mm):
            after = (t >= b.internal_baseline_shift_time_s)[:, None]
            off = off + after * np.asarray(b.internal_baseline_shift_mm)
        return off

    def external_signal(self, t_s: ArrayLike) -> NDArray[np.float64]:
        """Chest surface displacement along the outward normal (mm), 0 at the first exhale.

        Includes the external baseline drift and coughs (scaled by chest / target
        amplitude). Lags the internal motion by ``hysteresis_deg``.
        """
        t = _times(t_s)
        b = self.settings.breathing
        if self.paired is not None:
            base = self.paired.external_mm(t)
        elif self.trace is not None and self.settings.trace.kind == "external":
            base = self._trace_eval(self.trace.values[:, 0], t)
        else:
            base = b.amplitude_mm * self.breathing(t, internal=False)
        ratio = b.amplitude_mm / b.target_amplitude_mm if b.target_amplitude_mm > 0 else 1.0
        cough = ratio * self.settings.cough.amplitude_mm * self.coughs(t)
        return base + cough + b.baseline_drift_mm_per_min * t / 60.0

    # -- spine and composition -----------------------------------------------------------
    def spine_pose(self, t_s: ArrayLike) -> NDArray[np.float64]:
        """Spine pose ``(tx, ty, tz, rx, ry, rz)`` (mm, deg), shape (n, 6)."""
        return spine_pose(t_s, self.settings.spine)

    def room_from_anatomy(self, t_s: ArrayLike) -> NDArray[np.float64]:
        """Rigid spine transform over time, shape (n, 4, 4); identity at pose zero."""
        return matrix_from_pose(self.spine_pose(t_s)).reshape(-1, 4, 4)

    def target_room(self, t_s: ArrayLike, target_anatomy: ArrayLike) -> NDArray[np.float64]:
        """True target position over time.

        Parameters
        ----------
        t_s : array-like, shape (n,)
            Times (s).
        target_anatomy : array-like, shape (3,)
            Planned target in the anatomy frame (mm; = room at pose zero).

        Returns
        -------
        ndarray, shape (n, 3)
            ``room_from_anatomy(t) @ target + target_offset_room(t)`` (mm, room) when
            ``motion.target_moves_with_spine``; otherwise ``target + offset``.
        """
        p = np.asarray(target_anatomy, dtype=np.float64)
        if p.shape != (3,):
            raise ValueError(f"target_anatomy: expected shape (3,), got {p.shape}")
        t = _times(t_s)
        if self.settings.target_moves_with_spine:
            m = self.room_from_anatomy(t)
            base = np.einsum("nij,j->ni", m[:, :3, :3], p) + m[:, :3, 3]
        else:
            base = np.broadcast_to(p, (t.size, 3))
        return base + self.target_offset_room(t)

    def marker_positions_room(self, t_s: ArrayLike) -> NDArray[np.float64]:
        """True positions of the chest LED markers, shape (n, m, 3) (room mm).

        Each marker sits on the anterior chest, moves rigidly with the spine, and rides the
        chest surface along the anterior normal with its own gain (1.0 down to 0.6).
        """
        t = _times(t_s)
        m = self.room_from_anatomy(t)
        base = (np.einsum("nij,kj->nki", m[:, :3, :3], self.marker_base_anatomy)
                + m[:, None, :3, 3])
        ext = self.external_signal(t)
        return base + (ext[:, None] * self.marker_gain)[:, :, None] * ANTERIOR_ROOM
