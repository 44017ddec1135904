"""The ``drr`` / ``xray`` output layout: ``<view>.npy``, ``<view>.png``, ``geometry.json``.

``<view>.npy`` holds float32 line integrals ∫μ dl, ``(rows, cols)``, row 0 at the top.
``<view>.png`` is a 16-bit grayscale intensity image (detector counts; for ``drr`` the
noiseless ``open_field_counts · exp(−L)``), so ``L = −ln(I / open_field_counts)``.
``geometry.json`` has, per view, the 3×4 ``projection_matrix`` (homogeneous room mm →
homogeneous ``(col, row, 1)`` of pixel centers), ``source_room``, ``detector_center_room``,
``row_direction_room``, ``col_direction_room``, ``detector_shape`` ``[rows, cols]`` and
``pixel_spacing_mm``; plus ``mu_water_per_mm``, the CT path and ``room_from_ct``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ._geometry import ViewGeometry

__all__ = ["GEOMETRY_FORMAT", "load_geometry_json", "write_view_images", "write_geometry_json"]

GEOMETRY_FORMAT = "cksim-geometry/1"

CONVENTIONS = {
    "projection_matrix": "3x4; P @ (x, y, z, 1) in room mm = w * (col, row, 1) of pixel "
                         "centers, OpenCV (x, y) order, w > 0 in front of the source",
    "pixel_center": "detector_center_room + (col - (cols-1)/2) * pixel_spacing_mm * "
                    "col_direction_room + (row - (rows-1)/2) * pixel_spacing_mm * "
                    "row_direction_room",
    "default_axes": "rows run toward inferior (room -z, superior at the top); columns run "
                    "along (cos a, sin a, 0) for a source at angle a from vertical, so that "
                    "(col, row, beam) is right-handed (image seen from the source)",
    "room_frame": "origin at the imaging center; +x patient left, +y posterior (floor), "
                  "+z superior (DICOM LPS, supine head-first); mm",
    "line_integral": "sum of mu dl from the source to the pixel center, mu = mu_water * "
                     "max(0, 1 + HU/1000)",
    "png": "16-bit intensities I; line integral = -ln(I / open_field_counts)",
}


def write_view_images(out_dir: Path, views: Sequence[ViewGeometry],
                      line_integrals: Sequence[NDArray], intensities: Sequence[NDArray]) -> None:
    """Write ``<view>.npy`` (float32 line integrals) and ``<view>.png`` (16-bit) per view."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for view, li, img in zip(views, line_integrals, intensities, strict=True):
        if li.shape != view.shape or img.shape != view.shape:
            raise ValueError(f"view {view.name}: image shapes {li.shape}, {img.shape} differ "
                             f"from the detector {view.shape}")
        np.save(out_dir / f"{view.name}.npy", np.asarray(li, dtype=np.float32))
        png = np.clip(np.rint(img), 0, 65535).astype(np.uint16)
        if not cv2.imwrite(str(out_dir / f"{view.name}.png"), png):
            raise InputError(f"could not write {out_dir / (view.name + '.png')}")


def write_geometry_json(path: Path, views: Sequence[ViewGeometry], *, mu_water_per_mm: float,
                        ct_path: str | Path, room_from_ct: NDArray[np.float64],
                        extra: dict[str, Any] | None = None) -> None:
    """Write ``geometry.json`` (see the module docstring); ``extra`` keys are added on top."""
    data: dict[str, Any] = {
        "format": GEOMETRY_FORMAT,
        "conventions": CONVENTIONS,
        "views": [{**v.to_dict(), "line_integrals": f"{v.name}.npy", "image": f"{v.name}.png"}
                  for v in views],
        "mu_water_per_mm": float(mu_water_per_mm),
        "ct": {"path": str(ct_path), "room_from_ct": np.asarray(room_from_ct, float).tolist()},
    }
    data.update(extra or {})
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def load_geometry_json(path: str | Path) -> tuple[tuple[ViewGeometry, ...], dict[str, Any]]:
    """Read ``geometry.json`` back.

    Parameters
    ----------
    path : str or Path
        The file, or the folder containing it.

    Returns
    -------
    views : tuple of ViewGeometry
        In file order; each projection matrix is recomputed and checked against the stored
        one (1e-6 relative).
    meta : dict
        Everything else in the file (``mu_water_per_mm``, ``ct`` with ``path`` (a relative
        path is resolved against the file's folder) and ``room_from_ct`` as a 4×4 float64
        array, ``image.open_field_counts`` for the PNG's log transform, ...).

    Raises
    ------
    InputError
        If the file is missing, not JSON, or lacks or contradicts a required key (named).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "geometry.json"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read geometry ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("views"), list) or not data["views"]:
        raise InputError(f"{path}: 'views' must be a non-empty list")
    views = []
    for i, entry in enumerate(data["views"]):
        try:
            view = ViewGeometry.from_dict(entry)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: views[{i}]: bad or missing key ({exc})") from exc
        stored = np.asarray(entry.get("projection_matrix", view.projection_matrix), dtype=float)
        ref = view.projection_matrix
        if stored.shape != (3, 4) or not np.allclose(stored / np.abs(stored).max(),
                                                     ref / np.abs(ref).max(), atol=1e-6):
            raise InputError(f"{path}: views[{i}].projection_matrix contradicts the detector "
                             "geometry given beside it")
        views.append(view)
    meta = {k: v for k, v in data.items() if k != "views"}
    ct = meta.get("ct")
    if isinstance(ct, dict) and "room_from_ct" in ct:
        m = np.asarray(ct["room_from_ct"], dtype=np.float64)
        if m.shape != (4, 4):
            raise InputError(f"{path}: ct.room_from_ct must be 4x4 (got shape {m.shape})")
        meta["ct"] = {**ct, "room_from_ct": m}
    if isinstance(ct, dict) and isinstance(ct.get("path"), str):
        ct_path = Path(ct["path"])
        meta["ct"]["path"] = str(ct_path if ct_path.is_absolute() else path.parent / ct_path)
    return tuple(views), meta
