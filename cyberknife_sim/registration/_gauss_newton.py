"""Gauss-Newton refinement of a 6-DoF pose on both views' enhanced images at once.

Model: each selected DRR pixel ``u`` carries a 3-D point ``X(u)`` (room mm, at the pose the
DRR was rendered at; see :mod:`._depth`). Under a candidate relative motion ``T`` (room →
room) that point appears in the live image at ``π(T X(u))``. The residual per pixel is the
difference between the normalised live enhanced image sampled there and the normalised
enhanced DRR value at ``u``; minimising its sum of squares over both views maximises the
summed normalised cross-correlation. Steps are pose increments composed on the left,
derived from the live image gradient and :func:`._projective.pose_jacobian`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import cv2
import numpy as np
from numpy.typing import NDArray

from ._projective import increment_matrix

__all__ = ["GN_METHODS", "GaussNewtonMethod", "LiveLevel", "RefLevel", "gauss_newton"]

GaussNewtonMethod = Literal["inverse", "forward"]
GN_METHODS: tuple[str, ...] = get_args(GaussNewtonMethod)

_MAX_STEP_MM = 4.0
_MAX_STEP_RAD = np.deg2rad(1.5)


@dataclass
class RefLevel:
    """Reference (DRR) side of one view at one resolution level.

    Attributes
    ----------
    projection_matrix : ndarray, shape (3, 4)
        Full-detector projection (room mm → pixel).
    points_room : ndarray, shape (n, 3)
        3-D points of the selected pixels at the DRR's pose (room mm).
    values : ndarray, shape (n,)
        Enhanced DRR at those pixels, normalised to zero mean and unit variance.
    gradients : ndarray, shape (n, 2), optional
        Its image gradient ``(d/dcol, d/drow)`` there, per full-resolution pixel, in the
        same normalised units (needed by ``method="inverse"``).
    weights : ndarray, shape (n,), optional
        Per-pixel weights (> 0) of the residuals: the means, standard deviations, NCC,
        cost and normal equations become weighted ones (None: all 1).
    """

    projection_matrix: NDArray[np.float64]
    points_room: NDArray[np.float64]
    values: NDArray[np.float64]
    gradients: NDArray[np.float64] | None = None
    weights: NDArray[np.float64] | None = None
    _jac: NDArray[np.float64] | None = field(default=None, init=False, repr=False)

    def jacobian(self) -> NDArray[np.float64]:
        """d(value)/d(pose increment) at the DRR's own pose, shape (n, 6) (per mm, per rad).

        The enhanced DRR's image gradient (``gradients``, per full-resolution pixel)
        contracted with :func:`._projective.pose_jacobian` of the points; used by the
        inverse-compositional Gauss-Newton, where it stays constant.
        """
        if self.gradients is None:
            raise ValueError("RefLevel.gradients is needed for the inverse-compositional method")
        if self._jac is None:
            p, x = self.projection_matrix, self.points_room
            h = x @ p[:, :3].T + p[:, 3]
            inv_h3 = 1.0 / h[:, 2]
            k = self.gradients * inv_h3[:, None]
            coef = np.column_stack([k, -(k[:, 0] * h[:, 0] + k[:, 1] * h[:, 1]) * inv_h3])
            g = coef @ p[:, :3]
            self._jac = np.concatenate([g, np.cross(x, g)], axis=1)
        return self._jac


@dataclass
class LiveLevel:
    """Live side of one view at one level: enhanced image over a window and its gradients.

    Attributes
    ----------
    image, grad_col, grad_row : ndarray, shape (h, w), float32
        Enhanced live image and its derivatives along columns and rows (per pixel).
    c0, r0 : int
        Full-detector pixel of the window's top-left corner.
    """

    image: NDArray[np.float32]
    grad_col: NDArray[np.float32]
    grad_row: NDArray[np.float32]
    c0: int
    r0: int
    scale: int = 1
    stack: NDArray[np.float32] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # image and gradients interleaved, so one remap samples all three
        self.stack = cv2.merge([np.asarray(x, np.float32) for x in (self.image, self.grad_col,
                                                                     self.grad_row)])

    @classmethod
    def from_image(cls, image: NDArray[np.float32], c0: int, r0: int, *,
                   scale: int = 1) -> LiveLevel:
        """Wrap an enhanced window whose top-left pixel is full-detector ``(c0, r0)``.

        ``scale`` > 1: the image is the window reduced by that factor (pixel ``i`` of the
        reduced image is centred on full pixel ``scale·i + (scale-1)/2``). Gradients are
        central differences per *full-resolution* pixel.
        """
        k = 0.5 / scale
        gc = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=1, scale=k)
        gr = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=1, scale=k)
        return cls(image, gc, gr, int(c0), int(r0), int(scale))


def _sample(live: LiveLevel, uv: NDArray[np.float64], *,
            gradients: bool = True) -> NDArray[np.float32]:
    """Bilinear samples of image (and gradients) at full-detector ``uv`` (n, 2); NaN outside.

    Returns an ``(n, 3)`` float32 array: image, d/dcol, d/drow (``(n, 1)``: the image only).
    """
    n = uv.shape[0]
    width = 16384  # cv2.remap needs maps narrower than 32767 pixels
    m = -(-n // width) * width if n > width else n
    off = 0.5 * (live.scale - 1)
    maps = np.full((m, 2), -1e4, np.float32)
    maps[:n] = (uv - np.array([live.c0 + off, live.r0 + off])) / live.scale
    src = live.stack if gradients else live.image
    out = cv2.remap(src, maps.reshape(-1, min(m, width), 2), None, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=(np.nan, np.nan, np.nan))
    return out.reshape(-1, 3 if gradients else 1)[:n]


def _evaluate(refs: list[RefLevel], lives: list[LiveLevel], t: NDArray[np.float64], *,
              want_jacobian: bool, huber: float | None = None,
              inverse: bool = False) -> tuple[
                  float, list[float], NDArray | None, NDArray | None]:
    """Cost, per-view NCC and the stacked GN system (normal equations).

    The cost is the mean over views of the mean Huber loss of the normalised residuals
    (``huber`` = None: half the mean squared residual, i.e. 1 - NCC).
    """
    nccs: list[float] = []
    costs: list[float] = []
    jtj = np.zeros((6, 6)) if want_jacobian else None
    jtr = np.zeros(6) if want_jacobian else None
    for ref, live in zip(refs, lives, strict=True):
        p = ref.projection_matrix
        # project T·X directly: h = P (R X + t) = (P3 R) X + (P3 t + p4)
        pr = p[:, :3] @ t[:3, :3]
        h = ref.points_room @ pr.T + (p[:, :3] @ t[:3, 3] + p[:, 3])
        inv_h3 = 1.0 / h[:, 2]
        uv = h[:, :2] * inv_h3[:, None]
        smp = _sample(live, uv, gradients=want_jacobian and not inverse)
        ok = np.isfinite(smp[:, 0])
        n_ok = int(np.count_nonzero(ok))
        if n_ok < 0.5 * ok.size or n_ok < 16:
            nccs.append(0.0)
            costs.append(1.0)
            continue
        all_ok = n_ok == ok.size
        if not all_ok:
            smp, h, uv, inv_h3 = smp[ok], h[ok], uv[ok], inv_h3[ok]
        v = smp[:, 0].astype(np.float64)
        e = ref.values if all_ok else ref.values[ok]
        if ref.weights is None:
            om = None
            e = e - e.mean()
            e_std = float(np.sqrt(np.dot(e, e) / e.size))
            v = v - v.mean()
            v_std = float(np.sqrt(np.dot(v, v) / v.size))
        else:
            om = ref.weights if all_ok else ref.weights[ok]
            om = om / max(float(om.mean()), 1e-300)  # mean 1: the unweighted scale
            e = e - float(np.dot(om, e)) / om.size
            e_std = float(np.sqrt(np.dot(om, e * e) / e.size))
            v = v - float(np.dot(om, v)) / om.size
            v_std = float(np.sqrt(np.dot(om, v * v) / v.size))
        if v_std <= 0 or e_std <= 0:
            nccs.append(0.0)
            costs.append(1.0)
            continue
        vn = v / v_std
        en = e / e_std
        prod = vn * en if om is None else om * vn * en
        nccs.append(float(prod.sum()) / vn.size)
        r = vn - en
        if huber is None:
            w = None
            rho = 0.5 * r * r
        else:
            a = np.abs(r)
            inside = a <= huber
            w = np.where(inside, 1.0, huber / np.maximum(a, 1e-12))
            rho = np.where(inside, 0.5 * r * r, huber * (a - 0.5 * huber))
        if om is not None:
            rho = om * rho
            w = om if w is None else w * om
        costs.append(float(rho.sum()) / r.size)
        if want_jacobian and inverse:
            # inverse compositional: the DRR side moves; its Jacobian is fixed. The sign is
            # flipped so that the caller's ``-solve(jtj, jtr)`` is the increment to undo.
            j = ref.jacobian() if all_ok else ref.jacobian()[ok]
            j = j / e_std
            scale = 1.0 / j.shape[0]
            jw = j if w is None else j * w[:, None]
            jtj += scale * (jw.T @ j)
            jtr -= scale * (jw.T @ r)
        elif want_jacobian:
            # d(col,row)/dX per point, contracted with the image gradient: a 3-D gradient g;
            # translation columns are g, rotation columns X × g (see pose_jacobian), with X the
            # moved point T·X (rows of P3 R map original points, so X × g uses the moved ones).
            k = smp[:, 1:3].astype(np.float64) * (inv_h3 / v_std)[:, None]
            coef = np.column_stack([k, -(k[:, 0] * uv[:, 0] + k[:, 1] * uv[:, 1])])
            g = coef @ p[:, :3]
            xo = (ref.points_room if all_ok else ref.points_room[ok]) @ t[:3, :3].T + t[:3, 3]
            j = np.concatenate([g, np.cross(xo, g)], axis=1)
            scale = 1.0 / g.shape[0]
            jw = j if w is None else j * w[:, None]
            jtj += scale * (jw.T @ j)
            jtr += scale * (jw.T @ r)
    cost = float(np.mean(costs))
    return cost, nccs, jtj, jtr


def gauss_newton(refs: list[RefLevel], lives: list[LiveLevel], start: NDArray[np.float64], *,
                 max_iterations: int = 20, tol_mm: float = 0.005, tol_deg: float = 0.005,
                 huber: float | None = None, method: GaussNewtonMethod = "inverse",
                 translation_only: bool = False) -> tuple[NDArray[np.float64], dict]:
    """Refine a relative rigid motion ``T`` (room → room, 4x4) by damped Gauss-Newton.

    Parameters
    ----------
    refs, lives : list
        Per view: the DRR side (:class:`RefLevel`) and live side (:class:`LiveLevel`).
    start : ndarray, shape (4, 4)
        Initial motion relative to the pose the DRRs were rendered at.
    max_iterations : int
        Cap on GN iterations.
    tol_mm, tol_deg : float
        Stop when a step's translation and rotation are both below these.
    huber : float, optional
        Huber threshold on the normalised residuals (robust to structures that only one
        image shows); None: plain least squares.
    method : {"inverse", "forward"}
        ``"inverse"`` (inverse compositional): the Jacobian comes from the enhanced DRR's
        gradients at its own pose and is computed once (needs ``RefLevel.gradients``);
        each step is undone on the DRR side, ``T ← T · exp(δ)⁻¹``. ``"forward"``: from the
        live image's gradients at the moved points, recomputed every iteration,
        ``T ← exp(δ) · T``.
    translation_only : bool
        Keep the rotation of ``start``: steps move the three translations only.

    Returns
    -------
    motion : ndarray, shape (4, 4)
        Best motion found.
    info : dict
        ``iterations``, ``ncc`` (per view at the result), ``converged`` (the last step was
        below the tolerances), ``last_step_mm``, ``last_step_deg`` (the last step tried),
        ``last_cost_change`` (relative cost decrease of the last accepted step; inf if none
        was accepted), ``cost`` (at the result).
    """
    if method not in GN_METHODS:
        raise ValueError(f"method must be one of {GN_METHODS} (got {method!r})")
    inverse = method == "inverse"
    t = np.array(start, dtype=np.float64)
    cost, nccs, jtj, jtr = _evaluate(refs, lives, t, want_jacobian=True, huber=huber,
                                     inverse=inverse)
    best_t, best_cost, best_nccs = t, cost, nccs
    lam = 1e-4
    converged = False
    step_mm = step_deg = np.inf
    cost_change = np.inf
    it = 0
    for it in range(1, max_iterations + 1):  # noqa: B007 - reported below
        a = jtj + lam * np.diag(np.diag(jtj) + 1e-12)
        try:
            if translation_only:
                delta = np.zeros(6)
                delta[:3] = -np.linalg.solve(a[:3, :3], jtr[:3])
            else:
                delta = -np.linalg.solve(a, jtr)
        except np.linalg.LinAlgError:
            break
        n_t, n_w = np.linalg.norm(delta[:3]), np.linalg.norm(delta[3:])
        shrink = min(1.0, _MAX_STEP_MM / max(n_t, 1e-12), _MAX_STEP_RAD / max(n_w, 1e-12))
        delta *= shrink
        step_mm, step_deg = float(np.linalg.norm(delta[:3])), float(np.degrees(
            np.linalg.norm(delta[3:])))
        inc = increment_matrix(delta)
        if inverse:  # undo the increment: exact rigid inverse (R^T, -R^T t)
            inv = np.eye(4)
            inv[:3, :3] = inc[:3, :3].T
            inv[:3, 3] = -inc[:3, :3].T @ inc[:3, 3]
            cand = best_t @ inv
        else:
            cand = inc @ best_t
        c_cost, c_nccs, c_jtj, c_jtr = _evaluate(refs, lives, cand, want_jacobian=True,
                                                 huber=huber, inverse=inverse)
        if c_cost <= best_cost:
            cost_change = (best_cost - c_cost) / max(best_cost, 1e-12)
            best_t, best_cost, best_nccs = cand, c_cost, c_nccs
            jtj, jtr = c_jtj, c_jtr
            lam = max(lam * 0.3, 1e-6)
            if step_mm < tol_mm and step_deg < tol_deg:
                converged = True
                break
        else:
            lam *= 10.0
            if step_mm < tol_mm and step_deg < tol_deg:
                converged = True
                break
            if lam > 1e4:
                break
    return best_t, {"iterations": it, "ncc": best_nccs, "converged": converged,
                    "last_step_mm": step_mm, "last_step_deg": step_deg,
                    "last_cost_change": float(cost_change), "cost": best_cost}
