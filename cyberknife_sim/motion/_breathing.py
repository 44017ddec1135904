"""Breathing truth: the Lujan model, irregular breath-to-breath variation, coughs.

The regular Lujan model is ``z(t) = z0 - b cos^2n(pi t / tau - phi)``. Here each breath is
a Lujan cycle that starts and ends at exhale, ``g(u) = sin^2n(pi u)`` for the breath's phase
``u`` in [0, 1) (0 at exhale, 1 at peak inhale): that is the Lujan curve shifted by half a
period, which lets period and amplitude change from one breath to the next without a jump in
position or velocity. All randomness is drawn at construction.

Each random process draws from its own child stream of the generator passed in (breath
periods, breath amplitudes, cough arrival times, cough sizes), and draws its values in order,
in blocks of a fixed size. So breath ``k`` and cough ``k`` are the same whatever span is
asked for: a short run sees exactly the first seconds of a long one with the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["BreathingPattern", "CoughEvents", "lognormal_factors", "lujan"]

_BLOCK = 64
"""Values drawn at a time from a stream; fixed, so a value's draw never depends on the span."""


def lujan(t_s: ArrayLike, *, z0_mm: float, b_mm: float, period_s: float, n: int,
          phase_rad: float = 0.0) -> NDArray[np.float64]:
    """The regular Lujan breathing curve ``z0 - b cos^2n(pi t / tau - phi)``.

    Parameters
    ----------
    t_s : array-like
        Times (s).
    z0_mm : float
        Position at exhale (mm).
    b_mm : float
        Amplitude (mm): the curve spans ``[z0 - b, z0]``.
    period_s : float
        Period tau (s).
    n : int
        Shape exponent (larger: flatter exhale, sharper inhale).
    phase_rad : float
        Phase phi (rad).

    Returns
    -------
    ndarray
        Positions (mm), same shape as ``t_s``.
    """
    t = np.asarray(t_s, dtype=np.float64)
    return z0_mm - b_mm * np.cos(np.pi * t / period_s - phase_rad) ** (2 * n)


def lognormal_factors(rng: np.random.Generator, size: int, cv: float) -> NDArray[np.float64]:
    """Positive factors with mean 1 and coefficient of variation ``cv`` (log-normal)."""
    if cv <= 0:
        return np.ones(size)
    sigma2 = np.log1p(cv * cv)
    return rng.lognormal(mean=-0.5 * sigma2, sigma=np.sqrt(sigma2), size=size)


