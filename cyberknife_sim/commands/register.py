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
    p.add_argument("--target", help="target x,y,z in CT mm (default: the scene's target; "
                   "required with --ct)")
    p.set_defaults(func=run)


def _parse_target(text: str) -> np.ndarray:
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or not np.all(np.isfinite(values)):
        raise InputError(f"--target {text!r}: expected three numbers x,y,z (CT mm)")
    return np.array(values)


def read_live_image(path: str | Path) -> np.ndarray:
    """Read one live image: ``.npy`` (float line integrals) or 16-bit ``.png``/``.tif(f)``.

    Raises
    ------
    InputError
        Missing file, unknown suffix, unreadable or not a 2-D single-channel image.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image file not found")
    suffix = path.suffix.lower()
    if suffix not in _IMAGE_SUFFIXES:
        raise InputError(f"{path}: unsupported image type (use one of {_IMAGE_SUFFIXES})")
    if suffix == ".npy":
        try:
            img = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read .npy ({exc})") from exc
        if not np.issubdtype(img.dtype, np.number):
            raise InputError(f"{path}: expected a numeric array (got dtype {img.dtype})")
    else:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise InputError(f"{path}: cannot read image")
        if img.dtype != np.uint16:
            raise InputError(f"{path}: expected a 16-bit grayscale image (got {img.dtype})")
    if img.ndim != 2:
        raise InputError(f"{path}: expected a 2-D single-channel image (got shape {img.shape})")
    return img


def run(args: argparse.Namespace) -> int:
    """Build the registration for the scene, register the pair, print the JSON."""
    from ..anatomy import load_patient, planned_room_from_ct, read_ct
    from ..imaging import XrayModel, imaging_pair, load_geometry_json
    from ..registration import Registration2D3D
    from ..scene import load_scene

    scene = load_scene(args.scene)
    images = [read_live_image(p) for p in args.images]
    imaging = scene.room.imaging
    if args.geometry:
        views, meta = load_geometry_json(args.geometry)
        if len(views) != 2:
            raise InputError(f"{args.geometry}: expected 2 views (got {len(views)})")
        mu = float(meta.get("mu_water_per_mm", imaging.mu_water_per_mm))
    else:
        views, mu = imaging_pair(imaging), imaging.mu_water_per_mm
    for path, img, view in zip(args.images, images, views, strict=True):
        if img.shape != view.shape:
            raise InputError(f"{path}: image shape {img.shape} does not match view "
                             f"{view.name}'s detector {view.shape}")
    if args.ct:
        if not args.target:
            raise InputError("--target x,y,z (CT mm) is required with --ct")
        volume = read_ct(args.ct)
        target = _parse_target(args.target)
    else:
        patient = load_patient(scene)
        volume = patient.volume
        target = _parse_target(args.target) if args.target else patient.target_ct_mm
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
