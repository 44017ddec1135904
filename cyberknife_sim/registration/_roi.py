"""The region of interest the registration renders: a tapered box of the CT around the target."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..anatomy import Volume
from ..errors import InputError

__all__ = ["DRR_CONTENTS", "DrrContent", "RoiModel", "roi_model"]

DrrContent = Literal["bone", "all"]
DRR_CONTENTS: tuple[str, ...] = get_args(DrrContent)


class RoiModel:
    """Attenuation of the ROI as rendered by the registration, and its bone points.

    Attributes
    ----------
    volume : Volume
        The ROI as a CT whose HU encode the (tapered, optionally bone-only) attenuation, so
        that ``volume.mu_per_mm(mu_water)`` returns it; render it with ``DrrRenderer``.
    corners_ct : ndarray, shape (8, 3)
        Corners of the ROI box (CT mm).
    points_ct : ndarray, shape (n, 3)
        Centers of bone voxels (CT mm) used for depth maps.
    weights : ndarray, shape (n,)
        Their excess attenuation over soft tissue (1/mm), tapered.
    """

    def __init__(self, volume: Volume, corners_ct: NDArray, points_ct: NDArray,
                 weights: NDArray) -> None:
        self.volume = volume
        self.corners_ct = corners_ct
        self.points_ct = points_ct
        self.weights = weights


def _taper(n: int, spacing_mm: float, taper_mm: float) -> NDArray[np.float32]:
    """1-D weight: 0 at the ends rising as a raised cosine over ``taper_mm`` to 1."""
    pos = np.arange(n, dtype=np.float64)
    dist = np.minimum(pos, n - 1 - pos) * spacing_mm
    if taper_mm <= 0:
        return np.ones(n, dtype=np.float32)
    x = np.clip(dist / taper_mm, 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * x)).astype(np.float32)


def roi_model(volume: Volume, target_ct_mm: ArrayLike, *, half_size_mm: ArrayLike,
              mu_water_per_mm: float, content: DrrContent = "bone",
              bone_threshold_hu: float = 150.0, taper_mm: float = 12.0,
              max_points: int = 60_000) -> RoiModel:
    """Crop, taper and (optionally) keep only bone of the CT around the target.

    Parameters
    ----------
    volume : Volume
        Planning CT (HU).
    target_ct_mm : array-like, shape (3,)
        Target (CT mm); must lie inside the CT.
    half_size_mm : array-like, shape (3,) or float
        Half size of the ROI box along the volume's i, j, k axes (mm).
    mu_water_per_mm : float
        Attenuation of water (1/mm).
    content : {"bone", "all"}
        ``"bone"``: only attenuation above that of ``bone_threshold_hu`` is rendered (the
        soft tissue and air contrast of the live image is then ignored by design);
        ``"all"``: everything in the box.
    bone_threshold_hu : float
        HU level treated as soft tissue for ``"bone"`` and for the depth points.
    taper_mm : float
        Width of the raised-cosine fade at the box faces (mm), so that the box's cut
        faces do not create edges that the live image lacks.
    max_points : int
        Upper bound on the bone points kept for depth maps (every n-th voxel).

    Returns
    -------
    RoiModel
    """
    if content not in DRR_CONTENTS:
        raise ValueError(f"content must be one of {DRR_CONTENTS} (got {content!r})")
    target = np.asarray(target_ct_mm, dtype=np.float64)
    if target.shape != (3,) or not np.all(np.isfinite(target)):
        raise InputError(f"target_ct_mm: expected 3 finite numbers (got {target.tolist()})")
    if not volume.contains_ct(target)[0]:
        raise InputError(f"target {target.round(1).tolist()} (CT mm) lies outside the CT "
                         f"{volume.name!r}")
    half = np.broadcast_to(np.asarray(half_size_mm, dtype=np.float64), (3,))
    roi = volume.crop_around(target, half)
    mu = roi.mu_per_mm(mu_water_per_mm)
    mu_thr = np.float32(mu_water_per_mm * max(0.0, 1.0 + bone_threshold_hu / 1000.0))
    excess = np.maximum(mu - mu_thr, 0.0)
    sp = roi.spacing_mm
    nk, nj, ni = mu.shape
    w = (_taper(nk, sp[2], taper_mm)[:, None, None] * _taper(nj, sp[1], taper_mm)[None, :, None]
         * _taper(ni, sp[0], taper_mm)[None, None, :])
    rendered = (excess if content == "bone" else mu) * w
    hu = (1000.0 * (rendered / np.float32(mu_water_per_mm) - 1.0)).astype(np.float32)
    vol = Volume(hu, roi.ct_from_ijk, name=f"{volume.name} ROI")

    weight = excess * w
    k, j, i = np.nonzero(weight > 0.02 * float(weight.max()) if weight.max() > 0 else weight > 0)
    stride = max(1, int(np.ceil(k.size / max_points)))
    k, j, i = k[::stride], j[::stride], i[::stride]
    pts = roi.ijk_to_ct(np.column_stack([i, j, k]).astype(np.float64)) if k.size else \
        np.zeros((0, 3))
    lo = np.zeros(3)
    hi = np.array([ni - 1, nj - 1, nk - 1], dtype=np.float64)
    corners_ijk = np.array([[x, y, z] for z in (lo[2], hi[2]) for y in (lo[1], hi[1])
                            for x in (lo[0], hi[0])])
    return RoiModel(vol, roi.ijk_to_ct(corners_ijk), pts, weight[k, j, i].astype(np.float64))
