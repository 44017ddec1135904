"""Correlation models: external marker signal -> internal target position.

Models are polynomials in the external signal fitted by least squares to X-ray-derived
points (external value at the X-ray time, target position from the images):

* ``linear``:    ``p = a + b e``
* ``quadratic``: ``p = a + b e + c e^2``
* ``dual``:      inhale and exhale branches of a hysteresis loop (Synchrony-style): one
  polynomial (``degree``, default 1) shifted by ``±δ``, the branch chosen by the sign of the
  external velocity and blended across the turning points (:class:`DualCorrelation`).
* ``linear_velocity``: ``p = a + b e + c ė`` (ė: external velocity, mm/s). A target that
  follows the chest with a phase shift φ, ``p = A sin(ωt + φ)`` against ``e = E sin(ωt)``,
  is exactly ``(A/E) cos φ · e + (A/(E ω)) sin φ · ė``: the hysteresis loop without a branch
  switch.

With fewer points than a model needs, the fit falls back to a lower degree (one point: a
constant; ``dual`` with too few points or all on one branch: the pooled fit;
``linear_velocity`` with fewer than 4 points or no velocity spread independent of the signal:
the linear fit; both keep the reason in ``fallback_reason``), so a model is always usable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["RANGE_MARGIN", "CorrelationModel", "CorrelationStatus", "DualCorrelation",
           "PolynomialCorrelation", "VelocityCorrelation", "make_correlation_model",
           "outside_range", "valid_range"]

ModelName = Literal["linear", "quadratic", "dual", "linear_velocity"]
MODELS: tuple[str, ...] = ("linear", "quadratic", "dual", "linear_velocity")


def _as_ext(ext: ArrayLike, name: str = "ext") -> NDArray[np.float64]:
    e = np.asarray(ext, dtype=np.float64)
    if e.ndim == 0:
        e = e.reshape(1)
    if e.ndim != 1:
        raise ValueError(f"{name}: expected a scalar or shape (n,), got {e.shape}")
    return e


def _design(e: NDArray[np.float64], degree: int) -> NDArray[np.float64]:
    return np.vander(e, degree + 1, increasing=True)


def _fit_poly(e: NDArray[np.float64], y: NDArray[np.float64], degree: int) -> NDArray[np.float64]:
    """Least-squares coefficients (degree + 1, d), lowering the degree when points are few."""
    deg = max(0, min(degree, np.unique(e).size - 1))
    coef = np.zeros((degree + 1, y.shape[1]))
    coef[: deg + 1] = np.linalg.lstsq(_design(e, deg), y, rcond=None)[0]
    return coef


def _eval_poly(coef: NDArray[np.float64], e: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.broadcast_to(coef[-1], (e.size, coef.shape[1])).copy()
    for c in coef[-2::-1]:  # Horner
        out *= e[:, None]
        out += c
    return out


RANGE_MARGIN = 0.6
"""Default margin of a model's valid range, as a fraction of its fitted external range (the
loop's ``tracking.interlocks.model_range_margin`` default)."""


def valid_range(ext_range: tuple[float, float], margin_fraction: float) -> tuple[float, float]:
    """The external values a model fitted on ``ext_range = (lo, hi)`` (mm) may be used at:
    the range widened by ``margin_fraction`` of its width on each side (the width counts as at
    least 1 µm). The loop's ``outside_model_range`` interlock, the models' clamping and
    :func:`evaluate_correlation` all use this one rule."""
    lo, hi = ext_range
    m = margin_fraction * max(hi - lo, 1e-6)
    return lo - m, hi + m


def outside_range(ext: float, ext_range: tuple[float, float], margin_fraction: float) -> bool:
    """True when ``ext`` (mm) lies outside :func:`valid_range` (NaN is not outside; an
    unfitted range ``(inf, -inf)`` has nothing outside)."""
    lo, hi = ext_range
    if not (ext == ext and lo <= hi):
        return False
    a, b = valid_range(ext_range, margin_fraction)
    return not a <= ext <= b


