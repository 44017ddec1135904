"""Guards around a latency predictor: outlier gating, a bound on each prediction, fallback.

:func:`._predictors.make_predictor` wraps every method in :class:`GuardedPredictor` unless
``guard=False``. Per channel and per sample, all causally (nothing newer than the sample just
fed is used; velocities are backward differences):

1. **Outlier gating.** A sample whose increment from the last accepted sample exceeds
   ``gate_sigmas`` robust sigmas of the recent accepted increments (sigma = 1.2533 x the
   running mean |increment| over about ``window_s``; gated jumps never enter it) is held: the
   inner predictor is fed the previous accepted sample, and the guard outputs the sample as
   it came (no prediction), so an unconfirmed jump never costs more than no prediction. When
   the next sample lies within the same bound of the held-back one, and nearer to it than to
   the old level, the jump is *confirmed* as a real step: it is accepted, and the inner
   predictor is fed the signal with the step removed (a running offset added back to its
   predictions), so a step does not wind up its filters. Otherwise the held-back sample was a
   one-sample spike and is dropped.
2. **Bound.** ``|prediction - last accepted sample| <= bound_factor x vmax x horizon +
   margin_fraction x recent range``, with vmax the largest backward-difference velocity
   (decaying: it halves over ``window_s``) and the range a decaying envelope; a prediction
   outside is clamped onto the bound (a non-finite one replaced by the last sample).
3. **Fallback.** The squared error of the (bounded) prediction made ``horizon_steps`` samples
   ago against the sample that has now arrived (interpolated to the exact horizon), and that
   of no prediction, are summed over the last ``fallback_window_s``: while the predictor's sum
   exceeds no prediction's, the latest sample is output instead (no prediction); the method
   is used again once its sum falls below ``recover_ratio`` times no prediction's.

Dropped samples (NaN) are held; they and the first increment after them teach nothing, and
the first ``_SETTLE_SAMPLES`` samples after a dropout are output as they are.

``guard_stats`` counts what the guard did (see :attr:`GuardedPredictor.guard_stats`).

:class:`GuardedPredictor` runs each sample through two compiled kernels
(:mod:`._guard_kernels`, ~2 µs); :class:`ReferenceGuard` is the same logic in numpy (~150 µs
per sample), kept as the reference the tests compare against.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _guard_kernels as gk

__all__ = ["GuardedPredictor", "ReferenceGuard"]

_MIN_HISTORY = 8
"""Accepted increments needed before samples are gated or predictions bounded."""
_SETTLE_SAMPLES = 2
"""Samples after a dropout output as they are (no prediction): a method's velocity estimate
spans the gap until then."""


class ReferenceGuard:
    """A predictor wrapped in outlier gating, a prediction bound and a fallback (numpy
    reference of :class:`GuardedPredictor`).

    Parameters
    ----------
    inner : Predictor
        The method (its ``horizon_s``, ``dt_s``, ``dim`` are used).
    gate_sigmas : float
        Jump (in robust sigmas of recent increments) above which a sample is held.
    window_s : float
        History (s) for the robust sigma, the largest velocity and the range.
    bound_factor : float
        Multiplies largest velocity x horizon in the prediction bound. 1.0: on the real and
        synthetic traces of ``scripts/predictor_table.py`` it kept every method's worst error
        within 1.12x no prediction's (1.5 let Kalman reach 1.54x) and lowered the mean
        relative RMS (0.352 vs 0.356).
    margin_fraction : float
        Part of the recent range added to the bound.
    fallback_window_s : float
        Sliding window (s) over which predictor and no-prediction errors are compared.
    recover_ratio : float
        The predictor is used again once its windowed error is below this fraction of no
        prediction's (hysteresis).
    """

    def __init__(self, inner, *, gate_sigmas: float = 6.0, window_s: float = 10.0,
                 bound_factor: float = 1.0, margin_fraction: float = 0.05,
                 fallback_window_s: float = 8.0, recover_ratio: float = 0.95):
        self.inner = inner
        self.gate_sigmas = float(gate_sigmas)
        self.bound_factor = float(bound_factor)
        self.margin_fraction = float(margin_fraction)
        self.recover_ratio = float(recover_ratio)
        win = max(_MIN_HISTORY + 2, int(round(window_s / inner.dt_s)))
        self._decay_a = 1.0 / win                # running mean over about window_s
        self._decay_v = 0.5 ** (1.0 / win)      # the largest velocity halves over window_s
        self._fwin = max(4, int(round(fallback_window_s / inner.dt_s)))
        self.reset()

    # the Predictor API ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def horizon_s(self) -> float:
        return self.inner.horizon_s

    @property
    def dt_s(self) -> float:
        return self.inner.dt_s

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def horizon_steps(self) -> int:
        return self.inner.horizon_steps

    @property
    def horizon_samples(self) -> float:
        return self.inner.horizon_samples

    def __getattr__(self, attr: str) -> Any:  # method options and state (weights, order...)
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    @property
    def guard_stats(self) -> dict[str, float | int | bool]:
        """What the guard did since the last reset: ``samples`` fed, ``gated_samples`` (held
        as the previous one), ``steps_accepted`` (confirmed jumps), ``clamped_predictions``,
        ``fallback_samples`` and ``fallback_s`` (time no prediction was output instead),
        ``in_fallback`` (now)."""
        return {"guarded": True, "samples": self._count,
                "gated_samples": self._gated, "steps_accepted": self._steps,
                "clamped_predictions": self._clamped,
                "fallback_samples": self._fallback_n,
                "fallback_s": self._fallback_n * self.dt_s,
                "in_fallback": self._in_fallback}

    def reset(self) -> None:
        """Forget all history (the inner predictor's too)."""
        self.inner.reset()
        d, k = self.inner.dim, max(self.inner.horizon_steps, 1)
        self._offset = np.zeros(d)
        self._last = None            # last accepted sample (signal coordinates)
        self._pending = None         # a held-back jump awaiting confirmation
        self._abs_inc = np.zeros(d)  # running mean |accepted increment| (robust sigma)
        self._vmax = np.zeros(d)     # decaying largest |accepted increment|
        self._hi = np.zeros(d)       # decaying envelope of accepted samples (range)
        self._lo = np.zeros(d)
        self._n_inc = 0
        self._preds = np.zeros((k + 1, d))    # ring of bounded predictions
        self._sent = np.zeros((k + 1, d))     # ring of accepted samples at those times
        self._err = np.zeros((self._fwin, 2))  # ring of squared errors (predictor, none)
        self._sse = np.zeros(2)
        self._n = 0
        self._gap = 0      # consecutive dropped samples just before this one
        self._settle = 0   # samples still output as they are after a dropout
        self._in_fallback = False
        self._count = self._gated = self._steps = self._clamped = self._fallback_n = 0

    def update(self, sample: ArrayLike) -> NDArray[np.float64]:
        """Feed the newest sample (NaN when dropped); return the guarded prediction (dim,)."""
        x = np.array(sample, dtype=np.float64).reshape(self.inner.dim)
        self._count += 1
        finite = np.isfinite(x)
        if self._last is None:
            x = np.where(finite, x, 0.0)
            self._last = x
            self._hi, self._lo = x.copy(), x.copy()
        elif not finite.all():  # dropped: hold, learn nothing from it
            x = np.where(finite, x, self._last)
            self._gap += 1
            self._settle = _SETTLE_SAMPLES
        else:
            self._accept(self._gate(x, span=self._gap + 1), record=self._gap == 0)
            self._gap = 0
        raw = self.inner.update(self._last - self._offset) + self._offset
        pred = self._bound(raw)
        self._score(pred)
        if self._pending is not None or self._settle > 0:
            # an unconfirmed jump, or just after a dropout (the method's velocity spans the
            # gap): no prediction, the sample as is
            self._settle = max(self._settle - 1, 0)
            return x.copy()
        if self._in_fallback:
            self._fallback_n += 1
            return self._last.copy()
        return pred

    def predict_series(self, x: ArrayLike) -> NDArray[np.float64]:
        """Run from a fresh state over a signal (n,) or (n, dim); returns (n, dim)."""
        xs = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if xs.shape[1] != self.inner.dim:
            raise ValueError(f"x: expected {self.inner.dim} columns, got {xs.shape[1]}")
        self.reset()
        out = np.empty_like(xs)
        for i in range(xs.shape[0]):
            out[i] = self.update(xs[i])
        return out

    # the guards ----------------------------------------------------------------------------
    def _gate(self, x: NDArray[np.float64], *, span: int = 1) -> NDArray[np.float64]:
        """The sample to accept: ``x``, or the last accepted one while a jump is unconfirmed
        (``span``: sample intervals since the last accepted one, > 1 after a dropout)."""
        if self._n_inc < _MIN_HISTORY:
            self._pending = None
            return x
        # robust sigma: 1.2533 x mean |increment| (gated jumps never enter it)
        limit = self.gate_sigmas * span * (1.2533 * self._abs_inc + 1e-9)
        last = self._last
        if self._pending is not None:
            pending, self._pending = self._pending, None
            to_new = np.abs(x - pending)
            if np.all(to_new <= limit) and to_new.sum() < np.abs(x - last).sum():
                # the jump persists (the sample after it is nearer the new level): a step
                self._steps += 1
                self._offset += pending - last
                self._last = pending
                return x
        if np.any(np.abs(x - last) > limit):
            self._pending = x
            self._gated += 1
            return last
        return x

    def _accept(self, x: NDArray[np.float64], *, record: bool = True) -> None:
        d = np.abs(x - self._last)
        self._last = x
        if self._pending is None and record:  # a held sample is no increment of the signal
            self._n_inc += 1
            a = max(1.0 / self._n_inc, self._decay_a)
            self._abs_inc += a * (d - self._abs_inc)
            self._vmax = np.maximum(d, self._vmax * self._decay_v)
        span = (self._hi - self._lo) * self._decay_a
        self._hi = np.maximum(x, self._hi - span)
        self._lo = np.minimum(x, self._lo + span)

    def _bound(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        if not np.isfinite(raw).all():
            self._clamped += 1
            raw = np.where(np.isfinite(raw), raw, self._last)
        if self._n_inc < _MIN_HISTORY:
            return raw
        reach = (self.bound_factor * self._vmax * self.horizon_samples
                 + self.margin_fraction * (self._hi - self._lo))
        out = np.clip(raw, self._last - reach, self._last + reach)
        if np.any(out != raw):
            self._clamped += 1
        return out

    def _score(self, pred: NDArray[np.float64]) -> None:
        """Compare the prediction made ``horizon_steps`` ago with what has now arrived."""
        k = self.inner.horizon_steps
        n = self._n
        ring = k + 1
        self._preds[n % ring] = pred
        self._sent[n % ring] = self._last
        self._n = n + 1
        if k == 0 or n < k:
            return
        frac = min(1.0, self.inner.horizon_samples - (k - 1))
        prev = self._sent[(n - 1) % ring]
        truth = prev + frac * (self._last - prev)
        old = (n - k) % ring
        e = self._err[n % self._fwin]
        self._sse -= e
        e[0] = float(np.sum((self._preds[old] - truth) ** 2))
        e[1] = float(np.sum((self._sent[old] - truth) ** 2))
        self._sse += e
        if n % self._fwin == 0:  # re-sum now and then: no drift of the running sums
            self._sse = self._err.sum(axis=0)
        if n < k + _MIN_HISTORY:
            return
        sse_pred, sse_none = self._sse
        tiny = 1e-12 * (1.0 + sse_none)
        if self._in_fallback:
            self._in_fallback = bool(sse_pred >= self.recover_ratio * sse_none + tiny)
        else:
            self._in_fallback = bool(sse_pred > sse_none + tiny) and math.isfinite(sse_none)


class GuardedPredictor(ReferenceGuard):
    """A predictor wrapped in outlier gating, a prediction bound and a fallback (see the
    module docstring; parameters as :class:`ReferenceGuard`), compiled."""

    @property
    def guard_stats(self) -> dict[str, float | int | bool]:
        """What the guard did since the last reset (see :attr:`ReferenceGuard.guard_stats`)."""
        i = self._I
        return {"guarded": True, "samples": int(i[gk.I_COUNT]),
                "gated_samples": int(i[gk.I_GATED]), "steps_accepted": int(i[gk.I_STEPS]),
                "clamped_predictions": int(i[gk.I_CLAMPED]),
                "fallback_samples": int(i[gk.I_FALLBACK_N]),
                "fallback_s": int(i[gk.I_FALLBACK_N]) * self.dt_s,
                "in_fallback": bool(i[gk.I_IN_FALLBACK])}

    @property
    def guard_activity(self) -> tuple[int, int, bool]:
        """(gated samples, steps accepted, in fallback now): a cheap look for the loop."""
        i = self._I
        return int(i[gk.I_GATED]), int(i[gk.I_STEPS]), bool(i[gk.I_IN_FALLBACK])

    def reset(self) -> None:
        """Forget all history (the inner predictor's too)."""
        self.inner.reset()
        d, k = self.inner.dim, max(self.inner.horizon_steps, 1)
        (self._F, self._I, self._preds, self._sent, self._err,
         self._sse) = gk.new_state(d, k, self._fwin)
        self._x_in = np.zeros(d)
        self._fed = np.zeros(d)

    def update(self, sample: ArrayLike) -> NDArray[np.float64]:
        """Feed the newest sample (NaN when dropped); return the guarded prediction (dim,)."""
        inner = self.inner
        x = np.array(sample, dtype=np.float64).reshape(inner.dim)
        F = self._F
        gk.guard_pre(x, self._x_in, F, self._I, self.gate_sigmas, self._decay_a,
                     self._decay_v, _MIN_HISTORY, _SETTLE_SAMPLES)
        raw = inner.update(F[gk.LAST] - F[gk.OFFSET]) + F[gk.OFFSET]
        out = np.empty(inner.dim)
        gk.guard_post(raw, self._x_in, out, F, self._I, self._preds, self._sent, self._err,
                      self._sse, inner.horizon_steps,
                      inner.horizon_samples, self.bound_factor, self.margin_fraction,
                      self.recover_ratio, _MIN_HISTORY)
        return out
