"""DICOM RT Structure Set → voxel masks on a CT grid (pydicom + an even-odd scanline fill).

Why not ``cv2.fillPoly``: it fills every pixel the outline touches, so a 20-pixel-radius
circle comes out 5.6 % too large (1327 px for π r² = 1257; measured). The scanline fill
here keeps a pixel when its centre is inside (the even-odd rule, half-open in y), so a
contour's area is unbiased; it agrees with ``matplotlib.path.Path.contains_points``
(tested).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..anatomy.volume import Volume
from ..errors import InputError

__all__ = ["fill_even_odd", "read_rtstruct_masks"]


def fill_even_odd(polygons: list[NDArray[np.float64]], shape: tuple[int, int]
                  ) -> NDArray[np.bool_]:
    """Fill closed polygons on a pixel grid by the even-odd rule.

    Parameters
    ----------
    polygons : list of ndarray, shape (n, 2)
        Vertices ``(x, y)`` = (column, row) in pixel units, pixel centres at integers; each
        polygon is closed implicitly. Overlaps cancel (a polygon inside another is a hole).
    shape : tuple of int
        ``(rows, cols)`` of the output.

    Returns
    -------
    ndarray of bool, shape ``shape``
        True where the pixel centre is inside (a centre exactly on a left edge is inside).
    """
    nrow, ncol = shape
    edges = [np.stack([p, np.roll(p, -1, axis=0)], axis=1) for p in polygons if len(p) >= 3]
    if not edges:
        return np.zeros(shape, dtype=bool)
    e = np.concatenate(edges)  # (E, 2 ends, 2 coords)
    (x0, y0), (x1, y1) = e[:, 0].T, e[:, 1].T
    keep = y0 != y1
    x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    ylo = np.clip(np.ceil(np.minimum(y0, y1)), 0, nrow).astype(np.int64)
    yhi = np.clip(np.ceil(np.maximum(y0, y1)), 0, nrow).astype(np.int64)  # rows ylo..yhi-1
    count = np.maximum(yhi - ylo, 0)
    total = int(count.sum())
    toggles = np.zeros((nrow, ncol + 1), dtype=np.int32)
    if total:
        edge = np.repeat(np.arange(len(count)), count)
        start = np.cumsum(count) - count
        row = ylo[edge] + (np.arange(total) - start[edge])
        x = x0[edge] + (row - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
        col = np.clip(np.ceil(x), 0, ncol).astype(np.int64)  # first pixel at or right of x
        np.add.at(toggles, (row, col), 1)
    return (np.cumsum(toggles[:, :ncol], axis=1) % 2).astype(bool)


def _closed_contours(roi_contour, path: Path) -> list[NDArray[np.float64]]:
    out = []
    for c in getattr(roi_contour, "ContourSequence", []) or []:
        if str(getattr(c, "ContourGeometricType", "")).upper() != "CLOSED_PLANAR":
            continue
        try:
            pts = np.asarray([float(v) for v in c.ContourData], dtype=np.float64)
        except (AttributeError, TypeError, ValueError):
            raise InputError(f"{path}: a contour of ROI {roi_contour.ReferencedROINumber} has "
                             "no readable ContourData") from None
        if pts.size < 9 or pts.size % 3 or not np.all(np.isfinite(pts)):
            raise InputError(f"{path}: a contour of ROI {roi_contour.ReferencedROINumber} "
                             f"has {pts.size} ContourData values (need 3 per point, >= 3 points)")
        out.append(pts.reshape(-1, 3))
    return out


def _rasterise(contours: list[NDArray[np.float64]], ct: Volume, name: str,
               path: Path) -> NDArray[np.bool_]:
    """One ROI's contours (LPS mm) → mask on ``ct``: each slice takes the contour plane
    nearest to it, within half the ROI's plane spacing (at least half a slice)."""
    nk, nj, ni = ct.shape
    mask = np.zeros(ct.shape, dtype=bool)
    ijk = [ct.ct_to_ijk(c) for c in contours]
    k_of = np.array([c[:, 2].mean() for c in ijk])
    spread = max(float(np.ptp(c[:, 2])) for c in ijk)
    if spread > 0.5:
        raise InputError(f"{path}: ROI {name!r} has a contour that is not in a CT slice plane "
                         f"(it spans {spread:.2f} slices)")
    planes = np.unique(np.round(k_of, 3))
    step = float(np.median(np.diff(planes))) if len(planes) > 1 else 1.0
    reach = max(0.5, 0.5 * step) + 1e-6
    ks = np.arange(max(0, int(np.ceil(planes[0] - reach))),
                   min(nk, int(np.floor(planes[-1] + reach)) + 1))
    for k in ks:
        nearest = planes[np.argmin(np.abs(planes - k))]
        if abs(nearest - k) > reach:
            continue
        on_plane = [c[:, :2] for c, kc in zip(ijk, k_of, strict=True)
                    if abs(round(kc, 3) - nearest) < 1e-9]
        mask[k] = fill_even_odd(on_plane, (nj, ni))
    return mask


def read_rtstruct_masks(path: str | Path, ct: Volume) -> dict[str, NDArray[np.bool_]]:
    """Every ROI with closed contours in an RTSTRUCT, as a mask on ``ct``'s grid.

    Parameters
    ----------
    path : str or Path
        A DICOM RT Structure Set file (contours in LPS mm, the CT's frame of reference).
    ct : Volume
        The CT the contours were drawn on; slice planes are its k = const planes.

    Returns
    -------
    dict of str to ndarray of bool, shape ``ct.shape``
        ROI name (StructureSetROISequence.ROIName) → mask.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: RTSTRUCT file not found")
    try:
        ds = pydicom.dcmread(str(path))
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a readable DICOM file ({exc})") from None
    if str(getattr(ds, "Modality", "")).upper() != "RTSTRUCT":
        raise InputError(f"{path}: not an RT Structure Set (Modality "
                         f"{getattr(ds, 'Modality', 'missing')!r})")
    names = {int(r.ROINumber): str(r.ROIName).strip()
             for r in getattr(ds, "StructureSetROISequence", []) or []}
    masks: dict[str, NDArray[np.bool_]] = {}
    for rc in getattr(ds, "ROIContourSequence", []) or []:
        number = int(rc.ReferencedROINumber)
        name = names.get(number, f"ROI {number}")
        contours = _closed_contours(rc, path)
        if not contours:
            continue
        if name in masks:
            raise InputError(f"{path}: ROI name {name!r} is used twice")
        masks[name] = _rasterise(contours, ct, name, path)
    if not masks:
        raise InputError(f"{path}: no ROI with closed planar contours")
    return masks
