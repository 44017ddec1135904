"""Per-pixel 3-D points of a DRR (attenuation-weighted mean depth along each ray).

The fast inner loop of the registration moves each DRR pixel as if its content sat at one
3-D point on its ray: the μ-weighted mean depth of the region of interest along that ray.
The map is computed by projecting (splatting) the ROI's attenuating voxels, not by
ray casting; it is smooth by construction and only needs to be roughly right, since the
registration re-renders real DRRs at its estimate and refines from there.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from ..imaging import ViewGeometry

__all__ = ["Window", "pixel_points_room", "splat_depth"]


class Window:
    """A rectangular pixel window of a detector: columns ``c0..c0+w-1``, rows ``r0..r0+h-1``.

    Parameters
    ----------
    c0, r0 : int
        Top-left pixel (col, row) in full-detector pixel coordinates.
    w, h : int
        Width and height (pixels).
    """

    def __init__(self, c0: int, r0: int, w: int, h: int) -> None:
        if w < 1 or h < 1:
            raise ValueError(f"window must be at least 1x1 pixels (got {w}x{h})")
        self.c0, self.r0, self.w, self.h = int(c0), int(r0), int(w), int(h)

    @classmethod
    def around(cls, lo_px: NDArray, hi_px: NDArray, shape: tuple[int, int]) -> Window:
        """Window covering ``lo..hi`` (col, row), clipped to a detector of ``shape``."""
        rows, cols = shape
        c0 = int(np.clip(np.floor(lo_px[0]), 0, cols - 1))
        r0 = int(np.clip(np.floor(lo_px[1]), 0, rows - 1))
        c1 = int(np.clip(np.ceil(hi_px[0]) + 1, c0 + 1, cols))
        r1 = int(np.clip(np.ceil(hi_px[1]) + 1, r0 + 1, rows))
        return cls(c0, r0, c1 - c0, r1 - r0)

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of a full-detector image."""
        return slice(self.r0, self.r0 + self.h), slice(self.c0, self.c0 + self.w)

    def view(self, view: ViewGeometry) -> ViewGeometry:
        """The detector geometry restricted to this window (same pixel centers)."""
        center = view.pixel_to_room(self.c0 + (self.w - 1) / 2.0, self.r0 + (self.h - 1) / 2.0)
        return ViewGeometry(view.name, view.source_room, center, view.row_direction_room,
                            view.col_direction_room, view.pixel_spacing_mm, (self.h, self.w))

    def __repr__(self) -> str:
        return f"Window(c0={self.c0}, r0={self.r0}, w={self.w}, h={self.h})"


def splat_depth(view: ViewGeometry, window: Window, points_room: NDArray, weights: NDArray, *,
                default_depth_mm: float, sigma_px: float = 2.0,
                scale: int = 1) -> NDArray[np.float32]:
    """μ-weighted mean depth (mm along the detector normal from the source) per pixel.

    Parameters
    ----------
    view : ViewGeometry
        Full detector geometry.
    window : Window
        Pixels to fill.
    points_room : ndarray, shape (n, 3)
        Attenuating voxel centers (room mm) at the DRR's pose.
    weights : ndarray, shape (n,)
        Their weights (e.g. μ, 1/mm).
    default_depth_mm : float
        Depth where no weight falls (e.g. the target's).
    sigma_px : float
        Gaussian smoothing of the splatted maps (full-resolution pixels).
    scale : int
        Splat into ``scale × scale`` pixel blocks (the map is smooth, so 2 loses little and
        is about 4 times cheaper); pixel ``i`` of the map is centred on window pixel
        ``scale·i + (scale-1)/2``.

    Returns
    -------
    ndarray, shape (ceil(window.h/scale), ceil(window.w/scale)), float32
        Depth (mm).
    """
    s = int(scale)
    if s < 1:
        raise ValueError(f"scale must be a positive integer (got {scale!r})")
    hh, ww = -(-window.h // s), -(-window.w // s)
    p = view.projection_matrix
    h = points_room @ p[:, :3].T + p[:, 3]
    inv = 1.0 / h[:, 2]
    col = np.floor((h[:, 0] * inv - (window.c0 - 0.5)) / s).astype(np.int64)
    row = np.floor((h[:, 1] * inv - (window.r0 - 0.5)) / s).astype(np.int64)
    ok = (col >= 0) & (col < ww) & (row >= 0) & (row < hh)
    idx = row[ok] * ww + col[ok]
    n = ww * hh
    wk = weights[ok]
    wsum = np.bincount(idx, weights=wk, minlength=n).astype(np.float32).reshape(hh, ww)
    dsum = np.bincount(idx, weights=wk * (h[ok, 2] - default_depth_mm),
                       minlength=n).astype(np.float32).reshape(hh, ww)
    wsum = cv2.GaussianBlur(wsum, (0, 0), sigma_px / s)
    dsum = cv2.GaussianBlur(dsum, (0, 0), sigma_px / s)
    top = float(wsum.max()) if wsum.size else 0.0
    if top <= 0:
        return np.full((hh, ww), default_depth_mm, np.float32)
    # mean offset from the default depth, faded to 0 where (almost) no weight falls
    return np.float32(default_depth_mm) + dsum / np.maximum(wsum, np.float32(1e-3 * top))


def pixel_points_room(view: ViewGeometry, cols: NDArray, rows: NDArray,
                      depth_mm: NDArray) -> NDArray[np.float64]:
    """Points on the rays of pixels ``(cols, rows)`` at the given depths (room mm), (n, 3)."""
    pix = view.pixel_to_room(cols, rows)
    ray = pix - view.source_room
    denom = ray @ view.projection_matrix[2, :3]
    return view.source_room + (depth_mm / denom)[:, None] * ray
