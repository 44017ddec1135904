"""``cksim validate SCENE``: check a scene file and what a run of it will read."""

from __future__ import annotations

import argparse

import numpy as np

from ..scene import Scene, load_scene


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``validate`` sub-command."""
    p = sub.add_parser(
        "validate", help="check a scene file; exit 2 with one line per problem",
        description="Validate a scene YAML file and what a run of it reads: the CT file "
        "(complete, finite, sane geometry) with the target inside it, a recorded trace (and "
        "that it lasts the simulation), a plan file. Prints 'ok' with what was checked and "
        "exits 0, or prints one line per problem and exits 2. A phantom is generated at run "
        "time and is only built here when the scene places the target on it.")
    p.add_argument("scene", help="scene YAML file")
    p.set_defaults(func=run)


def check_inputs(scene: Scene) -> list[str]:
    """Read the files a run of ``scene`` will read; return what was checked (one phrase
    each). Problems raise :class:`~cyberknife_sim.errors.CksimError` (one line)."""
    checked = []
    ps = scene.patient
    explicit_target = any(getattr(ps, k) is not None
                          for k in ("target_ct_mm", "target_ras_mm", "target_voxel"))
    if ps.ct is not None or explicit_target:
        from ..anatomy import load_patient

        probe = scene
        if ps.ct is None:  # the painted phantom has the planning CT's extent: no truth build
            probe = scene.model_copy(update={"room": scene.room.model_copy(update={
                "imaging": scene.room.imaging.model_copy(update={"live_images": "ideal"})})})
        patient = load_patient(probe)  # reads the CT, checks the target lies inside it
        v = patient.volume
        what = f"CT {v.name}" if ps.ct is not None else f"phantom '{ps.phantom}'"
        checked.append(f"{what} read ({'x'.join(str(n) for n in v.hu.shape[::-1])} voxels), "
                       f"target inside it")
    else:
        checked.append(f"phantom '{ps.phantom}' (generated at run time; target: its lesion)")
    if ps.ct_phases:
        checked.append(_check_phases(ps))
    if scene.motion.trace.file is not None:
        from ..motion import MotionTruth

        MotionTruth.from_scene(scene, np.random.default_rng(0))  # reads the trace, checks it
        checked.append(f"trace {scene.motion.trace.file.name} read, lasts the simulation")
    if scene.plan.file is not None:
        from ..plan import load_plan

        plan = load_plan(scene.plan.file)
        checked.append(f"plan {scene.plan.file.name} read ({len(plan.beams)} beams)")
    return checked


def run(args: argparse.Namespace) -> int:
    """Validate ``args.scene``; problems propagate as :class:`SceneError` / InputError
    (exit 2)."""
    scene = load_scene(args.scene)
    checked = check_inputs(scene)
    print(f"{args.scene}: ok (scene '{scene.name}'; {'; '.join(checked)})")
    return 0


def _check_phases(ps) -> str:
    """Read every 4D CT phase file; each must share the planning CT's grid (InputError)."""
    from ..anatomy import read_ct
    from ..errors import InputError

    ref = read_ct(ps.ct)
    for path in ps.ct_phases:
        v = read_ct(path)
        if v.shape != ref.shape or not np.allclose(v.ct_from_ijk, ref.ct_from_ijk, atol=1e-3):
            raise InputError(f"patient.ct_phases: {path} has another grid than the planning "
                             f"CT {ps.ct} (shape {v.shape} vs {ref.shape})")
    return f"{len(ps.ct_phases)} 4D CT phase files read (same grid as the planning CT)"