class CorrelationModel:
    """Common interface: ``fit(ext, internal, ext_velocity)`` then ``predict(ext, ...)``.

    Bounded: a fitted model knows its external range (``ext_range``, mm) and clamps the
    external value it is asked about to :func:`valid_range` (``range_margin`` of the range
    beyond each end), so it never extrapolates without bound (a quadratic fitted on 0-10 mm
    asked at 60 mm). The loop holds the beam before that (``outside_model_range``);
    :func:`evaluate_correlation` reports how often it happens.
    """

    name: str = ""
    needs_velocity: bool = False
    range_margin: float = RANGE_MARGIN
    ext_range: tuple[float, float] = (np.inf, -np.inf)
    _lo, _hi = -np.inf, np.inf

    def _set_range(self, e: NDArray[np.float64]) -> None:
        self.ext_range = (float(e.min()), float(e.max()))
        self._lo, self._hi = valid_range(self.ext_range, self.range_margin)

    def _bounded(self, ext: ArrayLike) -> NDArray[np.float64]:
        return np.clip(_as_ext(ext), self._lo, self._hi)

    def _bounded_one(self, ext: float) -> float:
        return self._lo if ext < self._lo else self._hi if ext > self._hi else ext

    def fit(self, ext: ArrayLike, internal: ArrayLike,
            ext_velocity: ArrayLike | None = None) -> CorrelationModel:
        """Fit to points; returns self.

        Parameters
        ----------
        ext : array-like, shape (n,)
            External signal at each X-ray (mm).
        internal : array-like, shape (n, d)
            Target position found by imaging (mm, room; d = 3 normally).
        ext_velocity : array-like, shape (n,), optional
            External signal velocity (mm/s); required by ``dual`` and ``linear_velocity``.
        """
        raise NotImplementedError

    def predict(self, ext: ArrayLike, ext_velocity: ArrayLike | None = None
                ) -> NDArray[np.float64]:
        """Internal position (n, d) (mm) for external values (n,) (mm)."""
        raise NotImplementedError

    def predict_one(self, ext: float, ext_velocity: float = 0.0) -> NDArray[np.float64]:
        """Fast single-sample :meth:`predict`; returns shape (d,) (mm)."""
        raise NotImplementedError

    @staticmethod
    def _check(ext: ArrayLike, internal: ArrayLike, ext_velocity: ArrayLike | None,
               need_velocity: bool, model: str = "dual (inhale/exhale)"):
        e = _as_ext(ext)
        y = np.asarray(internal, dtype=np.float64)
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape[0] != e.size:
            raise ValueError(f"internal: expected shape ({e.size}, d), got {np.shape(internal)}")
        if e.size == 0:
            raise ValueError("ext: at least one point is needed to fit")
        if not (np.all(np.isfinite(e)) and np.all(np.isfinite(y))):
            raise ValueError("ext/internal: points must be finite")
        v = None
        if ext_velocity is not None:
            v = _as_ext(ext_velocity, "ext_velocity")
            if v.size != e.size:
                raise ValueError(f"ext_velocity: expected shape ({e.size},), got {v.shape}")
        elif need_velocity:
            raise ValueError(f"ext_velocity is required by the {model} model")
        return e, y, v


