"""``cksim drr --scene SCENE --out DIR [--pose tx,ty,tz,rx,ry,rz]``.

Renders the scene's planning CT for both views of the imaging pair at the planned alignment
moved by the pose (mm, deg; DESIGN.md convention about the room origin) and writes, per
view, ``DIR/<view>.npy`` (float32 line integrals), ``DIR/<view>.png`` (16-bit noiseless
intensities ``65535 · exp(−L)``, the scale recorded as ``image.open_field_counts``) and
``DIR/geometry.json`` (projection matrices, sources, detector shape and pitch, μ_water, the
CT path, ``room_from_ct`` and ``renderer``: ``"fast"``, the shear-warp ``DrrRenderer``, or
``"exact"`` with ``--exact``, the Siddon tracer ``ExactDrrRenderer``, voxels as constant
boxes). For a phantom scene the CT is written to ``DIR/ct.nii.gz`` so that the output is
self-contained; a relative CT path in ``geometry.json`` is relative to that file's folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from . import _args

_PNG_FULL_SCALE = 65535.0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``drr`` sub-command."""
    p = sub.add_parser("drr", help="render the DRR pair of the scene's CT at a pose",
                       description="Render digitally reconstructed radiographs (line "
                       "integrals) of the scene's CT for both kV views.")
    add_common_arguments(p)
    p.add_argument("--exact", action="store_true",
                   help="render with the exact ray tracer (Siddon/Jacobs: the line integral "
                   "through the CT's voxels as constant boxes, one ray per pixel center; "
                   "several times slower) instead of the fast shear-warp renderer")
    p.set_defaults(func=run)


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """``--scene``, ``--out``, ``--pose`` (shared with ``cksim xray``)."""
    p.add_argument("--scene", required=True, help="scene YAML file")
    p.add_argument("--out", required=True, help="output folder (created, and checked "
                   "writable, before rendering)")
    p.add_argument("--pose", default="0,0,0,0,0,0",
                   help="anatomy motion tx,ty,tz,rx,ry,rz (mm, deg) about the room origin, "
                   "applied to the planned alignment; negative values as they are "
                   "(--pose -1.5,0,2,0,0,-3); |t| <= 1000 mm, |r| <= 180 deg "
                   "(default: 0,0,0,0,0,0)")


def parse_pose(text: str) -> np.ndarray:
    """Six comma-separated numbers → float64 (6,); InputError naming ``--pose`` otherwise
    (also for a translation beyond ±1000 mm or a rotation beyond ±180 deg)."""
    return _args.parse_pose(text, "--pose")


def render_scene(args: argparse.Namespace) -> dict[str, Any]:
    """Load the scene and patient, render both views; everything the writers need."""
    from ..anatomy import load_patient, write_volume
    from ..geometry import matrix_from_pose
    from ..imaging import DrrRenderer, XrayModel, imaging_pair
    from ..imaging._siddon import ExactDrrRenderer
    from ..scene import load_scene

    pose = parse_pose(args.pose)
    _args.check_seed(getattr(args, "seed", None))
    scene = load_scene(args.scene)
    out = _args.check_out_dir(args.out)
    patient = load_patient(scene)
    imaging = scene.room.imaging
    views = imaging_pair(imaging)
    room_from_ct = matrix_from_pose(pose) @ patient.planned_room_from_ct
    exact = bool(getattr(args, "exact", False))
    renderer_cls = ExactDrrRenderer if exact else DrrRenderer
    renderer = renderer_cls(patient.volume, views, mu_water_per_mm=imaging.mu_water_per_mm)
    line_integrals = renderer.render(room_from_ct)
    if scene.patient.uses_phantom:
        write_volume(patient.volume, out / "ct.nii.gz")
        ct_path: str = "ct.nii.gz"
    else:
        ct_path = str(Path(scene.patient.ct).resolve())
    model = XrayModel(imaging.xray, pixel_spacing_mm=views[0].pixel_spacing_mm)
    return {"scene": scene, "out": out, "pose": pose, "views": views,
            "room_from_ct": room_from_ct, "line_integrals": line_integrals, "ct_path": ct_path,
            "model": model, "target_ct_mm": patient.target_ct_mm,
            "renderer": "exact" if exact else "fast"}


PREVIEW_PERCENTILES = (0.5, 99.5)
"""Window of the 8-bit previews: these percentiles of each view's line integrals."""


def preview_8bit(line_integrals: np.ndarray) -> np.ndarray:
    """An 8-bit display image of a view, as a radiograph is read (more attenuation is
    brighter): line integrals windowed linearly between their ``PREVIEW_PERCENTILES``."""
    li = np.asarray(line_integrals, dtype=np.float64)
    finite = li[np.isfinite(li)]
    lo, hi = np.percentile(finite, PREVIEW_PERCENTILES) if finite.size else (0.0, 1.0)
    scale = 255.0 / max(hi - lo, 1e-12)
    return np.clip(np.rint((np.nan_to_num(li, nan=lo) - lo) * scale), 0, 255).astype(np.uint8)


def write_outputs(r: dict[str, Any], line_integrals, intensities, extra: dict) -> None:
    """Write the images, their 8-bit previews and ``geometry.json`` of
    :func:`render_scene`'s result."""
    import cv2

    from ..imaging import write_geometry_json, write_view_images

    write_view_images(r["out"], r["views"], line_integrals, intensities)
    for v, li in zip(r["views"], line_integrals, strict=True):
        path = r["out"] / f"{v.name}_preview.png"
        if not cv2.imwrite(str(path), preview_8bit(li)):
            raise InputError(f"could not write {path}")
    extra = {**extra, "preview": {
        "files": [f"{v.name}_preview.png" for v in r["views"]],
        "what": "8-bit display image for ordinary viewers: line integrals windowed between "
                f"their {PREVIEW_PERCENTILES[0]:g} and {PREVIEW_PERCENTILES[1]:g} percentiles, "
                "more attenuation brighter (as a radiograph is read)"}}
    imaging = r["scene"].room.imaging
    write_geometry_json(
        r["out"] / "geometry.json", r["views"], mu_water_per_mm=imaging.mu_water_per_mm,
        ct_path=r["ct_path"], room_from_ct=r["room_from_ct"],
        extra={"pose": r["pose"].tolist(), "binning": imaging.binning,
               "target_ct_mm": np.asarray(r["target_ct_mm"], float).tolist(),
               "scene": str(r["scene"].source) if r["scene"].source else None, **extra})


def run(args: argparse.Namespace) -> int:
    """Render and write the DRR pair; print one line per view; return 0."""
    r = render_scene(args)
    intensities = [_PNG_FULL_SCALE * np.exp(-li.astype(np.float64))
                   for li in r["line_integrals"]]
    write_outputs(r, r["line_integrals"], intensities, {
        "renderer": r["renderer"],
        "image": {"kind": "drr", "open_field_counts": _PNG_FULL_SCALE,
                  "png": "noiseless intensities 65535 * exp(-L), rounded (open field = "
                         "full scale)"}})
    for v, li in zip(r["views"], r["line_integrals"], strict=True):
        print(f"{r['out'] / (v.name + '.npy')}: {v.shape[0]}x{v.shape[1]} at "
              f"{v.pixel_spacing_mm:g} mm, line integral max {float(li.max()):.3f}")
    return 0
