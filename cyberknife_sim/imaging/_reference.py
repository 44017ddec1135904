"""Reference DRR: fine-step trilinear ray marching, slow and obviously correct (for tests)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import map_coordinates

from ..anatomy import Volume
from ..geometry import check_transform
from ._geometry import ViewGeometry

__all__ = ["reference_drr"]


def reference_drr(volume: Volume, view: ViewGeometry, room_from_ct: ArrayLike, *,
                  mu_water_per_mm: float, step_mm: float = 0.25,
                  max_samples_per_chunk: int = 4_000_000) -> NDArray[np.float32]:
    """Line integrals by marching every ray in steps of ``step_mm`` (midpoint rule).

    μ is sampled by trilinear interpolation in the voxel grid and is zero beyond it
    (``scipy.ndimage.map_coordinates``, ``order=1``, ``mode="grid-constant"``). Each ray
    is marched only where it crosses the volume's zero-padded box, clipped to the segment
    from the source to the pixel center.

    Parameters
    ----------
    volume : Volume
        CT in HU.
    view : ViewGeometry
        Detector geometry, room frame.
    room_from_ct : array-like, shape (4, 4)
        Pose of the CT in the room (mm).
    mu_water_per_mm : float
        Attenuation of water (1/mm).
    step_mm : float
        Sampling step along each ray (mm).
    max_samples_per_chunk : int
        Memory bound: rays are processed in chunks of at most this many samples.

    Returns
    -------
    ndarray, shape ``view.shape``, float32
        ∫μ dl per pixel (dimensionless).
    """
    if not step_mm > 0:
        raise ValueError(f"step_mm must be > 0 (got {step_mm})")
    m = check_transform(room_from_ct, name="room_from_ct")
    mu = volume.mu_per_mm(mu_water_per_mm).astype(np.float64)
    ijk_from_room = volume.ijk_from_ct @ np.linalg.inv(m)
    rows, cols = view.shape
    cc, rr = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64))
    ends_room = view.pixel_to_room(cc.ravel(), rr.ravel())  # (n, 3)
    src_room = view.source_room
    lengths = np.linalg.norm(ends_room - src_room, axis=1)

    # ray/box intersection in index space, box = [-1, n] on every axis (zero padding)
    lin, off = ijk_from_room[:3, :3], ijk_from_room[:3, 3]
    s = lin @ src_room + off
    e = ends_room @ lin.T + off - s  # (n, 3) index-space direction, t in [0, 1]
    hi_box = np.array(mu.shape[::-1], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-1.0 - s) / e
        t2 = (hi_box - s) / e
    tmin = np.where(e == 0, -np.inf, np.minimum(t1, t2))
    tmax = np.where(e == 0, np.inf, np.maximum(t1, t2))
    inside = (s >= -1.0) & (s <= hi_box)
    tmin = np.where((e == 0) & ~inside, np.inf, tmin)
    t_enter = np.clip(tmin.max(axis=1), 0.0, 1.0)
    t_exit = np.clip(tmax.min(axis=1), 0.0, 1.0)
    span_mm = np.maximum(t_exit - t_enter, 0.0) * lengths

    out = np.zeros(rows * cols, dtype=np.float64)
    n_steps = np.ceil(span_mm / step_mm).astype(int)
    hit = np.nonzero(n_steps > 0)[0]
    if hit.size == 0:
        return out.reshape(rows, cols).astype(np.float32)
    n_max = int(n_steps[hit].max())
    chunk = max(1, max_samples_per_chunk // n_max)
    frac = (np.arange(n_max) + 0.5)[None, :]
    for start in range(0, hit.size, chunk):
        idx = hit[start:start + chunk]
        # per-ray step so that n_steps[idx] steps exactly cover the span (<= step_mm)
        dt = (t_exit[idx] - t_enter[idx]) / n_steps[idx]
        t = t_enter[idx, None] + frac * dt[:, None]
        valid = frac < n_steps[idx, None]
        pts = s[None, None, :] + t[..., None] * e[idx, None, :]  # (m, n_max, 3) as (i, j, k)
        vals = map_coordinates(mu, [pts[..., 2].ravel(), pts[..., 1].ravel(), pts[..., 0].ravel()],
                               order=1, mode="grid-constant", cval=0.0).reshape(t.shape)
        out[idx] = np.sum(vals * valid, axis=1) * dt * lengths[idx]
    return out.reshape(rows, cols).astype(np.float32)
