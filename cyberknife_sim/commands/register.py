"""``cksim register --scene SCENE --images A B [--geometry G] [--ct CT] [--target x,y,z]``.

Registers a live X-ray pair (``.npy`` line integrals, or 16-bit PNG/TIFF detector counts)
to the planning CT and prints one JSON object on stdout: ``pose`` (tx, ty, tz mm, rx, ry, rz
deg; DESIGN.md convention), ``accepted``, ``reason``, ``quality``, ``elapsed_ms`` and
``stage_ms``. Exit 0 when accepted, 3 when the registration is judged to have failed (the
JSON is still printed), 2 on bad input (missing files, image shape not matching the
geometry, target outside the CT).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from ..anatomy._ctfile import native_stderr_quiet
from ..errors import InputError, RegistrationFailed

_IMAGE_SUFFIXES = (".npy", ".png", ".tif", ".tiff")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``register`` sub-command."""
    p = sub.add_parser(
        "register", help="6-DoF spine registration of a live X-ray pair to the planning CT",
        description="Register a live orthogonal X-ray pair to the planning CT (fiducial-free, "
        "spine). Prints one JSON object; exit 3 if the registration failed, 2 on bad input.")
    p.add_argument("--scene", required=True, help="scene YAML (CT, target, imaging geometry)")
    p.add_argument("--images", nargs=2, required=True, metavar=("A", "B"),
                   help="live images in view order: .npy line integrals or 16-bit PNG/TIFF")
    p.add_argument("--geometry", help="geometry.json of the images (default: the scene's "
                   "imaging pair)")
    p.add_argument("--ct", help="planning CT file or DICOM folder (default: the scene's)")
    p.add_argument("--target-frame", choices=("lps", "ras", "ijk"), default="lps",
                   help="frame of --target: lps (DICOM patient mm, default), ras (mm as 3D "
                   "Slicer shows them) or ijk (0-based voxel index of the CT)")
    p.add_argument("--target", help="target x,y,z in CT mm (default: the scene's target; "
                   "required with --ct)")
    p.set_defaults(func=run)


def _target_lps(value: np.ndarray, frame: str, volume) -> np.ndarray:
    """``--target`` in CT mm (LPS) from the frame it was given in: ``lps`` (DICOM patient
    mm), ``ras`` (mm as 3D Slicer shows: (R, A, S) = (-x, -y, z)) or ``ijk`` (a 0-based
    voxel index of the CT as read)."""
    if frame == "ras":
        return np.array([-value[0], -value[1], value[2]])
    if frame == "ijk":
        return (np.asarray(volume.ct_from_ijk, dtype=np.float64) @ np.append(value, 1.0))[:3]
    return value


def _parse_target(text: str) -> np.ndarray:
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or not np.all(np.isfinite(values)):
        raise InputError(f"--target {text!r}: expected three numbers x,y,z (CT mm)")
    return np.array(values)


MAX_IMAGE_PIXELS = 8192 * 8192
"""Largest live image read (pixels)."""


def _load_npy(path: Path) -> np.ndarray:
    """A ``.npy`` of real float line integrals (header checked before the data is read)."""
    try:
        mm = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "empty or cut-short file"
        raise InputError(f"{path}: cannot read .npy ({reason})") from None
    if not isinstance(mm, np.ndarray):
        raise InputError(f"{path}: expected one array in the .npy file")
    if mm.dtype.kind != "f":
        raise InputError(f"{path}: expected float line integrals (got dtype {mm.dtype}); "
                         "detector counts go in a 16-bit PNG/TIFF")
    if mm.ndim == 2 and mm.size > MAX_IMAGE_PIXELS:
        raise InputError(f"{path}: {mm.shape[0]}x{mm.shape[1]} pixels is more than the "
                         f"{MAX_IMAGE_PIXELS} a live image may have")
    return np.array(mm)


