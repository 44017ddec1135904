"""In-plane shift estimation: NCC template matching with a sub-pixel peak."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ShiftEstimate", "match_template", "match_template_candidates", "subpixel_peak"]


@dataclass(frozen=True)
class ShiftEstimate:
    """Where a template was found in a search image.

    Attributes
    ----------
    offset_px : ndarray, shape (2,)
        ``(col, row)`` of the template's top-left corner in the search image (pixels,
        sub-pixel).
    score : float
        Peak normalised correlation in [-1, 1].
    second_score : float
        Best correlation outside the peak's neighbourhood (ambiguity check).
    """

    offset_px: NDArray[np.float64]
    score: float
    second_score: float


def subpixel_peak(surface: NDArray, col: int, row: int) -> tuple[float, float]:
    """Refine an integer maximum by a 1-D parabola through it and its neighbours per axis.

    Returns
    -------
    tuple of float
        ``(col, row)`` of the refined peak (pixels); at the border the integer position.
    """
    def _fit(m1: float, c: float, p1: float) -> float:
        den = m1 - 2.0 * c + p1
        return 0.0 if den >= 0 else float(np.clip(0.5 * (m1 - p1) / den, -0.5, 0.5))

    h, w = surface.shape
    dc = _fit(surface[row, col - 1], surface[row, col], surface[row, col + 1]) \
        if 0 < col < w - 1 else 0.0
    dr = _fit(surface[row - 1, col], surface[row, col], surface[row + 1, col]) \
        if 0 < row < h - 1 else 0.0
    return col + dc, row + dr


def match_template(search: ArrayLike, template: ArrayLike, *,
                   exclusion_px: int = 6) -> ShiftEstimate:
    """Locate ``template`` in ``search`` by normalised cross-correlation.

    Parameters
    ----------
    search : array-like, shape (H, W)
        Image to search (e.g. the enhanced live image around the expected position).
    template : array-like, shape (h, w), h <= H, w <= W
        Pattern to find (e.g. the enhanced DRR of the region of interest).
    exclusion_px : int
        Radius around the peak ignored when looking for the second-best match (pixels).

    Returns
    -------
    ShiftEstimate
        Top-left offset ``(col, row)`` of the best match (sub-pixel) and its score.
    """
    s = np.asarray(search, dtype=np.float32)
    t = np.asarray(template, dtype=np.float32)
    if s.ndim != 2 or t.ndim != 2 or t.shape[0] > s.shape[0] or t.shape[1] > s.shape[1]:
        raise ValueError(f"template {t.shape} must be 2-D and fit inside search {s.shape}")
    if float(t.std()) == 0.0 or float(s.std()) == 0.0:
        return ShiftEstimate(np.zeros(2), 0.0, 0.0)
    surf = cv2.matchTemplate(s, t, cv2.TM_CCOEFF_NORMED)
    surf = np.nan_to_num(surf, nan=0.0, posinf=0.0, neginf=0.0)
    _, best, _, (c, r) = cv2.minMaxLoc(surf)
    col, row = subpixel_peak(surf, c, r)
    masked = surf.copy()
    masked[max(0, r - exclusion_px):r + exclusion_px + 1,
           max(0, c - exclusion_px):c + exclusion_px + 1] = -1.0
    second = float(masked.max()) if masked.size else -1.0
    return ShiftEstimate(np.array([col, row], dtype=np.float64), float(best), second)


def match_template_candidates(search: ArrayLike, template: ArrayLike, *, n_candidates: int = 4,
                              exclusion_px: int = 6) -> list[tuple[NDArray[np.float64], float]]:
    """The ``n_candidates`` best, mutually separated NCC matches of a template.

    Parameters
    ----------
    search, template : array-like
        As for :func:`match_template`.
    n_candidates : int
        How many local maxima to return (fewer if the surface runs out).
    exclusion_px : int
        Minimum separation between candidates (pixels).

    Returns
    -------
    list of (offset_px, score)
        Top-left ``(col, row)`` offsets (sub-pixel) and NCC scores, best first.
    """
    s = np.asarray(search, dtype=np.float32)
    t = np.asarray(template, dtype=np.float32)
    if s.ndim != 2 or t.ndim != 2 or t.shape[0] > s.shape[0] or t.shape[1] > s.shape[1]:
        raise ValueError(f"template {t.shape} must be 2-D and fit inside search {s.shape}")
    if float(t.std()) == 0.0 or float(s.std()) == 0.0:
        return [(np.zeros(2), 0.0)]
    surf = np.nan_to_num(cv2.matchTemplate(s, t, cv2.TM_CCOEFF_NORMED), nan=0.0,
                         posinf=0.0, neginf=0.0)
    work = surf.copy()
    out = []
    for _ in range(max(1, int(n_candidates))):
        _, best, _, (c, r) = cv2.minMaxLoc(work)
        if best <= -1.0:
            break
        out.append((np.array(subpixel_peak(surf, c, r), dtype=np.float64), float(best)))
        work[max(0, r - exclusion_px):r + exclusion_px + 1,
             max(0, c - exclusion_px):c + exclusion_px + 1] = -1.0
    return out
