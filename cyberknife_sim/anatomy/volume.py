"""The CT volume type: HU voxels stored ``[k, j, i]`` with a ``ct_from_ijk`` affine."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from ..errors import InputError
from ..geometry import apply_transform

__all__ = ["Volume"]


@dataclass(frozen=True, eq=False)
class Volume:
    """A CT volume in Hounsfield units with its geometry (read-only).

    Parameters
    ----------
    hu : ndarray, shape (nk, nj, ni)
        Voxel values in HU, indexed ``[k, j, i]`` (slice, row, column). Stored read-only.
    ct_from_ijk : array-like, shape (4, 4)
        Affine mapping voxel indices ``(i, j, k)`` to CT (DICOM LPS) millimetres. Columns
        0-2 are the i, j, k axis steps (their norms are the spacing); column 3 is the
        position of voxel (0, 0, 0).
    name : str
        Human-readable origin (file path or phantom preset).
    """

    hu: NDArray
    ct_from_ijk: NDArray[np.float64]
    name: str = ""
    _ijk_from_ct: NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        hu = np.asarray(self.hu)
        if hu.ndim != 3:
            raise InputError(f"volume {self.name or ''}: expected a 3-D array, got {hu.ndim}-D "
                             f"with shape {hu.shape}".replace("volume :", "volume:"))
        if min(hu.shape) < 2:
            raise InputError(f"volume {self.name}: every axis needs at least 2 voxels "
                             f"(got shape {hu.shape})")
        a = np.array(self.ct_from_ijk, dtype=np.float64)
        if a.shape != (4, 4) or not np.all(np.isfinite(a)):
            raise InputError(f"volume {self.name}: ct_from_ijk must be a finite 4x4 matrix "
                             f"(got shape {a.shape})")
        if abs(np.linalg.det(a[:3, :3])) < 1e-9:
            raise InputError(f"volume {self.name}: ct_from_ijk is singular")
        hu = hu.view()
        hu.flags.writeable = False
        a.flags.writeable = False
        inv = np.linalg.inv(a)
        inv.flags.writeable = False
        object.__setattr__(self, "hu", hu)
        object.__setattr__(self, "ct_from_ijk", a)
        object.__setattr__(self, "_ijk_from_ct", inv)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(nk, nj, ni)``."""
        return tuple(self.hu.shape)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> NDArray[np.float64]:
        """Voxel spacing along i, j, k (mm), shape (3,)."""
        return np.linalg.norm(self.ct_from_ijk[:3, :3], axis=0)

    @property
    def ijk_from_ct(self) -> NDArray[np.float64]:
        """Inverse affine: CT mm → voxel indices (i, j, k)."""
        return self._ijk_from_ct

    def ijk_to_ct(self, ijk: ArrayLike) -> NDArray[np.float64]:
        """Voxel index coordinates ``(i, j, k)`` (shape (3,) or (n, 3)) → CT mm."""
        return apply_transform(self.ct_from_ijk, ijk)

    def ct_to_ijk(self, points_ct: ArrayLike) -> NDArray[np.float64]:
        """CT mm (shape (3,) or (n, 3)) → fractional voxel indices ``(i, j, k)``."""
        return apply_transform(self._ijk_from_ct, points_ct)

    def corners_ct(self) -> NDArray[np.float64]:
        """The 8 corner voxel centers in CT mm, shape (8, 3)."""
        nk, nj, ni = self.shape
        ijk = np.array([[i, j, k] for k in (0, nk - 1) for j in (0, nj - 1) for i in (0, ni - 1)],
                       dtype=np.float64)
        return self.ijk_to_ct(ijk)

    def contains_ct(self, points_ct: ArrayLike, *, margin_vox: float = 0.0) -> NDArray[np.bool_]:
        """Whether CT-mm points lie inside the voxel grid (by ``margin_vox`` voxels)."""
        ijk = np.atleast_2d(self.ct_to_ijk(points_ct))
        hi = np.array(self.shape[::-1], dtype=np.float64) - 1.0 - margin_vox
        return np.all((ijk >= margin_vox) & (ijk <= hi), axis=1)

    def crop(self, lo_ijk: ArrayLike, hi_ijk: ArrayLike) -> Volume:
        """Sub-volume of voxels ``lo <= (i, j, k) < hi`` (clipped to the grid), same CT frame."""
        lo = np.clip(np.asarray(lo_ijk, dtype=int), 0, np.array(self.shape[::-1]))
        hi = np.clip(np.asarray(hi_ijk, dtype=int), 0, np.array(self.shape[::-1]))
        if np.any(hi - lo < 2):
            raise InputError(f"volume {self.name}: crop region {lo.tolist()}..{hi.tolist()} "
                             "is empty or thinner than 2 voxels")
        hu = self.hu[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
        a = self.ct_from_ijk.copy()
        a[:3, 3] = self.ijk_to_ct(lo.astype(np.float64))
        return Volume(np.ascontiguousarray(hu), a, name=self.name)

    def crop_around(self, center_ct: ArrayLike, half_size_mm: ArrayLike) -> Volume:
        """Axis-aligned (in voxel space) crop covering a box of half size (mm) around a point."""
        c = self.ct_to_ijk(center_ct)
        half_vox = np.asarray(half_size_mm, dtype=np.float64) / self.spacing_mm
        return self.crop(np.floor(c - half_vox), np.ceil(c + half_vox) + 1)

    def resample(self, *, spacing_mm: ArrayLike | None = None,
                 ct_from_ijk: ArrayLike | None = None, shape: tuple[int, int, int] | None = None,
                 order: int = 1, fill_hu: float = -1000.0) -> Volume:
        """Resample onto another voxel grid in the same CT frame.

        Parameters
        ----------
        spacing_mm : array-like, shape (3,), optional
            New spacing along i, j, k (mm), keeping the origin, direction and extent (the
            grid is cut to whole voxels). Give this or ``ct_from_ijk`` + ``shape``.
        ct_from_ijk : array-like, shape (4, 4), optional
            Target grid affine (voxel (i, j, k) → CT mm).
        shape : tuple of int, optional
            Target array shape ``(nk, nj, ni)``; required with ``ct_from_ijk``.
        order : {0, 1, 3}
            Interpolation order (nearest, trilinear, cubic spline).
        fill_hu : float
            Value outside this volume (HU).

        Returns
        -------
        Volume
            Same dtype as this one (integers rounded and clipped).
        """
        if order not in (0, 1, 3):
            raise ValueError(f"order must be one of 0, 1, 3 (got {order!r})")
        if (spacing_mm is None) == (ct_from_ijk is None):
            raise ValueError("give exactly one of spacing_mm or ct_from_ijk (with shape)")
        if spacing_mm is not None:
            new = np.asarray(spacing_mm, dtype=np.float64)
            if new.shape != (3,) or np.any(~np.isfinite(new)) or np.any(new <= 0):
                raise ValueError(f"spacing_mm must be 3 positive numbers (got {new.tolist()})")
            old = self.spacing_mm
            dst = self.ct_from_ijk.copy()
            dst[:3, :3] = self.ct_from_ijk[:3, :3] / old * new
            n_ijk = np.floor((np.array(self.shape[::-1]) - 1) * old / new + 1e-9).astype(int) + 1
            out_shape = tuple(int(v) for v in n_ijk[::-1])
        else:
            if shape is None or len(shape) != 3 or min(shape) < 2:
                raise ValueError(f"shape must be (nk, nj, ni) with every axis >= 2 (got {shape})")
            dst = np.array(ct_from_ijk, dtype=np.float64)
            if dst.shape != (4, 4):
                raise ValueError(f"ct_from_ijk must be 4x4 (got shape {dst.shape})")
            out_shape = tuple(int(v) for v in shape)
        src_from_dst = self._ijk_from_ct @ dst  # (i, j, k) order
        perm = np.eye(4)[[2, 1, 0, 3]]
        m = perm @ src_from_dst @ perm  # (k, j, i) order for ndimage
        data = self.hu.astype(np.float32)
        out = ndimage.affine_transform(data, m[:3, :3], offset=m[:3, 3], output_shape=out_shape,
                                       order=order, mode="constant", cval=float(fill_hu),
                                       prefilter=order > 1)
        if np.issubdtype(self.hu.dtype, np.integer):
            info = np.iinfo(self.hu.dtype)
            out = np.clip(np.rint(out), info.min, info.max).astype(self.hu.dtype)
        return Volume(out, dst, name=self.name)

    def mu_per_mm(self, mu_water_per_mm: float) -> NDArray[np.float32]:
        """Linear attenuation (1/mm) from HU: μ_water · max(0, 1 + HU/1000), float32."""
        hu = self.hu.astype(np.float32)
        return (np.float32(mu_water_per_mm) * np.maximum(0.0, 1.0 + hu / 1000.0)).astype(
            np.float32)
