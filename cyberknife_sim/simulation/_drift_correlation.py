"""Correlation model with a baseline-drift term, fitted to the registration's target positions.

Synchrony-style: at each X-ray pair the registration gives the target's position in the room
(``y``, mm) and the marker camera the external signal ``e`` (mm) and its velocity ``v``;
the model maps ``(e, v)`` to the target position. Over the minutes a rolling window spans, the
spine drifts (and the markers with it), so the points are fitted as

    y_k = g(e_k, v_k) + a · (t_k − t_ref)

with ``g`` one of :mod:`cyberknife_sim.tracking`'s models (linear / quadratic / dual /
linear_velocity) and ``a`` a drift velocity (mm/s, room) shared by all points, ``t_ref`` the
newest point's time.
``a`` is estimated exactly by partialling ``g``'s column space out of the time column
(Frisch–Waugh–Lovell: every model is a linear least-squares fit for fixed ``e, v``), with a
ridge prior ``a ~ N(0, drift_prior²)`` that keeps a burst of points close in time (the model
build) from inventing a drift. Prediction at time ``t`` extrapolates the drift:
``g(e, v) + a · (t − t_ref)``.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..tracking import CorrelationStatus, make_correlation_model

__all__ = ["DriftCorrelation"]


class DriftCorrelation:
    """Rolling correlation model ``y = g(e, v) + a (t − t_ref)`` (see the module docstring).

    Parameters
    ----------
    model : {"linear", "quadratic", "dual", "linear_velocity"}
        Model ``g`` of the external signal.
    n_points : int, keyword-only
        Window length (oldest points dropped).
    max_residual_mm : float
        Limit on the RMS fit residual and on a new point's prediction error (mm) above which
        ``status.model_ok`` is False.
    drift_prior_mm_per_min : float
        1-sigma prior of the drift speed per axis (mm/min); 0 removes the drift term.
    point_sigma_mm : float
        Assumed 1-sigma noise of a target position (mm), which weighs the prior.
    """

    def __init__(self, model: str, *, n_points: int = 12, max_residual_mm: float = 1.5,
                 drift_prior_mm_per_min: float = 0.3, point_sigma_mm: float = 0.2):
        if n_points < 1:
            raise ValueError(f"n_points must be >= 1 (got {n_points})")
        if not drift_prior_mm_per_min >= 0.0:
            raise ValueError(f"drift_prior_mm_per_min must be >= 0 (got {drift_prior_mm_per_min})")
        if not point_sigma_mm > 0.0:
            raise ValueError(f"point_sigma_mm must be > 0 (got {point_sigma_mm})")
        self.name = model
        self.model = make_correlation_model(model)
        self._scratch = make_correlation_model(model)
        self.n_points = int(n_points)
        self.max_residual_mm = float(max_residual_mm)
        prior_mm_s = drift_prior_mm_per_min / 60.0
        self._ridge_s2 = None if prior_mm_s == 0 else (point_sigma_mm / prior_mm_s) ** 2
        self._t: deque[float] = deque(maxlen=self.n_points)
        self._e: deque[float] = deque(maxlen=self.n_points)
        self._v: deque[float] = deque(maxlen=self.n_points)
        self._y: deque[NDArray[np.float64]] = deque(maxlen=self.n_points)
        self.drift_mm_s = np.zeros(3)
        self.t_ref_s = 0.0
        self.status: CorrelationStatus | None = None

    @property
    def fitted(self) -> bool:
        """True once at least one point has been added."""
        return self.status is not None

    @property
    def ext_range(self) -> tuple[float, float]:
        """Lowest and highest external value in the window (mm); (inf, -inf) when empty."""
        return (min(self._e, default=np.inf), max(self._e, default=-np.inf))

    def add(self, time_s: float, ext: float, target_room: ArrayLike,
            ext_velocity: float = 0.0) -> CorrelationStatus:
        """Add a point (time s, external mm, target (3,) mm room, external velocity mm/s).

        Returns
        -------
        CorrelationStatus
            The previous model's error at this point and the new fit's RMS residual (mm).
        """
        y = np.asarray(target_room, dtype=np.float64).reshape(-1)
        if y.shape != (3,):
            raise ValueError(f"target_room: expected shape (3,), got {np.shape(target_room)}")
        if not (np.isfinite(time_s) and np.isfinite(ext) and np.isfinite(ext_velocity)
                and np.all(np.isfinite(y))):
            raise ValueError("correlation point must be finite")
        pred_err = float("nan")
        if self.fitted:
            pred_err = float(np.linalg.norm(self.predict_one(ext, ext_velocity, time_s) - y))
        self._t.append(float(time_s))
        self._e.append(float(ext))
        self._v.append(float(ext_velocity))
        self._y.append(y)
        t = np.fromiter(self._t, float)
        e = np.fromiter(self._e, float)
        v = np.fromiter(self._v, float)
        yy = np.stack(self._y)
        self.t_ref_s = float(t[-1])
        tau = t - self.t_ref_s
        self.drift_mm_s = np.zeros(3)
        if self._ridge_s2 is not None and t.size > 1:
            r_y = yy - self._scratch.fit(e, yy, v).predict(e, v)
            r_t = tau - self._scratch.fit(e, tau[:, None], v).predict(e, v)[:, 0]
            self.drift_mm_s = (r_t @ r_y) / (r_t @ r_t + self._ridge_s2)
        y_fit = yy - tau[:, None] * self.drift_mm_s
        self.status = CorrelationStatus.after_fit(self.model, e, y_fit, v,
                                                  prediction_error_mm=pred_err,
                                                  max_residual_mm=self.max_residual_mm)
        return self.status

    def predict_one(self, ext: float, ext_velocity: float, time_s: float) -> NDArray[np.float64]:
        """Target position (3,) (mm, room) at external value ``ext`` (mm), velocity (mm/s)
        and time ``time_s`` (s)."""
        if not self.fitted:
            raise RuntimeError("no correlation point added yet")
        return (self.model.predict_one(ext, ext_velocity)
                + (time_s - self.t_ref_s) * self.drift_mm_s)