@dataclass(frozen=True)
class BreathingPattern:
    """An irregular breathing signal: a sequence of Lujan breaths.

    Attributes
    ----------
    start_s : ndarray, shape (k + 1,)
        Exhale times that start each breath (s); the last entry ends the last breath.
    amplitude : ndarray, shape (k,)
        Relative amplitude of each breath (mean 1).
    shape_n : int
        Lujan exponent n.
    """

    start_s: NDArray[np.float64]
    amplitude: NDArray[np.float64]
    shape_n: int

    @classmethod
    def generate(cls, *, duration_s: float, period_s: float, shape_n: int,
                 period_cv: float, amplitude_cv: float, rng: np.random.Generator,
                 lead_in_s: float = 0.0) -> BreathingPattern:
        """Draw breaths covering ``[-lead_in_s, duration_s + lead_in_s]``.

        Parameters
        ----------
        duration_s : float
            Span to cover (s).
        period_s : float
            Mean breath period (s).
        shape_n : int
            Lujan exponent.
        period_cv, amplitude_cv : float
            Breath-to-breath coefficients of variation (log-normal, mean preserved).
        rng : numpy.random.Generator
            Source of randomness: two child streams are spawned from it (periods,
            amplitudes); no values are drawn from it directly.
        lead_in_s : float
            Extra time before 0 and after ``duration_s`` (for phase-shifted copies).
        """
        span = duration_s + 2.0 * lead_in_s
        period_rng, amplitude_rng = rng.spawn(2)
        periods, amplitude = [], []
        covered = 0.0
        while covered < span + period_s:  # breath k is the k-th draw, whatever the span
            periods.append(period_s * lognormal_factors(period_rng, _BLOCK, period_cv))
            amplitude.append(lognormal_factors(amplitude_rng, _BLOCK, amplitude_cv))
            covered += periods[-1].sum()
        periods, amplitude = np.concatenate(periods), np.concatenate(amplitude)
        start = np.concatenate([[0.0], np.cumsum(periods)]) - lead_in_s
        return cls(start_s=start, amplitude=amplitude, shape_n=int(shape_n))

    @property
    def periods_s(self) -> NDArray[np.float64]:
        """Period of each breath (s)."""
        return np.diff(self.start_s)

    def phase(self, t_s: ArrayLike) -> NDArray[np.float64]:
        """Continuous breathing phase: breath index + fraction of the breath (unit-less)."""
        t = np.asarray(t_s, dtype=np.float64)
        if np.any(t < self.start_s[0]) or np.any(t > self.start_s[-1]):
            raise ValueError(f"time outside the breathing pattern's span "
                             f"[{self.start_s[0]:g}, {self.start_s[-1]:g}] s")
        return np.interp(t, self.start_s, np.arange(self.start_s.size, dtype=np.float64))

    def at_phase(self, phase: ArrayLike) -> NDArray[np.float64]:
        """Relative breathing signal at a phase: 0 at exhale, the breath's amplitude at inhale."""
        ph = np.asarray(phase, dtype=np.float64)
        i = np.clip(np.floor(ph).astype(np.int64), 0, self.amplitude.size - 1)
        u = ph - i
        return self.amplitude[i] * np.sin(np.pi * u) ** (2 * self.shape_n)

    def __call__(self, t_s: ArrayLike, *, lead_deg: float = 0.0) -> NDArray[np.float64]:
        """Relative breathing signal at times ``t_s`` (s), optionally ``lead_deg`` ahead."""
        return self.at_phase(self.phase(t_s) + lead_deg / 360.0)

    def velocity(self, t_s: ArrayLike, *, lead_deg: float = 0.0) -> NDArray[np.float64]:
        """Time derivative of :meth:`__call__` (1/s), analytic."""
        t = np.asarray(t_s, dtype=np.float64)
        ph = self.phase(t) + lead_deg / 360.0
        i = np.clip(np.floor(ph).astype(np.int64), 0, self.amplitude.size - 1)
        u = ph - i
        j = np.clip(np.floor(self.phase(t)).astype(np.int64), 0, self.amplitude.size - 1)
        dphase_dt = 1.0 / self.periods_s[j]
        n2 = 2 * self.shape_n
        d_du = self.amplitude[i] * n2 * np.sin(np.pi * u) ** (n2 - 1) * np.cos(np.pi * u) * np.pi
        return d_du * dphase_dt


@dataclass(frozen=True)
class CoughEvents:
    """Occasional deep breaths / coughs: smooth extra excursions at Poisson times.

    Attributes
    ----------
    start_s : ndarray, shape (k,)
        Event start times (s).
    scale : ndarray, shape (k,)
        Relative size of each event (0.5 to 1.5).
    duration_s : float
        Length of each event (s); the excursion is ``sin^2`` over it.
    """

    start_s: NDArray[np.float64]
    scale: NDArray[np.float64]
    duration_s: float

    @classmethod
    def generate(cls, *, duration_s: float, rate_per_min: float, event_s: float,
                 rng: np.random.Generator) -> CoughEvents:
        """Draw Poisson event times over ``[0, duration_s]`` at ``rate_per_min``.

        Arrival gaps (exponential, mean ``60 / rate_per_min`` s) and sizes (uniform 0.5 to
        1.5) come from two child streams spawned from ``rng``, drawn in order, so event ``k``
        does not depend on ``duration_s``.
        """
        if rate_per_min <= 0:
            return cls(start_s=np.zeros(0), scale=np.zeros(0), duration_s=event_s)
        gap_rng, scale_rng = rng.spawn(2)
        mean_gap_s = 60.0 / rate_per_min
        starts, scales = [], []
        last = 0.0
        while last <= duration_s:  # event k is the k-th draw, whatever the duration
            starts.append(last + np.cumsum(gap_rng.exponential(mean_gap_s, size=_BLOCK)))
            scales.append(scale_rng.uniform(0.5, 1.5, size=_BLOCK))
            last = starts[-1][-1]
        keep = np.concatenate(starts) <= duration_s
        start, scale = np.concatenate(starts)[keep], np.concatenate(scales)[keep]
        return cls(start_s=start, scale=scale, duration_s=event_s)

    def __call__(self, t_s: ArrayLike) -> NDArray[np.float64]:
        """Relative extra excursion at ``t_s`` (0 outside events; up to ``scale``)."""
        t = np.asarray(t_s, dtype=np.float64)
        out = np.zeros(t.shape)
        for start, scale in zip(self.start_s, self.scale, strict=True):
            u = (t - start) / self.duration_s
            inside = (u >= 0) & (u <= 1)
            out[inside] += scale * np.sin(np.pi * u[inside]) ** 2
        return out