def read_live_image(path: str | Path) -> np.ndarray:
    """Read one live image: ``.npy`` (float line integrals) or 16-bit ``.png``/``.tif(f)``.

    Integer ``.npy`` arrays are refused (an integer image means detector counts, which
    come as 16-bit PNG/TIFF); so are NaN or infinite pixels and empty images. A blank
    (constant, e.g. all-zero) image is read: the registration then reports that it shows
    no structure and the command exits 3 with its JSON.

    Raises
    ------
    InputError
        Missing file, not a regular file, unknown suffix, unreadable, not a 2-D
        single-channel image, a wrong dtype or non-finite pixels.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: image file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    suffix = path.suffix.lower()
    if suffix not in _IMAGE_SUFFIXES:
        raise InputError(f"{path}: unsupported image type (use one of {_IMAGE_SUFFIXES})")
    if suffix == ".npy":
        img = _load_npy(path)
    else:
        with native_stderr_quiet():  # libpng / libtiff print their errors on fd 2
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise InputError(f"{path}: cannot read image (damaged or not a {suffix} file)")
        if img.dtype != np.uint16:
            raise InputError(f"{path}: expected a 16-bit grayscale image (got {img.dtype})")
    if img.ndim != 2:
        raise InputError(f"{path}: expected a 2-D single-channel image (got shape {img.shape})")
    if img.size == 0:
        raise InputError(f"{path}: empty image (shape {img.shape})")
    bad = ~np.isfinite(img)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(f"{path}: {int(bad.sum())} pixel(s) are NaN or infinite (first at "
                         f"row {r}, column {c})")
    return img


def _explicit(name: str, value: str | None) -> str | None:
    """An option given on the command line must not be an empty string."""
    if value is not None and not value.strip():
        raise InputError(f"{name} '': empty value (leave the option out to use the scene's)")
    return value


def run(args: argparse.Namespace) -> int:
    """Build the registration for the scene, register the pair, print the JSON."""
    from ..anatomy import load_patient, planned_room_from_ct, read_ct
    from ..imaging import XrayModel, imaging_pair, load_geometry_json
    from ..registration import Registration2D3D
    from ..scene import load_scene

    geometry, ct = _explicit("--geometry", args.geometry), _explicit("--ct", args.ct)
    target_text = _explicit("--target", args.target)
    scene = load_scene(args.scene)
    images = [read_live_image(p) for p in args.images]
    imaging = scene.room.imaging
    if geometry is not None:
        views, meta = load_geometry_json(geometry)
        if len(views) != 2:
            raise InputError(f"{geometry}: expected 2 views (got {len(views)})")
        mu = float(meta.get("mu_water_per_mm", imaging.mu_water_per_mm))
    else:
        views, mu = imaging_pair(imaging), imaging.mu_water_per_mm
    for path, img, view in zip(args.images, images, views, strict=True):
        if img.shape != view.shape:
            raise InputError(f"{path}: image shape {img.shape} does not match view "
                             f"{view.name}'s detector {view.shape}")
    if ct is not None:
        if target_text is None:
            raise InputError("--target x,y,z (CT mm) is required with --ct")
        volume = read_ct(ct)
        target = _target_lps(_parse_target(target_text), args.target_frame, volume)
    else:
        patient = load_patient(scene)
        volume = patient.volume
        target = patient.target_ct_mm if target_text is None else \
            _target_lps(_parse_target(target_text), args.target_frame, volume)
    if not bool(volume.contains_ct(target)[0]):
        raise InputError(f"target {np.round(target, 1).tolist()} (CT mm) lies outside the CT "
                         f"{volume.name}")
    xray = XrayModel(imaging.xray, pixel_spacing_mm=views[0].pixel_spacing_mm)
    reg = Registration2D3D(volume, views, target_ct_mm=target, mu_water_per_mm=mu,
                           planned_room_from_ct=planned_room_from_ct(target),
                           open_field_counts=xray.open_field_counts)
    result = reg.register(images)
    out = result.to_dict()
    out["pose_units"] = "tx, ty, tz mm; rx, ry, rz deg (room frame, about the room origin)"
    print(json.dumps(out, indent=2))
    if not result.accepted:
        raise RegistrationFailed(result.reason)
    return 0
