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

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from ._projective import increment_matrix

__all__ = ["LiveLevel", "RefLevel", "gauss_newton"]

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
    """

    projection_matrix: NDArray[np.float64]
    points_room: NDArray[np.float64]
    values: NDArray[np.float64]


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


def _sample(live: LiveLevel, uv: NDArray[np.float64]) -> tuple[NDArray, ...]:
    """Bilinear samples of image and gradients at full-detector ``uv`` (n, 2); NaN outside."""
    n = uv.shape[0]
    width = 1024  # cv2.remap needs maps narrower than 32767 pixels
    m = -(-n // width) * width
    mx = np.full(m, -1e4, np.float32)
    my = np.full(m, -1e4, np.float32)
    off = 0.5 * (live.scale - 1)
    mx[:n] = (uv[:, 0] - live.c0 - off) / live.scale
    my[:n] = (uv[:, 1] - live.r0 - off) / live.scale
    mx, my = mx.reshape(-1, width), my.reshape(-1, width)
    out = []
    for img in (live.image, live.grad_col, live.grad_row):
        out.append(cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=np.nan).ravel()[:n])
    return tuple(out)


def _evaluate(refs: list[RefLevel], lives: list[LiveLevel], t: NDArray[np.float64], *,
              want_jacobian: bool, huber: float | None = None) -> tuple[
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
        x = ref.points_room @ t[:3, :3].T + t[:3, 3]
        p = ref.projection_matrix
        h = x @ p[:, :3].T + p[:, 3]
        uv = h[:, :2] / h[:, 2:3]
        val, gc, gr = _sample(live, uv)
        ok = np.isfinite(val)
        if ok.sum() < 0.5 * ok.size or ok.sum() < 16:
            nccs.append(0.0)
            costs.append(1.0)
            continue
        v = val[ok].astype(np.float64)
        e = ref.values[ok]
        e = e - e.mean()
        e_std = e.std()
        v_mean, v_std = v.mean(), v.std()
        if v_std <= 0 or e_std <= 0:
            nccs.append(0.0)
            costs.append(1.0)
            continue
        vn = (v - v_mean) / v_std
        en = e / e_std
        nccs.append(float(np.mean(vn * en)))
        r = vn - en
        if huber is None:
            w = None
            costs.append(0.5 * float(np.mean(r * r)))
        else:
            a = np.abs(r)
            w = np.minimum(1.0, huber / np.maximum(a, 1e-12))
            costs.append(float(np.mean(np.where(a <= huber, 0.5 * r * r,
                                                huber * (a - 0.5 * huber)))))
        if want_jacobian:
            # d(col,row)/dX per point, contracted with the image gradient: a 3-D gradient g;
            # translation columns are g, rotation columns X × g (see pose_jacobian).
            xo, ho, uvo = x[ok], h[ok], uv[ok]
            inv_h3 = 1.0 / ho[:, 2]
            g = (gc[ok, None] * (p[0, :3] - uvo[:, :1] * p[2, :3])
                 + gr[ok, None] * (p[1, :3] - uvo[:, 1:2] * p[2, :3])) * (inv_h3 / v_std)[:, None]
            j = np.empty((g.shape[0], 6))
            j[:, :3] = g
            j[:, 3] = xo[:, 1] * g[:, 2] - xo[:, 2] * g[:, 1]
            j[:, 4] = xo[:, 2] * g[:, 0] - xo[:, 0] * g[:, 2]
            j[:, 5] = xo[:, 0] * g[:, 1] - xo[:, 1] * g[:, 0]
            scale = 1.0 / ok.sum()
            jw = j if w is None else j * w[:, None]
            jtj += scale * (jw.T @ j)
            jtr += scale * (jw.T @ r)
    cost = float(np.mean(costs))
    return cost, nccs, jtj, jtr


def gauss_newton(refs: list[RefLevel], lives: list[LiveLevel], start: NDArray[np.float64], *,
                 max_iterations: int = 20, tol_mm: float = 0.005, tol_deg: float = 0.005,
                 huber: float | None = None) -> tuple[NDArray[np.float64], dict]:
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

    Returns
    -------
    motion : ndarray, shape (4, 4)
        Best motion found.
    info : dict
        ``iterations``, ``ncc`` (per view at the result), ``converged``, ``last_step_mm``,
        ``last_step_deg``.
    """
    t = np.array(start, dtype=np.float64)
    cost, nccs, jtj, jtr = _evaluate(refs, lives, t, want_jacobian=True, huber=huber)
    best_t, best_cost, best_nccs = t, cost, nccs
    lam = 1e-4
    converged = False
    step_mm = step_deg = np.inf
    it = 0
    for it in range(1, max_iterations + 1):  # noqa: B007 - reported below
        a = jtj + lam * np.diag(np.diag(jtj) + 1e-12)
        try:
            delta = -np.linalg.solve(a, jtr)
        except np.linalg.LinAlgError:
            break
        n_t, n_w = np.linalg.norm(delta[:3]), np.linalg.norm(delta[3:])
        shrink = min(1.0, _MAX_STEP_MM / max(n_t, 1e-12), _MAX_STEP_RAD / max(n_w, 1e-12))
        delta *= shrink
        step_mm, step_deg = float(np.linalg.norm(delta[:3])), float(np.degrees(
            np.linalg.norm(delta[3:])))
        cand = increment_matrix(delta) @ best_t
        c_cost, c_nccs, c_jtj, c_jtr = _evaluate(refs, lives, cand, want_jacobian=True, huber=huber)
        if c_cost <= best_cost:
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
                    "last_step_mm": step_mm, "last_step_deg": step_deg}
