"""``cksim xray --scene SCENE --out DIR [--pose tx,ty,tz,rx,ry,rz] [--seed N]
[--breath-level L]``.

A simulated live kV pair at the pose, made as the scene's ``room.imaging.live_images`` says:

* ``realistic`` (default): the 4D truth patient at breath level ``L`` (0 exhale, 1 an
  average inhale; the target's vertebra at exhale) imaged by its own projector and the
  polyenergetic detector (``imaging.xrayphysics``); ``<view>.png`` holds the raw 16-bit
  counts, ``<view>.npy`` the flat-field corrected log ``−ln((I − dark)/(flood − dark))``.
* ``ideal`` (ablation): DRR line integrals of the planning CT through the simple detector
  model of :class:`~cyberknife_sim.imaging.XrayModel`; ``<view>.npy`` is
  ``−ln(I / open_field_counts)``.

Same layout as ``cksim drr`` (``geometry.json`` holds the geometry, technique and seed).
"""

from __future__ import annotations

import argparse

import numpy as np

from ..errors import InputError
from .drr import add_common_arguments, render_scene, write_outputs


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``xray`` sub-command."""
    p = sub.add_parser("xray", help="simulate a live kV X-ray pair (noise, blur, scatter)",
                       description="Simulate a live orthogonal kV X-ray pair of the scene's "
                       "CT at a pose, with quantum noise, scatter, detector blur and 16-bit "
                       "quantization.")
    add_common_arguments(p)
    p.add_argument("--seed", type=int, help="noise seed, 0..2**63-1 (default: the "
                   "scene's simulation.seed)")
    p.add_argument("--breath-level", type=float, default=0.0,
                   help="breath level of the truth patient, 0 (exhale) .. 1 (average inhale), "
                   "up to 3; realistic live images only (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render, simulate and write the live pair; print one line per view; return 0."""
    level = float(args.breath_level)
    if not (np.isfinite(level) and 0.0 <= level <= 3.0):
        raise InputError(f"--breath-level must be within 0..3 (got {args.breath_level})")
    r = render_scene(args)  # checks --pose, --seed and --out before rendering
    seed = int(r["scene"].simulation.seed if args.seed is None else args.seed)
    rng = np.random.default_rng(seed)
    if r["scene"].room.imaging.live_images == "realistic":
        return _realistic(r, rng, seed, level)
    model = r["model"]
    counts = [model.simulate(li, rng) for li in r["line_integrals"]]
    estimates = [model.to_line_integrals(c) for c in counts]
    write_outputs(r, estimates, counts, {
        "image": {"kind": "xray", "open_field_counts": model.open_field_counts,
                  "png": "16-bit detector counts; line integral = -ln(I / open_field_counts)"},
        "xray": {**r["scene"].room.imaging.xray.model_dump(), "seed": seed,
                 "photons_per_pixel": model.photons_per_pixel}})
    for v, c in zip(r["views"], counts, strict=True):
        print(f"{r['out'] / (v.name + '.png')}: {v.shape[0]}x{v.shape[1]} counts "
              f"{int(c.min())}..{int(c.max())} (seed {seed})")
    return 0


def _realistic(r: dict, rng: np.random.Generator, seed: int, level: float) -> int:
    from ..simulation._live_chain import RealisticXrayChain

    scene = r["scene"]
    chain = RealisticXrayChain(scene)
    counts = chain.live_counts(r["pose"], np.zeros(3), level, rng=rng)
    estimates = [ph.to_line_integrals(c) for ph, c in zip(chain.physics, counts, strict=True)]
    write_outputs(r, estimates, counts, {
        "image": {"kind": "xray", "live_images": "realistic", "breath_level": level,
                  "png": "16-bit raw detector counts (gain/offset maps, dead pixels); "
                         "npy: flat-field corrected -ln((I - dark) / (flood - dark))"},
        "xray": {**scene.room.imaging.live.model_dump(), "seed": seed}})
    for v, c in zip(r["views"], counts, strict=True):
        print(f"{r['out'] / (v.name + '.png')}: {v.shape[0]}x{v.shape[1]} counts "
              f"{int(c.min())}..{int(c.max())} (realistic, breath level {level:g}, seed {seed})")
    return 0
