"""The voxel canvas the phantom is painted on: coordinates, HU and tissue labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Canvas"]


@dataclass
class Canvas:
    """Axis-aligned voxel grid in CT mm (identity direction) with HU and label arrays.

    ``x``, ``y``, ``z`` are the voxel-center coordinates along i, j, k (mm, float32);
    ``hu`` (float32) and ``labels`` (uint8) are indexed ``[k, j, i]``.
    """

    x: NDArray[np.float32]
    y: NDArray[np.float32]
    z: NDArray[np.float32]
    hu: NDArray[np.float32]
    labels: NDArray[np.uint8]

    @classmethod
    def create(cls, origin_mm, spacing_mm, shape_ijk, *, fill_hu: float) -> Canvas:
        """A canvas whose voxel (0, 0, 0) is at ``origin_mm`` (x, y, z) with ``spacing_mm``."""
        axes = [np.float32(o) + np.arange(n, dtype=np.float32) * np.float32(s)
                for o, s, n in zip(origin_mm, spacing_mm, shape_ijk, strict=True)]
        ni, nj, nk = shape_ijk
        return cls(axes[0], axes[1], axes[2],
                   np.full((nk, nj, ni), fill_hu, dtype=np.float32),
                   np.zeros((nk, nj, ni), dtype=np.uint8))

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along x, y, z (mm)."""
        return tuple(float(a[1] - a[0]) for a in (self.x, self.y, self.z))  # type: ignore

    def box(self, lo_mm, hi_mm):
        """Index slices ``(sk, sj, si)`` and broadcast coordinates ``(x, y, z)`` of the voxels
        inside the CT-mm box ``lo..hi``; ``None`` when the box misses the grid."""
        sl = []
        for axis, lo, hi in zip((self.x, self.y, self.z), lo_mm, hi_mm, strict=True):
            a = int(np.searchsorted(axis, lo, side="left"))
            b = int(np.searchsorted(axis, hi, side="right"))
            if b - a < 1:
                return None
            sl.append(slice(a, b))
        si, sj, sk = sl
        x = self.x[si][None, None, :]
        y = self.y[sj][None, :, None]
        z = self.z[sk][:, None, None]
        return (sk, sj, si), (x, y, z)
