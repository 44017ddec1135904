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
    inside_fraction : float
        Fraction (0-1) of the requested ROI box that lies inside the CT (1 unless the
        target is near the CT's edge and the box was clipped).
    core_inside_fraction : float
        The same for the core box of half size ``core_half_size_mm`` about the target (the
        treated vertebra).
    clipped_faces : list of str
        Box faces cut by the CT's edge (``"i-"``, ``"k+"``, …).
    """

    def __init__(self, volume: Volume, corners_ct: NDArray, points_ct: NDArray,
                 weights: NDArray, *, inside_fraction: float = 1.0,
                 core_inside_fraction: float = 1.0,
                 clipped_faces: list[str] | None = None) -> None:
        self.volume = volume
        self.corners_ct = corners_ct
        self.points_ct = points_ct
        self.weights = weights
        self.inside_fraction = float(inside_fraction)
        self.core_inside_fraction = float(core_inside_fraction)
        self.clipped_faces = list(clipped_faces or [])


def _taper(n: int, spacing_mm: float, taper_mm: float,
           taper_hi_mm: float | None = None) -> NDArray[np.float32]:
    """1-D weight: 0 at the ends rising as a raised cosine over ``taper_mm`` (low end) and
    ``taper_hi_mm`` (high end, default the same) to 1."""
    pos = np.arange(n, dtype=np.float64)
    out = np.ones(n, dtype=np.float64)
    for dist, width in ((pos * spacing_mm, taper_mm),
                        ((n - 1 - pos) * spacing_mm,
                         taper_mm if taper_hi_mm is None else taper_hi_mm)):
        if width > 0:
            out *= 0.5 - 0.5 * np.cos(np.pi * np.clip(dist / width, 0.0, 1.0))
    return out.astype(np.float32)


def _inside_fraction(volume: Volume, target_ijk: NDArray, half_vox: NDArray) -> float:
    """Fraction of the box ``target ± half`` (voxel units, axis-aligned in voxel space)
    that lies within the CT's voxel extent."""
    n = np.array(volume.shape[::-1], dtype=np.float64)  # (ni, nj, nk)
    lo, hi = target_ijk - half_vox, target_ijk + half_vox
    inside = np.clip(np.minimum(hi, n - 0.5) - np.maximum(lo, -0.5), 0.0, None)
    return float(np.prod(inside / np.maximum(hi - lo, 1e-9)))


def roi_model(volume: Volume, target_ct_mm: ArrayLike, *, half_size_mm: ArrayLike,
              mu_water_per_mm: float, content: DrrContent = "bone",
              bone_threshold_hu: float = 150.0, taper_mm: float = 12.0,
              edge_taper_mm: float = 4.0, core_half_size_mm: float = 15.0,
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
    edge_taper_mm : float
        Fade at a face where the CT's edge cut the box (a target near the edge; the box is
        then moved away from that edge by the cut amount, see the code): shorter,
        so that the bone next to the target, often all there is, keeps its weight.
    core_half_size_mm : float
        Half size of the core box about the target whose share inside the CT is reported
        (``core_inside_fraction``).
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
    target_ijk = volume.ct_to_ijk(target)
    half_vox = half / volume.spacing_mm
    inside = _inside_fraction(volume, target_ijk, half_vox)
    core = _inside_fraction(volume, target_ijk,
                            np.minimum(core_half_size_mm, half) / volume.spacing_mm)
    lo_req = np.floor(target_ijk - half_vox)
    hi_req = np.ceil(target_ijk + half_vox) + 1
    n_ijk = np.array(volume.shape[::-1])
    clip_lo, clip_hi = lo_req < 0, hi_req > n_ijk
    clipped = [f"{'ijk'[a]}-" for a in range(3) if clip_lo[a]] + \
        [f"{'ijk'[a]}+" for a in range(3) if clip_hi[a]]
    # a box cut by the CT's edge is moved away from the edge by the cut amount (as far as
    # the CT allows): the same length of spine, so as many vertebral levels as usual
    # disambiguate the level (the target then lies off-centre in the ROI)
    lo_box = lo_req - np.where(clip_hi, hi_req - n_ijk, 0)
    hi_box = hi_req + np.where(clip_lo, -lo_req, 0)
    roi = volume.crop(lo_box, hi_box)
    clip_lo, clip_hi = lo_box < 0, hi_box > n_ijk
    mu = roi.mu_per_mm(mu_water_per_mm)
    mu_thr = np.float32(mu_water_per_mm * max(0.0, 1.0 + bone_threshold_hu / 1000.0))
    excess = np.maximum(mu - mu_thr, 0.0)
    sp = roi.spacing_mm
    nk, nj, ni = mu.shape
    tapers = [_taper(n_ax, sp[a], edge_taper_mm if clip_lo[a] else taper_mm,
                     edge_taper_mm if clip_hi[a] else taper_mm)
              for a, n_ax in enumerate((ni, nj, nk))]
    w = tapers[2][:, None, None] * tapers[1][None, :, None] * tapers[0][None, None, :]
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
    return RoiModel(vol, roi.ijk_to_ct(corners_ijk), pts, weight[k, j, i].astype(np.float64),
                    inside_fraction=inside, core_inside_fraction=core, clipped_faces=clipped)
