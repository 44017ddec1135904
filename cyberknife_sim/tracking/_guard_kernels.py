"""Compiled (numba) per-sample kernels of the predictor guard (:mod:`._guard`).

The guard's state lives in three arrays so that one call does a whole half-step without
Python overhead (the numpy reference, :class:`._guard.ReferenceGuard`, did ~60 small-array
operations per sample, ~150 µs; these ~2 µs; ``tests/test_tracking_guard.py`` compares them):

* ``F`` (7, dim) float: offset, last accepted sample, pending jump, mean |increment|,
  decaying largest increment, range envelope high and low;
* ``ints`` (12,) int: the counters and flags named by the ``I_*`` constants;
* the rings ``preds`` (k+1, dim), ``sent`` (k+1, dim), ``err`` (fwin, 2) and ``sse`` (2,).

:func:`guard_pre` takes the new sample and leaves the sample to feed the method in
``F[LAST] - F[OFFSET]``; :func:`guard_post` takes the method's raw prediction (offset added
back) and writes the guard's output.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["guard_post", "guard_pre", "new_state"]

OFFSET, LAST, PENDING, ABS_INC, VMAX, HI, LO = range(7)
(I_COUNT, I_GATED, I_STEPS, I_CLAMPED, I_FALLBACK_N, I_NINC, I_N, I_GAP, I_SETTLE,
 I_IN_FALLBACK, I_PENDING, I_HAVE_LAST) = range(12)


def new_state(dim: int, k: int, fwin: int):
    """Fresh state arrays (F, ints, preds, sent, err, sse) for ``dim`` channels, horizon ``k``
    samples (ring k + 1) and a fallback window of ``fwin`` samples."""
    return (np.zeros((7, dim)), np.zeros(12, dtype=np.int64), np.zeros((k + 1, dim)),
            np.zeros((k + 1, dim)), np.zeros((fwin, 2)), np.zeros(2))


@njit(cache=True)
def _gate(x, F, ints, gate_sigmas, span, min_history):  # pragma: no cover - compiled
    """The sample to accept (written into ``x``); see :class:`._guard.ReferenceGuard`."""
    d = x.shape[0]
    if ints[I_NINC] < min_history:
        ints[I_PENDING] = 0
        return
    if ints[I_PENDING]:
        ints[I_PENDING] = 0
        ok = True
        to_new = 0.0
        to_old = 0.0
        for c in range(d):
            limit = gate_sigmas * span * (1.2533 * F[ABS_INC, c] + 1e-9)
            a = abs(x[c] - F[PENDING, c])
            if not a <= limit:
                ok = False
            to_new += a
            to_old += abs(x[c] - F[LAST, c])
        if ok and to_new < to_old:  # the jump persists: a step
            ints[I_STEPS] += 1
            for c in range(d):
                F[OFFSET, c] += F[PENDING, c] - F[LAST, c]
                F[LAST, c] = F[PENDING, c]
            return
    jump = False
    for c in range(d):
        limit = gate_sigmas * span * (1.2533 * F[ABS_INC, c] + 1e-9)
        if abs(x[c] - F[LAST, c]) > limit:
            jump = True
    if jump:
        for c in range(d):
            F[PENDING, c] = x[c]
            x[c] = F[LAST, c]
        ints[I_PENDING] = 1
        ints[I_GATED] += 1


@njit(cache=True)
def _accept(x, F, ints, record, decay_a, decay_v):  # pragma: no cover - compiled
    d = x.shape[0]
    learn = ints[I_PENDING] == 0 and record
    if learn:
        ints[I_NINC] += 1
        a = max(1.0 / ints[I_NINC], decay_a)
    for c in range(d):
        inc = abs(x[c] - F[LAST, c])
        F[LAST, c] = x[c]
        if learn:
            F[ABS_INC, c] += a * (inc - F[ABS_INC, c])
            F[VMAX, c] = max(inc, F[VMAX, c] * decay_v)
        span = (F[HI, c] - F[LO, c]) * decay_a
        F[HI, c] = max(x[c], F[HI, c] - span)
        F[LO, c] = min(x[c], F[LO, c] + span)


@njit(cache=True)
def guard_pre(sample, x_out, F, ints, gate_sigmas, decay_a, decay_v, min_history,
              settle_samples):  # pragma: no cover - compiled
    """Take the newest ``sample`` (NaN when dropped): the sample as it came (NaN filled) goes
    to ``x_out``; the state is updated (gating, accepted increments)."""
    d = sample.shape[0]
    ints[I_COUNT] += 1
    finite = True
    for c in range(d):
        if not math.isfinite(sample[c]):
            finite = False
    if ints[I_HAVE_LAST] == 0:
        for c in range(d):
            v = sample[c] if math.isfinite(sample[c]) else 0.0
            x_out[c] = v
            F[LAST, c] = v
            F[HI, c] = v
            F[LO, c] = v
        ints[I_HAVE_LAST] = 1
        return
    if not finite:  # dropped: hold, learn nothing from it
        for c in range(d):
            x_out[c] = sample[c] if math.isfinite(sample[c]) else F[LAST, c]
        ints[I_GAP] += 1
        ints[I_SETTLE] = settle_samples
        return
    g = np.empty(d)
    for c in range(d):
        x_out[c] = sample[c]
        g[c] = sample[c]
    _gate(g, F, ints, gate_sigmas, ints[I_GAP] + 1, min_history)
    _accept(g, F, ints, ints[I_GAP] == 0, decay_a, decay_v)
    ints[I_GAP] = 0


@njit(cache=True)
def _bound(raw, F, ints, bound_factor, horizon_samples, margin_fraction,
           min_history):  # pragma: no cover - compiled
    d = raw.shape[0]
    bad = False
    for c in range(d):
        if not math.isfinite(raw[c]):
            raw[c] = F[LAST, c]
            bad = True
    if bad:
        ints[I_CLAMPED] += 1
    if ints[I_NINC] < min_history:
        return
    clamped = False
    for c in range(d):
        reach = bound_factor * F[VMAX, c] * horizon_samples + margin_fraction * (
            F[HI, c] - F[LO, c])
        lo, hi = F[LAST, c] - reach, F[LAST, c] + reach
        if raw[c] < lo:
            raw[c] = lo
            clamped = True
        elif raw[c] > hi:
            raw[c] = hi
            clamped = True
    if clamped:
        ints[I_CLAMPED] += 1


@njit(cache=True)
def _score(pred, F, ints, preds, sent, err, sse, k, horizon_samples, recover_ratio,
           min_history):  # pragma: no cover - compiled
    d = pred.shape[0]
    n = ints[I_N]
    ring = k + 1
    fwin = err.shape[0]
    for c in range(d):
        preds[n % ring, c] = pred[c]
        sent[n % ring, c] = F[LAST, c]
    ints[I_N] = n + 1
    if k == 0 or n < k:
        return
    frac = min(1.0, horizon_samples - (k - 1))
    old = (n - k) % ring
    prev = (n - 1) % ring
    e0 = 0.0
    e1 = 0.0
    for c in range(d):
        truth = sent[prev, c] + frac * (F[LAST, c] - sent[prev, c])
        e0 += (preds[old, c] - truth) ** 2
        e1 += (sent[old, c] - truth) ** 2
    slot = n % fwin
    sse[0] -= err[slot, 0]
    sse[1] -= err[slot, 1]
    sse[0] += e0
    sse[1] += e1
    err[slot, 0] = e0
    err[slot, 1] = e1
    if slot == 0:  # re-sum now and then: no drift of the running sums
        sse[0] = 0.0
        sse[1] = 0.0
        for j in range(fwin):
            sse[0] += err[j, 0]
            sse[1] += err[j, 1]
    if n < k + min_history:
        return
    tiny = 1e-12 * (1.0 + sse[1])
    if ints[I_IN_FALLBACK]:
        ints[I_IN_FALLBACK] = 1 if sse[0] >= recover_ratio * sse[1] + tiny else 0
    else:
        ints[I_IN_FALLBACK] = 1 if (sse[0] > sse[1] + tiny and math.isfinite(sse[1])) else 0


@njit(cache=True)
def guard_post(raw, x_in, out, F, ints, preds, sent, err, sse, k, horizon_samples,
               bound_factor, margin_fraction, recover_ratio,
               min_history):  # pragma: no cover - compiled
    """Bound the method's prediction ``raw`` (offset added back), score it, and write the
    guard's output into ``out``: the sample as it came (``x_in``) while a jump is unconfirmed
    or just after a dropout, the last accepted sample in fallback, else the bounded
    prediction."""
    d = raw.shape[0]
    _bound(raw, F, ints, bound_factor, horizon_samples, margin_fraction, min_history)
    _score(raw, F, ints, preds, sent, err, sse, k, horizon_samples, recover_ratio, min_history)
    if ints[I_PENDING] or ints[I_SETTLE] > 0:
        ints[I_SETTLE] = max(ints[I_SETTLE] - 1, 0)
        for c in range(d):
            out[c] = x_in[c]
        return
    if ints[I_IN_FALLBACK]:
        ints[I_FALLBACK_N] += 1
        for c in range(d):
            out[c] = F[LAST, c]
        return
    for c in range(d):
        out[c] = raw[c]