class PolynomialCorrelation(CorrelationModel):
    """``p = sum_k c_k e^k`` for k = 0..degree (linear: 1, quadratic: 2)."""

    def __init__(self, degree: int):
        if degree not in (1, 2):
            raise ValueError(f"degree must be 1 or 2 (got {degree})")
        self.degree = degree
        self.name = "linear" if degree == 1 else "quadratic"
        self.coef: NDArray[np.float64] | None = None

    def fit(self, ext, internal, ext_velocity=None):
        e, y, _ = self._check(ext, internal, ext_velocity, False)
        self._set_range(e)
        self.coef = _fit_poly(e, y, self.degree)
        self._rows = tuple(self.coef)
        return self

    def predict(self, ext, ext_velocity=None):
        if self.coef is None:
            raise RuntimeError("correlation model used before fit()")
        return _eval_poly(self.coef, self._bounded(ext))

    def predict_one(self, ext, ext_velocity=0.0):
        r = self._rows
        ext = self._bounded_one(ext)
        if self.degree == 1:
            return r[0] + ext * r[1]
        return r[0] + ext * (r[1] + ext * r[2])


class DualCorrelation(CorrelationModel):
    """Inhale and exhale branches: one polynomial of ``degree`` in the external signal, shifted
    by ``+δ`` on inhale and ``-δ`` on exhale (per axis), switched by the external velocity:

        p = sum_k c_k e^k + δ · w(ė),   w(ė) = clip(ė / ė_band, -1, 1)

    with ``ė_band = switch_fraction · max |ė|`` over the fit points (mm/s): a constant
    branch offset at speeds above the band, blended linearly across the turning points where
    the velocity, and its sign, are mostly marker noise (``switch_fraction = 0``: a hard
    switch, ``w = sign(ė)``). The default 0.5 was chosen among 0, 0.25 and 0.5 on the
    phase-shift phantom (15°, Lujan n = 2, 10 and 20 mm, 3 seeds): it had the lowest RMS and
    max at both amplitudes (docs/tracking_correlation.md).

    Why not two independent polynomials (the earlier ``dual``): a hysteresis branch is
    vertical at the turning points (the target still moves while the chest stops), so a line
    per branch fitted to the ~6 points a 12-point window gives it takes whatever slope the
    points' phases give it (measured: slopes 0.87 and 1.79 mm/mm on one window, true 1.25),
    and the hard switch between two such lines at the turning point jumps by their gap. The
    parallel-branch fit takes the slope from all points and only the branch offset from the
    velocity; on an analytic ellipse (target leads the chest by φ) its least-squares fit
    has the maximum error ``(2/π) A sin φ`` with the hard switch, against ``A sin φ`` for
    ``linear`` (docs/tracking_correlation.md).

    With fewer than ``degree + 3`` points, or an offset column that does not vary
    independently of the polynomial (all points on one branch), the fit is the pooled
    polynomial (``δ = 0``) and ``fallback_reason`` says why (None after a full fit).

    Attributes
    ----------
    coef : ndarray, shape (degree + 1, d)
        Polynomial coefficients ``c_k`` (mm / mm^k), lowest degree first.
    offset_mm : ndarray, shape (d,)
        Branch half-gap ``δ`` (mm): inhale ``+δ``, exhale ``-δ``.
    band_mm_s : float
        ``ė_band`` (mm/s).
    """

    name = "dual"
    needs_velocity = True
    RANK_TOL = 1e-6

    def __init__(self, degree: int = 1, *, switch_fraction: float = 0.5):
        if degree not in (1, 2):
            raise ValueError(f"degree must be 1 or 2 (got {degree})")
        if not 0.0 <= switch_fraction <= 1.0:
            raise ValueError(f"switch_fraction must be in [0, 1] (got {switch_fraction})")
        self.degree = degree
        self.switch_fraction = float(switch_fraction)
        self.coef: NDArray[np.float64] | None = None
        self.offset_mm: NDArray[np.float64] | None = None
        self.band_mm_s = 0.0
        self.fallback_reason: str | None = None

    def branch_weight(self, ext_velocity: ArrayLike) -> NDArray[np.float64]:
        """``w(ė)`` in [-1, 1] for velocities (n,) (mm/s): +1 inhale, -1 exhale."""
        v = _as_ext(ext_velocity, "ext_velocity")
        if self.band_mm_s > 0.0:
            return np.clip(v / self.band_mm_s, -1.0, 1.0)
        return np.sign(v)

    def fit(self, ext, internal, ext_velocity=None):
        e, y, v = self._check(ext, internal, ext_velocity, True)
        self._set_range(e)
        self.band_mm_s = self.switch_fraction * float(np.abs(v).max())
        w = self.branch_weight(v)
        design = np.column_stack([_design(e, self.degree), w])
        self.fallback_reason = self._rank_problem(design)
        if self.fallback_reason is None:
            sol = np.linalg.lstsq(design, y, rcond=None)[0]
            self.coef, self.offset_mm = sol[:-1], sol[-1]
        else:
            self.coef, self.offset_mm = _fit_poly(e, y, self.degree), np.zeros(y.shape[1])
        self._rows = (*self.coef, self.offset_mm)
        return self

    def _rank_problem(self, design: NDArray[np.float64]) -> str | None:
        n, k = design.shape
        if n < k + 1:  # one spare point
            return (f"{n} point(s): two branches of degree {self.degree} need at least "
                    f"{k + 1}; pooled fit used")
        norms = np.linalg.norm(design, axis=0)
        if norms[-1] == 0.0:
            return "no external velocity: pooled fit used"
        sv = np.linalg.svd(design / np.where(norms > 0, norms, 1.0), compute_uv=False)
        if sv[-1] <= self.RANK_TOL * sv[0]:
            return "the points do not separate inhale from exhale; pooled fit used"
        return None

    def predict(self, ext, ext_velocity=None):
        if self.coef is None:
            raise RuntimeError("correlation model used before fit()")
        e = self._bounded(ext)
        if ext_velocity is None:
            raise ValueError("ext_velocity is required by the dual (inhale/exhale) model")
        w = np.broadcast_to(self.branch_weight(ext_velocity), e.shape)
        return _eval_poly(self.coef, e) + w[:, None] * self.offset_mm

    def predict_one(self, ext, ext_velocity=0.0):
        r = self._rows
        ext = self._bounded_one(ext)
        b = self.band_mm_s
        w = (min(max(ext_velocity / b, -1.0), 1.0) if b > 0.0
             else (ext_velocity > 0.0) - (ext_velocity < 0.0))
        if self.degree == 1:
            return r[0] + ext * r[1] + w * r[2]
        return r[0] + ext * (r[1] + ext * r[2]) + w * r[3]


