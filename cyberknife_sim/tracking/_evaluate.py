"""Offline evaluation of correlation models on paired internal/external traces."""

from __future__ import annotations

import numpy as np

from ..motion import Trace
from ._correlation import MODELS, RANGE_MARGIN, make_correlation_model, outside_range

__all__ = ["backward_velocity", "evaluate_correlation"]


def evaluate_correlation(internal: Trace, external: Trace, *, n_fit: int = 12,
                         fit_span_s: float = 60.0, range_margin: float = RANGE_MARGIN,
                         velocity_span_s: float = 0.15) -> dict[str, dict[str, float]]:
    """3-D error (mean, RMS, p95, max in mm) of each model fitted on ``n_fit`` samples.

    Parameters
    ----------
    internal : Trace
        Target positions (x y z mm); its samples are the evaluation times.
    external : Trace
        1-D surface signal (mm), same time base (interpolated onto ``internal``'s times).
    n_fit : int, keyword-only
        Points used for the fit (X-ray-derived points).
    fit_span_s : float
        The fit points are spread over the first ``fit_span_s`` seconds.

    range_margin : float
        Each model clamps the external signal to its fitted range widened by this fraction
        (:func:`._correlation.valid_range`, the rule of the loop's ``outside_model_range``
        interlock); ``outside_fraction`` reports how many test samples were outside it, where
        the loop would hold the beam.
    velocity_span_s : float
        The external velocity is a backward difference over the whole samples closest to
        this span (s; at least one sample): 4 samples at 26 Hz (the loop's
        ``VELOCITY_FRAMES``), 1 at 5 Hz. A one-sample difference at 26 Hz is mostly marker
        noise, which flips ``dual``'s branch near the turning points.

    The fit points are spread evenly over the first ``fit_span_s`` (like X-rays taken during
    the first minute; the first one has a whole velocity span of samples before it); every
    later sample is a test point. ``none`` is the error of the mean fitted position (no
    correlation model). The external velocity is a backward difference (as in the loop: no
    sample from the future).
    """
    t = internal.time_s
    ext = np.interp(t, external.time_s, external.values[:, 0])
    lag = max(1, int(round(velocity_span_s / float(np.median(np.diff(t))))))
    vel = backward_velocity(ext, t, samples=lag)
    y = internal.xyz_mm()
    # the first fit point is the first sample with a full velocity span behind it
    fit = np.unique(np.searchsorted(t, np.linspace(t[min(lag, t.size - 1)], t[0] + fit_span_s,
                                                   n_fit)))
    test = np.arange(fit.max() + 1, t.size)
    out: dict[str, dict[str, float]] = {}
    preds = {"none": np.broadcast_to(y[fit].mean(0), y[test].shape)}
    outside = {"none": 0.0}
    for name in MODELS:
        m = make_correlation_model(name)
        m.range_margin = range_margin
        m.fit(ext[fit], y[fit], vel[fit])
        preds[name] = m.predict(ext[test], vel[test])
        outside[name] = float(np.mean([outside_range(x, m.ext_range, range_margin)
                                       for x in ext[test]]))
    for name, p in preds.items():
        e = np.linalg.norm(p - y[test], axis=1)
        out[name] = {"mean_mm": float(e.mean()), "rms_mm": float(np.sqrt(np.mean(e**2))),
                     "p95_mm": float(np.percentile(e, 95)), "max_mm": float(e.max()),
                     "outside_fraction": outside[name]}
    return out


def backward_velocity(x: np.ndarray, t: np.ndarray, *, samples: int = 1) -> np.ndarray:
    """``(x[i] - x[i-k]) / (t[i] - t[i-k])`` with ``k = min(samples, i)`` (causal: nothing
    after ``i``); the first sample gets 0 (nothing before it)."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1 (got {samples})")
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    i = np.arange(x.size)
    j = np.maximum(i - samples, 0)
    v = np.zeros_like(x)
    ok = i > 0
    v[ok] = (x[ok] - x[j[ok]]) / (t[ok] - t[j[ok]])
    return v
