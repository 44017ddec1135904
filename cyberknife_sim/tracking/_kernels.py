"""Compiled (numba) per-sample kernels of the regression predictors (nLMS and RLS).

One call does what :class:`._predictors._RegressionPredictor` does for a new sample: shift
the increment regressor, learn from the regressor saved ``h`` samples ago and the increment
that has now arrived (nothing newer), save the state in the rings and predict. The arithmetic
is the numpy reference's (``tests/test_tracking_predictors.py`` compares them), in loops over
the ``order`` (≤ a few dozen) weights: on a 1-channel signal the numpy version spends its
time in per-call overhead, ~40 µs per sample against ~2 µs here.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["regression_step"]


@njit(cache=True)
def _rls_learn(P, w, uo, err, lam, trace_max, delta):  # pragma: no cover - compiled
    order = uo.shape[0]
    pu = np.empty(order)
    for a in range(order):
        acc = 0.0
        for b in range(order):
            acc += P[a, b] * uo[b]
        pu[a] = acc
    denom = lam
    for a in range(order):
        denom += uo[a] * pu[a]
    trace = 0.0
    for a in range(order):
        g = pu[a] / denom
        w[a] += g * err
        for b in range(order):
            P[a, b] -= g * pu[b]
        trace += P[a, a]
    # forget only while P is bounded: no wind-up along directions the signal does not excite
    scale = 1.0 / lam if trace < trace_max else 1.0
    dmin = math.inf
    for a in range(order):
        for b in range(order):
            P[a, b] *= scale
        dmin = min(dmin, P[a, a])
    if not (dmin > 0.0 and math.isfinite(trace)):
        # round-off broke positive definiteness (e.g. after a jump in the signal): restart
        # the inverse correlation, keep the weights
        for a in range(order):
            for b in range(order):
                P[a, b] = delta if a == b else 0.0


@njit(cache=True)
def _nlms_learn(w, uo, err, mu, eps):  # pragma: no cover - compiled
    norm = eps
    for a in range(uo.shape[0]):
        norm += uo[a] * uo[a]
    step = mu * err / norm
    for a in range(uo.shape[0]):
        w[a] += uo[a] * step


@njit(cache=True)
def regression_step(x, n, h, frac, u, u_hist, x_hist, w, P, rls, mu, eps, lam, trace_max,
                    delta, out):  # pragma: no cover - compiled
    """One sample ``x`` (dim,) at sample number ``n``; updates the state arrays in place and
    writes the prediction into ``out`` (dim,).

    The horizon is ``h - 1 + frac`` samples (``h`` whole samples until the predicted time has
    been sampled, ``0 < frac <= 1``): the target learned from is the signal at that time,
    interpolated linearly between the samples ``h - 1`` and ``h`` after the regressor's (both
    have arrived when sample ``n`` does), minus the sample the regressor was saved at."""
    ring = h + 1
    dim, order = u.shape
    for c in range(dim):
        if n > 0:
            for j in range(order - 1, 0, -1):  # shift by one increment (newest first)
                u[c, j] = u[c, j - 1]
            u[c, 0] = x[c] - x_hist[(n - 1) % ring, c]
        if n >= order + h:
            old = (n - h) % ring
            uo = u_hist[old, c]
            pred = 0.0
            for j in range(order):
                pred += uo[j] * w[c, j]
            if frac >= 1.0:
                target = x[c] - x_hist[old, c]
            else:
                prev = x_hist[(n - 1) % ring, c]
                target = prev + frac * (x[c] - prev) - x_hist[old, c]
            err = target - pred
            if rls:
                _rls_learn(P[c], w[c], uo, err, lam, trace_max, delta)
            else:
                _nlms_learn(w[c], uo, err, mu, eps)
    slot = n % ring
    for c in range(dim):
        x_hist[slot, c] = x[c]
        for j in range(order):
            u_hist[slot, c, j] = u[c, j]
        if h == 0:
            out[c] = x[c]
        else:
            acc = 0.0
            for j in range(order):
                acc += u[c, j] * w[c, j]
            out[c] = x[c] + acc
