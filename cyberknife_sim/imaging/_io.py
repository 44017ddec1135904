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
import stat
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
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("views"), list) or not data["views"]:
        raise InputError(f"{path}: 'views' must be a non-empty list")
    views = tuple(_view_entry(path, i, entry) for i, entry in enumerate(data["views"]))
    meta = {k: v for k, v in data.items() if k != "views"}
    if "mu_water_per_mm" in meta:
        meta["mu_water_per_mm"] = _mu_water(path, meta["mu_water_per_mm"])
    ct = meta.get("ct")
    if isinstance(ct, dict) and "room_from_ct" in ct:
        m = _float_array(path, "ct.room_from_ct", ct["room_from_ct"])
        if m.shape != (4, 4):
            raise InputError(f"{path}: ct.room_from_ct must be 4x4 (got shape {m.shape})")
        meta["ct"] = {**ct, "room_from_ct": m}
    if isinstance(ct, dict) and isinstance(ct.get("path"), str):
        ct_path = Path(ct["path"])
        meta["ct"]["path"] = str(ct_path if ct_path.is_absolute() else path.parent / ct_path)
    return views, meta


MAX_GEOMETRY_BYTES = 16 * 2**20
"""Largest geometry.json read (bytes)."""


def _read_json(path: Path) -> Any:
    """Parse a regular, bounded-size UTF-8 JSON file; one-line InputError otherwise."""
    try:
        st = path.stat()
    except OSError as exc:
        raise InputError(f"{path}: cannot read geometry ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file")
    if st.st_size > MAX_GEOMETRY_BYTES:
        raise InputError(f"{path}: {st.st_size} bytes is too large for a geometry file")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read geometry ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (expected a JSON geometry file)") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply") from None


def _float_array(path: Path, key: str, value: Any) -> NDArray[np.float64]:
    """A finite float64 array from JSON lists; InputError naming ``key`` otherwise."""
    if isinstance(value, bool) or _has_bool(value):
        raise InputError(f"{path}: {key} must hold numbers (got a boolean)")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{path}: {key} must be a rectangular array of numbers "
                         f"(got {_short(value)})") from None
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{path}: {key} holds NaN or infinite values")
    return arr


def _has_bool(value: Any) -> bool:
    if isinstance(value, list):
        return any(_has_bool(v) for v in value)
    return isinstance(value, bool)


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value)[: limit + 1] if not isinstance(value, str) else repr(value[:limit])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mu_water(path: Path, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{path}: mu_water_per_mm must be a number in 1/mm (got "
                         f"{_short(value)})")
    mu = float(value)
    if not (np.isfinite(mu) and 0.0 < mu <= 1.0):
        raise InputError(f"{path}: mu_water_per_mm must be within (0, 1] 1/mm (got {mu:g})")
    return mu


def _view_entry(path: Path, i: int, entry: Any) -> ViewGeometry:
    """One ``views[i]`` entry, its stored projection matrix checked against its geometry."""
    if not isinstance(entry, dict):
        raise InputError(f"{path}: views[{i}] must be a mapping (got {_short(entry)})")
    try:
        view = ViewGeometry.from_dict(entry)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: views[{i}]: bad or missing key ({exc})") from None
    if "projection_matrix" not in entry:
        return view
    stored = _float_array(path, f"views[{i}].projection_matrix", entry["projection_matrix"])
    ref = view.projection_matrix
    if (stored.shape != (3, 4) or not np.abs(stored).max() > 0
            or not np.allclose(stored / np.abs(stored).max(), ref / np.abs(ref).max(),
                               atol=1e-6)):
        raise InputError(f"{path}: views[{i}].projection_matrix contradicts the detector "
                         "geometry given beside it")
    return view
