"""The rolling correlation model the loop uses: a window of X-ray points, refitted on each.

Synchrony-style: at each X-ray pair the registration gives the target's position in the room
(``y``, mm) and the marker camera the external signal ``e`` (mm) and its velocity ``v``
(mm/s, a backward difference); the model maps ``(e, v)`` to the target position. Over the
minutes a window spans, the spine drifts (and the markers with it), so with the drift term on
the points are fitted as

    y_k = g(e_k, v_k) + a · (t_k − t_ref)

with ``g`` one of :mod:`._correlation`'s models (linear / quadratic / dual / linear_velocity),
``a`` a drift velocity (mm/s, room) shared by all points and ``t_ref`` the newest point's time.
``a`` is estimated exactly by partialling ``g``'s column space out of the time column
(Frisch–Waugh–Lovell: every model is a linear least-squares fit for fixed ``e, v``), with a
ridge prior ``a ~ N(0, drift_prior²)`` that keeps a burst of points close in time (the model
build) from inventing a drift. Prediction at time ``t`` extrapolates the drift:
``g(e, v) + a · (t − t_ref)``. With ``drift_prior_mm_per_min = 0`` (the default) there is no
drift term and the fit is ``g`` alone.
"""

from __future__ import annotations

import copy
from collections import deque

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._correlation import (
    RANGE_MARGIN,
    CorrelationModel,
    CorrelationStatus,
    ModelName,
    make_correlation_model,
)

__all__ = ["RollingCorrelation"]


class RollingCorrelation:
    """Keeps the last ``n_points`` X-ray points and refits the model on each new one.

    Parameters
    ----------
    model : {"linear", "quadratic", "dual", "linear_velocity"} or CorrelationModel
        Model ``g`` of the external signal (or an instance to refit).
    n_points : int, keyword-only
        Window length (oldest points dropped).
    max_residual_mm : float
        Limit on the RMS fit residual and on a new point's prediction error (mm) above which
        ``status.model_ok`` is False.
    drift_prior_mm_per_min : float
        1-sigma prior of the drift speed per axis (mm/min); 0 (default) removes the drift
        term.
    point_sigma_mm : float
        Assumed 1-sigma noise of a target position (mm), which weighs the drift prior.
    range_margin : float
        The model clamps an external value to its fitted range widened by this fraction of
        the range on each side (:func:`._correlation.valid_range`).
    """

    def __init__(self, model: ModelName | CorrelationModel = "dual", *, n_points: int = 12,
                 max_residual_mm: float = 1.5, drift_prior_mm_per_min: float = 0.0,
                 point_sigma_mm: float = 0.2, range_margin: float = RANGE_MARGIN):
        if n_points < 1:
            raise ValueError(f"n_points must be >= 1 (got {n_points})")
        if not drift_prior_mm_per_min >= 0.0:
            raise ValueError(f"drift_prior_mm_per_min must be >= 0 (got {drift_prior_mm_per_min})")
        if not point_sigma_mm > 0.0:
            raise ValueError(f"point_sigma_mm must be > 0 (got {point_sigma_mm})")
        if not range_margin >= 0.0:
            raise ValueError(f"range_margin must be >= 0 (got {range_margin})")
        self.model = make_correlation_model(model) if isinstance(model, str) else model
        self.model.range_margin = float(range_margin)
        self.name = self.model.name
        self._scratch = copy.deepcopy(self.model)
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
    def has_drift_term(self) -> bool:
        """True when the model fits a baseline drift (``drift_prior_mm_per_min > 0``)."""
        return self._ridge_s2 is not None

    @property
    def fitted(self) -> bool:
        """True once at least one point has been added."""
        return self.status is not None

    @property
    def ext_range(self) -> tuple[float, float]:
        """Lowest and highest external value in the window (mm); (inf, -inf) when empty."""
        return self.model.ext_range

    def add(self, ext: float, internal: ArrayLike, ext_velocity: float = 0.0, *,
            time_s: float = 0.0) -> CorrelationStatus:
        """Add an X-ray point and refit.

        Parameters
        ----------
        ext : float
            External signal at the X-ray (mm).
        internal : array-like, shape (d,)
            Target position found by imaging (mm, room).
        ext_velocity : float
            External signal velocity (mm/s).
        time_s : float, keyword-only
            Exposure time (s); used by the drift term only.

        Returns
        -------
        CorrelationStatus
            The previous model's error at this point and the new fit's RMS residual (mm).
        """
        y = np.asarray(internal, dtype=np.float64).reshape(-1)
        if self._y and y.shape != self._y[0].shape:
            raise ValueError(f"internal: expected shape {self._y[0].shape}, got "
                             f"{np.shape(internal)}")
        if self.has_drift_term and y.shape != (3,):
            raise ValueError(f"internal: expected shape (3,), got {np.shape(internal)}")
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
        if self._ridge_s2 is not None and t.size > 1:
            tau = t - self.t_ref_s
            r_y = yy - self._scratch.fit(e, yy, v).predict(e, v)
            r_t = tau - self._scratch.fit(e, tau[:, None], v).predict(e, v)[:, 0]
            self.drift_mm_s = (r_t @ r_y) / (r_t @ r_t + self._ridge_s2)
            yy = yy - tau[:, None] * self.drift_mm_s
        else:
            self.drift_mm_s = np.zeros(yy.shape[1])
        self.status = CorrelationStatus.after_fit(self.model, e, yy, v,
                                                  prediction_error_mm=pred_err,
                                                  max_residual_mm=self.max_residual_mm)
        return self.status

    def predict(self, ext: ArrayLike, ext_velocity: ArrayLike, time_s: ArrayLike
                ) -> NDArray[np.float64]:
        """Vectorized :meth:`predict_one`: target positions (n, d) (mm, room) at external
        values (n,) (mm), velocities (n,) (mm/s) and times (n,) (s)."""
        if not self.fitted:
            raise RuntimeError("no correlation point added yet")
        out = self.model.predict(ext, ext_velocity)
        if self._ridge_s2 is None:
            return out
        tau = np.asarray(time_s, dtype=np.float64) - self.t_ref_s
        return out + tau[:, None] * self.drift_mm_s

    def predict_one(self, ext: float, ext_velocity: float = 0.0,
                    time_s: float | None = None) -> NDArray[np.float64]:
        """Target position (d,) (mm, room) at external value ``ext`` (mm), velocity (mm/s)
        and time ``time_s`` (s; the drift term extrapolates to it; None: the newest point's
        time)."""
        if not self.fitted:
            raise RuntimeError("no correlation point added yet")
        out = self.model.predict_one(ext, ext_velocity)
        if self._ridge_s2 is None or time_s is None:
            return out
        return out + (time_s - self.t_ref_s) * self.drift_mm_s
