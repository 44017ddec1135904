"""Robust image similarity measures: normalised cross-correlation, gradient correlation."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["gradient_correlation", "ncc"]


def _pair(a: ArrayLike, b: ArrayLike, mask: ArrayLike | None) -> tuple[NDArray, NDArray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"images must have the same shape (got {x.shape} and {y.shape})")
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != x.shape:
            raise ValueError(f"mask shape {m.shape} differs from image shape {x.shape}")
        return x[m], y[m]
    return x.ravel(), y.ravel()


def ncc(a: ArrayLike, b: ArrayLike, *, mask: ArrayLike | None = None) -> float:
    """Normalised cross-correlation of two images (Pearson correlation of pixel values).

    Parameters
    ----------
    a, b : array-like, same shape
        Images (any units; the measure is invariant to affine intensity changes).
    mask : array-like of bool, same shape, optional
        Pixels to use.

    Returns
    -------
    float
        In [-1, 1]; 0 when either image is constant over the pixels used (nothing to match).
    """
    x, y = _pair(a, b, mask)
    if x.size < 2:
        return 0.0
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt(np.dot(x, x) * np.dot(y, y))
    return float(np.dot(x, y) / den) if den > 0 else 0.0


def gradient_correlation(a: ArrayLike, b: ArrayLike, *, mask: ArrayLike | None = None) -> float:
    """Gradient correlation: mean of the NCCs of the horizontal and vertical Sobel gradients.

    Parameters
    ----------
    a, b : array-like, shape (rows, cols)
        Images (any units).
    mask : array-like of bool, optional
        Pixels to use.

    Returns
    -------
    float
        In [-1, 1].
    """
    x = np.asarray(a, dtype=np.float32)
    y = np.asarray(b, dtype=np.float32)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"expected two 2-D images of equal shape (got {x.shape}, {y.shape})")
    out = 0.0
    for dx, dy in ((1, 0), (0, 1)):
        gx = cv2.Sobel(x, cv2.CV_32F, dx, dy, ksize=3)
        gy = cv2.Sobel(y, cv2.CV_32F, dx, dy, ksize=3)
        out += 0.5 * ncc(gx, gy, mask=mask)
    return out
