"""wLMS: wavelet-based multiscale LMS prediction (Ernst, Schlaefer & Schweikard 2007).

The method of F. Ernst, A. Schlaefer, A. Schweikard, "Prediction of respiratory motion with
wavelet-based multiscale autoregression", MICCAI 2007 (LNCS 4792, 668-675), the best of the
classic predictors in the comparison on 304 CyberKnife traces by Ernst et al., Phys. Med.
Biol. 58 (2013) 3911. It follows the multiscale autoregression of Renaud, Starck & Murtagh
(2005) with the least-squares fit replaced by an online LMS update.

Decomposition (causal, stationary "à trous" Haar transform, per channel)::

    c_0(t)     = x(t)
    c_{j+1}(t) = (c_j(t) + c_j(t - 2^j)) / 2          j = 0 .. J-1
    W_{j+1}(t) = c_j(t) - c_{j+1}(t)                   so x(t) = W_1 + ... + W_J + c_J

Only past samples enter; before the first sample the signal is taken to equal the first
sample (every c_j and W_j of "negative time" is the first sample's).

Regressor at t: the last ``taps`` coefficients of each scale, spaced by the scale's dilation,
``W_j(t - 2^j k)`` for k = 0 .. taps-1, j = 1 .. J, and of the residual its increments
``c_J(t - 2^J k) - c_J(t - 2^J (k + 1))``. The prediction is ``x(t) + w . B(t)``: like this
package's nLMS the filter predicts the increment over the horizon, so it is blind to the
baseline. (This is our one change to Ernst's form, which predicts the value itself from
``c_J`` directly: with a baseline of several mm the ``c_J`` entries dominate the
normalization and the LMS step would be driven by the offset. Ernst's form equals ours with
the weights of ``W_j(t)`` and ``c_J(t)`` shifted by one.)

Weights adapt by normalized LMS on the error observed ``h`` samples later, from the
regressor saved then (strictly causal)::

    e = (x(t) - x(t - h)) - w . B(t - h)
    w += mu e B(t - h) / (eps + |B(t - h)|^2)

Defaults (at 5 Hz: ``levels=5``, ``taps=2``, ``mu=0.5``, ``eps=1e-3``) were chosen by
``scripts/tune_predictors.py``: a grid search (levels 2-5, taps 1-3, mu 0.05-1) on synthetic
irregular Lujan breathing (noise, drift) and the real 5 Hz traces of ``../shared/data/traces``
at 200 ms, through ``make_predictor`` (default guards on), the real traces also scored
leave-one-out; not tuned per trace. The optimum is flat in ``levels`` (4 and 5 differ by
0.001 in mean relative RMS).

**Rate.** The scales and the step are counts of samples, so the defaults are stated in
seconds and converted at the predictor's own rate: ``levels = 5 + round(log2(0.2 s / dt))``
(the residual ``c_J`` keeps averaging about 6.4 s) and ``mu = 0.5 dt / 0.2 s`` (the same
adaptation per second: an nLMS step per sample adapts ``mu`` per update, and a faster clock
updates more often), capped at 1. At 5 Hz this is the tuned 5 / 0.5; at the loop's 26 Hz it
gives 7 / 0.096. Tuned again at 26 Hz by the same procedure (``scripts/tune_predictors.py
--rate-hz 26 --quick``), the 5 Hz counts (5 / 0.5) scored a mean relative RMS of 0.585 at
200 ms and the converted 7 / 0.1 scored 0.410 (grid best 8 / 0.1: 0.409); see
docs/tracking_prediction.md.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._predictors import Predictor

__all__ = ["WLMSPredictor", "default_levels", "default_mu", "wlms_step"]

TUNED_DT_S = 0.2
"""Sample interval (s) at which the defaults were tuned (5 Hz)."""


def default_levels(dt_s: float) -> int:
    """Default wavelet scales at sample interval ``dt_s`` (s): 5 at 5 Hz, one more per
    doubling of the rate (the coarsest scale keeps its length in seconds), within 1..10."""
    if not dt_s > 0:
        raise ValueError(f"dt_s must be > 0 (got {dt_s})")
    return int(min(10, max(1, 5 + round(np.log2(TUNED_DT_S / dt_s)))))


def default_mu(dt_s: float) -> float:
    """Default nLMS step at sample interval ``dt_s`` (s): 0.5 at 5 Hz, scaled by
    ``dt_s / 0.2 s`` (the same adaptation per second), at most 1."""
    if not dt_s > 0:
        raise ValueError(f"dt_s must be > 0 (got {dt_s})")
    return float(min(1.0, 0.5 * dt_s / TUNED_DT_S))


@njit(cache=True)
def _c_at(c_hist, ch, n, j, lag):  # pragma: no cover - compiled
    """c_j at sample n - lag (clamped to sample 0) from the ring ``c_hist`` (dim, R, J+1)."""
    back = lag if lag < n else n
    return c_hist[ch, (n - back) % c_hist.shape[1], j]


@njit(cache=True)
def wlms_step(x, n, h, levels, taps, c_hist, b_hist, x_hist, w, mu, eps,
              out):  # pragma: no cover - compiled
    """One sample ``x`` (dim,) at sample number ``n``; horizon ``h`` samples.

    State (updated in place): ``c_hist`` (dim, R, levels+1) ring of the smoothed signals,
    ``b_hist`` (h+1, dim, nb) and ``x_hist`` (h+1, dim) rings of past regressors and
    samples, ``w`` (dim, nb) weights. Writes the prediction into ``out`` (dim,).
    """
    dim = x.shape[0]
    ring = h + 1
    nb = w.shape[1]
    r = c_hist.shape[1]
    slot = n % ring
    for ch in range(dim):
        cs = n % r
        c_hist[ch, cs, 0] = x[ch]
        for j in range(levels):
            c_hist[ch, cs, j + 1] = 0.5 * (c_hist[ch, cs, j] + _c_at(c_hist, ch, n, j, 1 << j))
        b = b_hist[slot, ch]
        i = 0
        for j in range(1, levels + 1):
            for k in range(taps):
                lag = (1 << j) * k
                b[i] = _c_at(c_hist, ch, n, j - 1, lag) - _c_at(c_hist, ch, n, j, lag)
                i += 1
        for k in range(taps):
            lag = (1 << levels) * k
            b[i] = (_c_at(c_hist, ch, n, levels, lag)
                    - _c_at(c_hist, ch, n, levels, lag + (1 << levels)))
            i += 1
        if n >= h and h > 0:
            old = (n - h) % ring
            bo = b_hist[old, ch]
            pred = 0.0
            norm = eps
            for a in range(nb):
                pred += w[ch, a] * bo[a]
                norm += bo[a] * bo[a]
            step = mu * ((x[ch] - x_hist[old, ch]) - pred) / norm
            for a in range(nb):
                w[ch, a] += step * bo[a]
        x_hist[slot, ch] = x[ch]
        acc = 0.0
        if h > 0:
            for a in range(nb):
                acc += w[ch, a] * b[a]
        out[ch] = x[ch] + acc


class WLMSPredictor(Predictor):
    """Wavelet-based multiscale LMS (wLMS, Ernst et al. 2007), one filter per channel.

    Parameters
    ----------
    levels : int, optional
        Wavelet scales J (1..10). The residual ``c_J`` is a moving average over ``2^J``
        samples. Default (None): ``5 + round(log2(0.2 s / dt_s))``, i.e. 5 at 5 Hz, 7 at
        26 Hz (about 6.4 s for ``c_J``).
    taps : int
        Coefficients per scale and of the residual (>= 1; default 2).
    mu : float, optional
        Normalized LMS step size in (0, 2). Default (None): ``min(1, 0.5 dt_s / 0.2 s)``,
        i.e. 0.5 at 5 Hz, 0.096 at 26 Hz (the same adaptation per second).
    eps : float
        Regularizer of the normalization (signal units squared; default 1e-3).
    """

    name = "wlms"

    def __init__(self, *, horizon_s, dt_s, dim=1, levels: int | None = None, taps: int = 2,
                 mu: float | None = None, eps: float = 1e-3):
        if levels is None:
            levels = default_levels(dt_s)
        if mu is None:
            mu = default_mu(dt_s)
        if not 1 <= levels <= 10 or taps < 1:
            raise ValueError(f"need 1 <= levels <= 10 and taps >= 1 (got {levels}, {taps})")
        if not 0 < mu < 2 or not eps > 0:
            raise ValueError(f"need 0 < mu < 2 and eps > 0 (got {mu}, {eps})")
        self.levels = int(levels)
        self.taps = int(taps)
        self.mu = float(mu)
        self.eps = float(eps)
        super().__init__(horizon_s=horizon_s, dt_s=dt_s, dim=dim)

    @property
    def n_weights(self) -> int:
        """Regressor length: ``taps`` per scale and for the residual."""
        return (self.levels + 1) * self.taps

    def reset(self):
        super().reset()
        h = self.horizon_steps
        r = (1 << self.levels) * (self.taps + 1) + 1
        self.c_hist = np.zeros((self.dim, r, self.levels + 1))
        self.b_hist = np.zeros((h + 1, self.dim, self.n_weights))
        self.x_hist = np.zeros((h + 1, self.dim))
        self.weights = np.zeros((self.dim, self.n_weights))
        self._n = 0

    def regressor(self) -> np.ndarray:
        """The regressor B(t) (dim, n_weights) of the latest sample."""
        return self.b_hist[(self._n - 1) % (self.horizon_steps + 1)].copy()

    def _step(self, x):
        out = np.empty(self.dim)
        wlms_step(x, self._n, self.horizon_steps, self.levels, self.taps, self.c_hist,
                  self.b_hist, self.x_hist, self.weights, self.mu, self.eps, out)
        self._n += 1
        return out