class VelocityCorrelation(CorrelationModel):
    """``p = a + b e + c ė`` per axis, by least squares (see the module docstring).

    Needs at least ``MIN_POINTS`` points and an external velocity that varies independently
    of the signal (relative singular value of the centred, normalised ``[e, ė]`` columns above
    ``RANK_TOL``); otherwise the fit is the linear one (``c = 0``) and ``fallback_reason``
    says why (None after a full fit).

    Attributes
    ----------
    coef : ndarray, shape (3, d)
        Rows ``a`` (mm), ``b`` (mm/mm), ``c`` (mm per mm/s).
    """

    name = "linear_velocity"
    needs_velocity = True
    MIN_POINTS = 4  # three coefficients and one spare point
    RANK_TOL = 1e-6

    def __init__(self):
        self.coef: NDArray[np.float64] | None = None
        self.fallback_reason: str | None = None

    def fit(self, ext, internal, ext_velocity=None):
        e, y, v = self._check(ext, internal, ext_velocity, True, self.name)
        self._set_range(e)
        self.fallback_reason = self._rank_problem(e, v)
        if self.fallback_reason is None:
            design = np.column_stack([np.ones_like(e), e, v])
            self.coef = np.linalg.lstsq(design, y, rcond=None)[0]
        else:
            self.coef = np.zeros((3, y.shape[1]))
            self.coef[:2] = _fit_poly(e, y, 1)
        self._rows = tuple(self.coef)
        return self

    def _rank_problem(self, e: NDArray[np.float64], v: NDArray[np.float64]) -> str | None:
        if e.size < self.MIN_POINTS:
            return (f"{e.size} point(s): a + b e + c ė needs at least {self.MIN_POINTS}; "
                    "linear fit used")
        cols = np.column_stack([e - e.mean(), v - v.mean()])
        norms = np.linalg.norm(cols, axis=0)
        if norms[1] == 0.0 or norms[1] <= self.RANK_TOL * max(np.abs(v).max(), 1.0):
            return "external velocity has no spread; linear fit used"
        if norms[0] == 0.0:
            return "external signal has no spread; linear fit used"
        sv = np.linalg.svd(cols / norms, compute_uv=False)
        if sv[-1] <= self.RANK_TOL * sv[0]:
            return "external velocity is collinear with the signal; linear fit used"
        return None

    def predict(self, ext, ext_velocity=None):
        if self.coef is None:
            raise RuntimeError("correlation model used before fit()")
        e = self._bounded(ext)
        if ext_velocity is None:
            raise ValueError(f"ext_velocity is required by the {self.name} model")
        v = np.broadcast_to(_as_ext(ext_velocity, "ext_velocity"), e.shape)
        return self.coef[0] + e[:, None] * self.coef[1] + v[:, None] * self.coef[2]

    def predict_one(self, ext, ext_velocity=0.0):
        r = self._rows
        return r[0] + self._bounded_one(ext) * r[1] + ext_velocity * r[2]


