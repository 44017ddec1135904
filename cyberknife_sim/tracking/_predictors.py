"""Latency predictors: from samples up to now, predict the signal ``horizon_s`` ahead.

All are online and causal: :meth:`Predictor.update` takes the newest sample and returns the
prediction of the sample ``horizon_steps`` later, using nothing newer. ``predict_series``
runs the same recursion over a whole signal for evaluation (row i is the prediction made
at sample i of sample i + horizon_steps).

* ``none``    the latest sample (no prediction; the reference for relative RMS).
* ``linear``  linear extrapolation of the last two samples.
* ``nlms``    normalized least-mean-squares adaptive filter on the last ``order`` sample
  increments (the clinical baseline, cf. Ernst et al. 2013).
* ``rls``     recursive least squares (forgetting factor) on the same regressor.
* ``kalman``  constant-acceleration Kalman filter, extrapolated over the horizon.
* ``wlms``, ``krr``, ``svr``  wavelet LMS, kernel ridge and SVRpred (:func:`make_predictor`).

Dropped samples (NaN) are replaced by the previous sample before they enter the filters.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._kernels import regression_step

__all__ = ["KalmanPredictor", "LinearPredictor", "NLMSPredictor", "NoPredictor", "Predictor",
           "RLSPredictor", "horizon_steps", "make_predictor", "relative_rms", "truth_ahead"]

PredictorName = Literal["none", "linear", "nlms", "rls", "kalman", "wlms", "krr", "svr"]
METHODS: tuple[str, ...] = ("none", "linear", "nlms", "rls", "kalman", "wlms", "krr", "svr")

# batched dot products: numpy >= 2.0 / 2.2 ufuncs (fast), einsum otherwise
_vecdot = getattr(np, "vecdot", None) or (lambda a, b: np.einsum("...i,...i->...", a, b))
_matvec = getattr(np, "matvec", None) or (lambda m, v: np.einsum("...ij,...j->...i", m, v))


def horizon_steps(horizon_s: float, dt_s: float, *, tolerance: float | None = None) -> int:
    """Whole samples until the time ``horizon_s`` ahead has been sampled: ``ceil(h / dt)``.

    Any horizon is accepted on any sample interval: a predictor predicts the exact horizon
    (nLMS/RLS learn the signal at ``t + horizon_s`` interpolated linearly between the two
    samples around it, once both have arrived; linear and Kalman extrapolate over
    ``horizon_s``; others scale their ``horizon_steps``-ahead change, see :class:`Predictor`)
    and is scored against the same interpolation (:func:`truth_ahead`). ``tolerance`` is
    accepted and ignored (it bounded the rounding when a horizon had to be whole samples).
    """
    del tolerance
    if not dt_s > 0 or not horizon_s >= 0 or not math.isfinite(horizon_s):
        raise ValueError(f"need dt_s > 0 and horizon_s >= 0 (got {dt_s}, {horizon_s})")
    return int(math.ceil(horizon_s / dt_s - 1e-9))


def truth_ahead(signal: ArrayLike, steps: float) -> NDArray[np.float64]:
    """The signal ``steps`` (possibly fractional) samples after each row, linearly interpolated.

    Parameters
    ----------
    signal : array-like, shape (n,) or (n, d)
        The signal.
    steps : float
        Horizon in samples (``horizon_s / dt_s``).

    Returns
    -------
    ndarray, shape (n - ceil(steps), d)
        Row i: the signal at sample ``i + steps`` (an exact sample when ``steps`` is whole).
    """
    x = np.asarray(signal, dtype=np.float64).reshape(len(signal), -1)
    k = int(math.ceil(steps - 1e-9))
    frac = steps - (k - 1)
    if k == 0 or frac >= 1.0 - 1e-9:
        return x[k:]
    lo = x[k - 1: len(x) - 1]
    return lo + frac * (x[k:] - lo)


def relative_rms(signal: ArrayLike, prediction: ArrayLike, steps: float, *,
                 skip: int = 0) -> float:
    """RMS of the prediction error / RMS of the error with no prediction (dimensionless).

    Parameters
    ----------
    signal : array-like, shape (n,) or (n, d)
        The signal.
    prediction : array-like, shape (n,) or (n, d)
        Row i: prediction made at i of the signal ``steps`` samples later (as from
        ``predict_series``).
    steps : float
        Horizon in samples (``horizon_samples``); a fractional horizon is scored against
        :func:`truth_ahead`.
    skip : int
        Leading samples (training) left out of both RMS values.
    """
    x = np.asarray(signal, dtype=np.float64).reshape(len(signal), -1)
    p = np.asarray(prediction, dtype=np.float64).reshape(len(prediction), -1)
    s = max(skip, 0)
    k = int(math.ceil(steps - 1e-9))
    truth = truth_ahead(x, steps)[s:]
    err = np.linalg.norm(truth - p[s: len(p) - k], axis=1)
    ref = np.linalg.norm(truth - x[s: len(x) - k], axis=1)
    return float(np.sqrt(np.mean(err**2)) / np.sqrt(np.mean(ref**2)))


class Predictor:
    """Base class; subclasses implement :meth:`_step` on a float64 (d,) sample.

    A subclass that predicts ``horizon_steps`` whole samples ahead (not the exact
    ``horizon_s``) leaves ``exact_horizon = False``: :meth:`update` then scales its predicted
    change linearly in time onto the exact horizon (``x + horizon_samples / horizon_steps *
    (prediction - x)``), so every method predicts the same instant.
    """

    name = ""
    exact_horizon = False

    def __init__(self, *, horizon_s: float, dt_s: float, dim: int = 1):
        if dim < 1:
            raise ValueError(f"dim must be >= 1 (got {dim})")
        self.horizon_s = float(horizon_s)
        self.dt_s = float(dt_s)
        self.dim = int(dim)
        self.horizon_steps = horizon_steps(horizon_s, dt_s)
        self.horizon_samples = self.horizon_s / self.dt_s
        """Horizon in samples, possibly fractional (``horizon_steps`` is its ceiling)."""
        self.reset()

    @property
    def guard_stats(self) -> dict[str, float | int | bool]:
        """What a guard did (this unguarded predictor: ``{"guarded": False}``)."""
        return {"guarded": False}

    @property
    def guard_activity(self) -> tuple[int, int, bool]:
        """(gated samples, steps accepted, in fallback): nothing for an unguarded one."""
        return 0, 0, False

    def reset(self) -> None:
        """Forget all history."""
        self._last = np.zeros(self.dim)
        self._started = False

    def update(self, sample: ArrayLike) -> NDArray[np.float64]:
        """Feed the newest sample (scalar or shape (dim,)); return the prediction (dim,) of
        the sample ``horizon_steps`` later (same units)."""
        x = np.array(sample, dtype=np.float64)
        if x.shape != (self.dim,):
            x = x.reshape(self.dim)
        if not np.isfinite(x).all():
            x = np.where(np.isfinite(x), x, self._last)
        self._started = True
        self._last = x
        out = self._step(x)
        if not self.exact_horizon and self.horizon_steps \
                and self.horizon_samples != self.horizon_steps:
            out = x + (self.horizon_samples / self.horizon_steps) * (out - x)
        return out

    def _step(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        raise NotImplementedError

    def predict_series(self, x: ArrayLike) -> NDArray[np.float64]:
        """Run from a fresh state over a signal (n,) or (n, dim); returns (n, dim)."""
        xs = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if xs.shape[1] != self.dim:
            raise ValueError(f"x: expected {self.dim} columns, got {xs.shape[1]}")
        self.reset()
        out = np.empty_like(xs)
        for i in range(xs.shape[0]):
            out[i] = self.update(xs[i])
        return out


class NoPredictor(Predictor):
    """The latest sample, unchanged."""

    name = "none"
    exact_horizon = True

    def _step(self, x):
        return x.copy()

    def predict_series(self, x):
        xs = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return _fill_nan(xs)


def _fill_nan(xs: NDArray[np.float64]) -> NDArray[np.float64]:
    """Replace NaN rows/entries by the previous finite value (0 before any)."""
    out = xs.copy()
    bad = ~np.isfinite(out)
    if bad.any():
        for i in range(out.shape[0]):
            row_bad = bad[i]
            if row_bad.any():
                out[i, row_bad] = out[i - 1, row_bad] if i > 0 else 0.0
    return out


class LinearPredictor(Predictor):
    """Linear extrapolation of the last two samples over the exact horizon (s)."""

    name = "linear"
    exact_horizon = True

    def reset(self):
        super().reset()
        self._prev: NDArray[np.float64] | None = None

    def _step(self, x):
        prev = x if self._prev is None else self._prev
        self._prev = x
        return x + (x - prev) * (self.horizon_s / self.dt_s)

    def predict_series(self, x):
        xs = _fill_nan(np.asarray(x, dtype=np.float64).reshape(len(x), -1))
        vel = np.zeros_like(xs)
        vel[1:] = xs[1:] - xs[:-1]
        return xs + vel * (self.horizon_s / self.dt_s)


class _RegressionPredictor(Predictor):
    """Shared regressor for nLMS and RLS (one independent filter per channel).

    The regressor of a channel at sample t is its last ``order`` increments,
    ``u_t = [x_t - x_{t-1}, ..., x_{t-order+1} - x_{t-order}]``, and the target is the
    increment over the horizon ``x_{t+h} - x_t``, so the filter is blind to the baseline.
    The weights learn from the regressor saved h samples ago and the increment that has now
    arrived (no future sample is used). ``compiled=False`` runs the numpy reference instead of
    the numba kernel (:mod:`._kernels`); the two agree to round-off.
    """

    exact_horizon = True

    def __init__(self, *, horizon_s, dt_s, dim=1, order: int = 8, compiled: bool = True):
        if order < 1:
            raise ValueError(f"order must be >= 1 (got {order})")
        self.order = int(order)
        self.compiled = bool(compiled)
        self._no_P = np.zeros((dim, 1, 1))
        super().__init__(horizon_s=horizon_s, dt_s=dt_s, dim=dim)

    @property
    def _frac(self) -> float:
        """Part of the last whole sample in the horizon, in (0, 1]."""
        return min(1.0, self.horizon_samples - (self.horizon_steps - 1)) \
            if self.horizon_steps else 1.0

    def reset(self):
        super().reset()
        h = max(self.horizon_steps, 1)
        self.weights = np.zeros((self.dim, self.order))
        self._u = np.zeros((self.dim, self.order))               # current regressor
        self._u_hist = np.zeros((h + 1, self.dim, self.order))   # ring of past regressors
        self._x_hist = np.zeros((h + 1, self.dim))
        self._n = 0

    def _learn(self, u_old, err):
        raise NotImplementedError

    def _step(self, x):
        if not self.compiled:
            return self._step_reference(x)
        out = np.empty(self.dim)
        regression_step(x, self._n, self.horizon_steps, self._frac, self._u, self._u_hist,
                        self._x_hist, self.weights, *self._kernel_params(), out)
        self._n += 1
        return out

    def _kernel_params(self) -> tuple:
        """(P, rls, mu, eps, lam, trace_max, delta) of :func:`._kernels.regression_step`."""
        raise NotImplementedError

    def _step_reference(self, x):
        """The numpy reference of one sample (the compiled kernel does the same)."""
        h = self.horizon_steps
        n = self._n
        ring = h + 1
        u = self._u
        if n > 0:
            u[:, 1:] = u[:, :-1]  # shift by one increment (newest first)
            u[:, 0] = x - self._x_hist[(n - 1) % ring]
        if n >= self.order + h:
            old = (n - h) % ring
            u_old = self._u_hist[old]
            frac = self._frac
            if frac >= 1.0:
                target = x - self._x_hist[old]
            else:
                prev = self._x_hist[(n - 1) % ring]
                target = prev + frac * (x - prev) - self._x_hist[old]
            err = target - _vecdot(u_old, self.weights)
            self._learn(u_old, err)
        slot = n % ring
        self._u_hist[slot] = u
        self._x_hist[slot] = x
        self._n = n + 1
        if h == 0:
            return x.copy()
        return x + _vecdot(u, self.weights)


class NLMSPredictor(_RegressionPredictor):
    """Normalized LMS: ``w += mu e u / (eps + |u|^2)`` per channel.

    Parameters
    ----------
    order : int
        Increments in the regressor (default 8).
    mu : float
        Step size in (0, 2) (default 0.05).
    eps : float
        Regularizer of the normalization (signal units squared).
    """

    name = "nlms"

    def __init__(self, *, horizon_s, dt_s, dim=1, order: int = 8, mu: float = 0.05,
                 eps: float = 1e-3, compiled: bool = True):
        if not 0 < mu < 2:
            raise ValueError(f"mu must be in (0, 2) (got {mu})")
        self.mu = float(mu)
        self.eps = float(eps)
        super().__init__(horizon_s=horizon_s, dt_s=dt_s, dim=dim, order=order,
                         compiled=compiled)

    def _kernel_params(self):
        return self._no_P, False, self.mu, self.eps, 1.0, 0.0, 0.0

    def _learn(self, u_old, err):
        norm = self.eps + _vecdot(u_old, u_old)
        self.weights += u_old * (self.mu * err / norm)[:, None]


class RLSPredictor(_RegressionPredictor):
    """Recursive least squares with forgetting factor ``lam``, per channel.

    Parameters
    ----------
    order : int
        Increments in the regressor (default 8).
    lam : float
        Forgetting factor in (0, 1]; memory about 1 / (1 - lam) samples (default 0.998).
    delta : float
        Initial inverse-correlation scale ``P = delta I``.
    """

    name = "rls"

    def __init__(self, *, horizon_s, dt_s, dim=1, order: int = 8, lam: float = 0.998,
                 delta: float = 10.0, compiled: bool = True):
        if not 0 < lam <= 1:
            raise ValueError(f"lam must be in (0, 1] (got {lam})")
        self.lam = float(lam)
        self.delta = float(delta)
        super().__init__(horizon_s=horizon_s, dt_s=dt_s, dim=dim, order=order,
                         compiled=compiled)

    def reset(self):
        super().reset()
        self.P = np.tile(np.eye(self.order) * self.delta, (self.dim, 1, 1))
        self._trace_max = self.delta * self.order
        self._diag = np.einsum("cii->ci", self.P)  # writable view of the diagonals

    def _kernel_params(self):
        return self.P, True, 0.0, 0.0, self.lam, self._trace_max, self.delta

    def _learn(self, u_old, err):
        pu = _matvec(self.P, u_old)
        gain = pu / (self.lam + _vecdot(u_old, pu))[:, None]
        self.weights += gain * err[:, None]
        self.P -= gain[:, :, None] * pu[:, None, :]
        # forget only while P is bounded: no wind-up along directions the signal does not
        # excite (a smooth signal's increments are nearly collinear)
        trace = self._diag.sum(axis=1)
        self.P *= np.where(trace < self._trace_max, 1.0 / self.lam, 1.0)[:, None, None]
        bad = ~((self._diag.min(axis=1) > 0.0) & np.isfinite(trace))
        if bad.any():
            # round-off broke positive definiteness (e.g. after a jump in the signal):
            # restart that channel's inverse correlation, keep the weights
            self.P[bad] = np.eye(self.order) * self.delta


class KalmanPredictor(Predictor):
    """Constant-acceleration Kalman filter per channel, extrapolated ``horizon_s`` ahead.

    Parameters
    ----------
    jerk_psd : float
        White-jerk process noise density (units^2 / s^5).
    noise : float
        Measurement noise, 1 sigma (signal units).
    """

    name = "kalman"
    exact_horizon = True

    def __init__(self, *, horizon_s, dt_s, dim=1, jerk_psd: float = 2000.0,
                 noise: float = 0.1):
        self.jerk_psd = float(jerk_psd)
        self.noise = float(noise)
        super().__init__(horizon_s=horizon_s, dt_s=dt_s, dim=dim)
        dt = self.dt_s
        self.F = np.array([[1.0, dt, 0.5 * dt * dt], [0.0, 1.0, dt], [0.0, 0.0, 1.0]])
        q = self.jerk_psd
        self.Q = q * np.array([[dt**5 / 20, dt**4 / 8, dt**3 / 6],
                               [dt**4 / 8, dt**3 / 3, dt**2 / 2],
                               [dt**3 / 6, dt**2 / 2, dt]])
        h = self.horizon_s
        self.ahead = np.array([1.0, h, 0.5 * h * h])

    def reset(self):
        super().reset()
        self.state = np.zeros((3, self.dim))  # rows: position, velocity, acceleration
        self.cov = np.diag([1e2, 1e3, 1e4])
        self._first = True

    def _step(self, x):
        if self._first:
            self.state[0] = x
            self._first = False
            return x.copy()
        s = self.F @ self.state
        c = self.F @ self.cov @ self.F.T + self.Q
        gain = c[:, 0] / (c[0, 0] + self.noise**2)
        s += np.outer(gain, x - s[0])
        self.cov = c - np.outer(gain, c[0])
        self.state = s
        return self.ahead @ s


def make_predictor(method: PredictorName, *, horizon_s: float, dt_s: float, dim: int = 1,
                   guard: bool = True, guard_options: dict | None = None,
                   **options) -> Predictor:
    """A predictor by name.

    Parameters
    ----------
    method : {"none", "linear", "nlms", "rls", "kalman", "wlms", "krr", "svr"}
        Prediction method (``wlms``: :mod:`._wlms`; ``krr``: :mod:`._svr`; ``svr``, SVRpred:
        :mod:`._svrpred`).
    horizon_s : float
        Latency to predict over (s).
    dt_s : float
        Sample interval of the signal fed to ``update`` (s).
    dim : int
        Channels per sample (1 for a chest signal, 3 for a target position).
    guard : bool
        Wrap the method in :class:`._guard.GuardedPredictor` (outlier gating, a bound on each
        prediction, fallback to no prediction while the method does worse; default True).
        Its counts are in the result's ``guard_stats``.
    guard_options : dict, optional
        Keyword options of :class:`._guard.GuardedPredictor` (``gate_sigmas``, ...).
    **options
        Method options (``order``, ``mu``, ``lam``, ``jerk_psd``, ...).
    """
    from ._svr import KernelRidgePredictor  # these modules import this one
    from ._svrpred import SVRPredictor
    from ._wlms import WLMSPredictor

    classes = {"none": NoPredictor, "linear": LinearPredictor, "nlms": NLMSPredictor,
               "rls": RLSPredictor, "kalman": KalmanPredictor, "wlms": WLMSPredictor,
               "krr": KernelRidgePredictor, "svr": SVRPredictor}
    if method not in classes:
        raise ValueError(f"prediction method must be one of {', '.join(METHODS)} "
                         f"(got {method!r})")
    inner = classes[method](horizon_s=horizon_s, dt_s=dt_s, dim=dim, **options)
    if not guard:
        return inner
    from ._guard import GuardedPredictor

    return GuardedPredictor(inner, **(guard_options or {}))
