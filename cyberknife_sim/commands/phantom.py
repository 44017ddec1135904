"""``cksim phantom --out CT.nii.gz [--scene SCENE] [--preset NAME] [--seed N]``.

Writes the scene's planning CT (HU, int16 for the phantom, with its LPS geometry) and,
beside it, ``CT.json``: the phantom's ground truth (target, vertebra body centers and
labels, cord and canal centerlines, all in CT mm) or, for a CT read from a file, the
target only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._args import check_out_file, check_seed

_SUFFIXES = (".nii.gz", ".nii", ".mha")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``phantom`` sub-command."""
    p = sub.add_parser(
        "phantom", help="write the scene's CT (phantom or file) and its ground-truth JSON",
        description="Write the planning CT of a scene (default: the built-in phantom) as "
        ".nii/.nii.gz/.mha, and a JSON with the ground truth in CT mm beside it. For a "
        "phantom scene with realistic live images (the default) that CT is the simulated "
        "acquisition of the 4D truth patient (patient.planning_ct); with --preset, or "
        "live_images: ideal, the painted phantom itself.")
    p.add_argument("--out", required=True, help="output CT file (.nii.gz, .nii or .mha); its "
                   "folder is created, and checked writable, before any work")
    p.add_argument("--scene", help="scene YAML (default: built-in defaults)")
    p.add_argument("--preset", help="phantom preset name from phantoms/ (overrides the scene)")
    p.add_argument("--seed", type=int, help="phantom seed (default: the scene's "
                   "simulation.seed)")
    p.add_argument("--labels", help="also write the tissue label map to this file")
    p.set_defaults(func=run)


def _json_path(out: Path) -> Path:
    name = out.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return out.with_name(name[: -len(suffix)] + ".json")
    return out.with_name(name + ".json")


def run(args: argparse.Namespace) -> int:
    """Generate or read the CT and write it with its JSON; return 0."""
    from ..anatomy import Volume, load_patient, make_phantom, write_volume
    from ..scene import load_scene, scene_from_dict

    check_seed(args.seed)
    scene = load_scene(args.scene) if args.scene else scene_from_dict({})
    out = check_out_file(args.out, "--out", suffixes=_SUFFIXES)
    if args.labels is not None:
        check_out_file(args.labels, "--labels", suffixes=_SUFFIXES)
    seed = int(scene.simulation.seed if args.seed is None else args.seed)
    acquired = (not args.preset and scene.patient.uses_phantom
                and scene.room.imaging.live_images == "realistic")
    if acquired:  # the planning CT the scene registers to: an acquisition of the truth
        scene = scene_from_dict({**scene.model_dump(mode="json"),
                                 "simulation": {**scene.simulation.model_dump(mode="json"),
                                                "seed": seed}}, origin="--scene/--seed")
        ph = make_phantom(scene.patient.phantom or "default", seed=seed)
        patient = load_patient(scene)
        write_volume(patient.volume, out)
        info = ph.truth.to_dict()
        info["planning_ct"] = {**scene.patient.planning_ct.model_dump(mode="json"),
                               "what": "simulated acquisition of the 4D truth patient "
                                       "(room.imaging.live_images: realistic)",
                               "target_ct_mm": np.round(patient.target_ct_mm, 4).tolist()}
        if args.labels is not None:
            if patient.labels is None:
                raise InputError("--labels: the planning CT's grid differs from the painted "
                                 "phantom's, which has the labels")
            write_volume(Volume(patient.labels, patient.volume.ct_from_ijk, name="labels"),
                         Path(args.labels))
        what = f"planning CT of phantom '{ph.truth.preset}' seed {seed}"
    elif args.preset or scene.patient.uses_phantom:
        ph = make_phantom(args.preset or scene.patient.phantom or "default", seed=seed)
        write_volume(ph.volume, out)
        info = ph.truth.to_dict()
        if scene.patient.target_ct_mm is not None and not args.preset:
            info["scene_target_ct_mm"] = list(scene.patient.target_ct_mm)
        if args.labels is not None:
            write_volume(Volume(ph.labels, ph.volume.ct_from_ijk, name="labels"),
                         Path(args.labels))
        what = f"phantom '{ph.truth.preset}' seed {seed}"
    else:
        if args.labels is not None:
            raise InputError("--labels: a CT read from a file has no label map")
        patient = load_patient(scene)
        write_volume(patient.volume, out)
        info = {"frame": "CT (DICOM LPS), mm", "source": str(scene.patient.ct),
                "target": {"center_ct_mm": np.round(patient.target_ct_mm, 4).tolist(),
                           "radius_mm": patient.target_radius_mm}}
        what = f"CT {scene.patient.ct}"
    info["ct_file"] = out.name
    json_path = _json_path(out)
    json_path.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} and {json_path} ({what})")
    return 0