def make_correlation_model(name: ModelName, *, degree: int | None = None,
                           switch_fraction: float | None = None) -> CorrelationModel:
    """A correlation model by name.

    Parameters
    ----------
    name : {"linear", "quadratic", "dual", "linear_velocity"}
        Model type.
    degree : int, optional
        Polynomial degree of ``dual`` (1 or 2; default 1). Not used by the others.
    switch_fraction : float, optional
        ``dual``'s branch-switch band as a fraction of the fit points' largest speed
        (default 0.5; 0: a hard switch at the velocity's sign). Not used by the others.
    """
    if name == "linear":
        return PolynomialCorrelation(1)
    if name == "quadratic":
        return PolynomialCorrelation(2)
    if name == "dual":
        return DualCorrelation(1 if degree is None else degree,
                               switch_fraction=0.5 if switch_fraction is None
                               else switch_fraction)
    if name == "linear_velocity":
        return VelocityCorrelation()
    raise ValueError(f"correlation model must be one of {', '.join(MODELS)} (got {name!r})")


@dataclass(frozen=True)
class CorrelationStatus:
    """Health of a rolling correlation model after a new X-ray point.

    Attributes
    ----------
    model_ok : bool
        ``residual_mm`` and ``prediction_error_mm`` both within the limit.
    residual_mm : float
        RMS 3-D fit residual over the points kept (mm).
    prediction_error_mm : float
        3-D error of the previous model at the new point, before the refit (mm); NaN for
        the first point.
    n_points : int
        Points in the window.
    """

    model_ok: bool
    residual_mm: float
    prediction_error_mm: float
    n_points: int

    @classmethod
    def after_fit(cls, model: CorrelationModel, ext: NDArray, internal: NDArray, vel: NDArray,
                  *, prediction_error_mm: float, max_residual_mm: float) -> CorrelationStatus:
        """Fit ``model`` to the window's points and judge it.

        ``ext`` (n,) mm, ``internal`` (n, d) mm, ``vel`` (n,) mm/s; OK when the RMS 3-D fit
        residual and the previous model's error at the new point are both within the limit.
        """
        model.fit(ext, internal, vel)
        res = np.linalg.norm(model.predict(ext, vel) - internal, axis=1)
        rms = float(np.sqrt(np.mean(res**2)))
        ok = rms <= max_residual_mm and not prediction_error_mm > max_residual_mm
        return cls(model_ok=ok, residual_mm=rms, prediction_error_mm=prediction_error_mm,
                   n_points=int(ext.size))
