"""The dose grid: an axis-aligned box of dose points in the CT frame (LPS mm)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError

__all__ = ["DoseGrid"]


@dataclass(frozen=True, eq=False)
class DoseGrid:
    """Dose points on a regular axis-aligned grid in the CT frame.

    Arrays on the grid are indexed ``[k, j, i]`` like a :class:`~cyberknife_sim.anatomy.
    Volume`; ``ct_from_ijk`` maps ``(i, j, k, 1)`` to CT mm (diagonal spacing, no rotation).

    Parameters
    ----------
    shape : tuple of int
        ``(nk, nj, ni)``.
    origin_ct_mm : array-like, shape (3,)
        CT position (x, y, z) of voxel (0, 0, 0), mm.
    spacing_mm : float
        Isotropic grid spacing (mm).
    """

    shape: tuple[int, int, int]
    origin_ct_mm: NDArray[np.float64]
    spacing_mm: float

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise InputError(f"dose grid: shape must be three positive sizes (got {self.shape})")
        origin = np.array(self.origin_ct_mm, dtype=np.float64).reshape(-1)
        if origin.shape != (3,) or not np.all(np.isfinite(origin)):
            raise InputError(f"dose grid: origin_ct_mm must be 3 finite numbers (got "
                             f"{self.origin_ct_mm!r})")
        if not (np.isfinite(self.spacing_mm) and self.spacing_mm > 0):
            raise InputError(f"dose grid: spacing_mm must be positive (got {self.spacing_mm})")
        origin.flags.writeable = False
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "origin_ct_mm", origin)
        object.__setattr__(self, "spacing_mm", float(self.spacing_mm))

    @classmethod
    def around(cls, lo_ct: ArrayLike, hi_ct: ArrayLike, spacing_mm: float) -> DoseGrid:
        """The smallest grid of ``spacing_mm`` whose points cover the box ``[lo_ct, hi_ct]``
        (CT mm), centred on the box."""
        lo = np.asarray(lo_ct, dtype=np.float64)
        hi = np.asarray(hi_ct, dtype=np.float64)
        if lo.shape != (3,) or hi.shape != (3,) or np.any(hi < lo):
            raise InputError(f"dose grid: need lo <= hi, 3 numbers each (got {lo}, {hi})")
        n = np.floor((hi - lo) / spacing_mm + 1e-9).astype(int) + 1
        center = 0.5 * (lo + hi)
        origin = center - 0.5 * (n - 1) * spacing_mm
        return cls((int(n[2]), int(n[1]), int(n[0])), origin, spacing_mm)

    @property
    def ct_from_ijk(self) -> NDArray[np.float64]:
        """Voxel index (i, j, k) → CT mm, shape (4, 4)."""
        m = np.eye(4)
        m[:3, :3] *= self.spacing_mm
        m[:3, 3] = self.origin_ct_mm
        return m

    @property
    def size(self) -> int:
        """Number of dose points."""
        return int(np.prod(self.shape))

    @property
    def voxel_cc(self) -> float:
        """Volume of one dose voxel (cm³)."""
        return self.spacing_mm ** 3 / 1000.0

    def axes_ct(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """CT coordinates along x (i), y (j) and z (k), mm."""
        nk, nj, ni = self.shape
        o, s = self.origin_ct_mm, self.spacing_mm
        return o[0] + s * np.arange(ni), o[1] + s * np.arange(nj), o[2] + s * np.arange(nk)

    def points_ct(self) -> NDArray[np.float64]:
        """Every dose point in CT mm, shape ``(nk * nj * ni, 3)``, in ``[k, j, i]`` C order
        (so ``dose.reshape(grid.shape)`` is the volume)."""
        x, y, z = self.axes_ct()
        zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
        return np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)

    def ijk_from_ct(self, points_ct: ArrayLike) -> NDArray[np.float64]:
        """Fractional voxel indices (i, j, k) of CT points (n, 3)."""
        p = np.asarray(points_ct, dtype=np.float64)
        return (p - self.origin_ct_mm) / self.spacing_mm
