"""``cksim xray --scene SCENE --out DIR [--pose tx,ty,tz,rx,ry,rz] [--seed N]``.

A simulated live kV pair of the scene's CT at the pose: the DRR line integrals through the
detector model of :class:`~cyberknife_sim.imaging.XrayModel` (photon budget from kV/mAs,
scatter, Poisson noise, detector blur, electronic noise, 16-bit counts). Same layout as
``cksim drr``: ``<view>.png`` holds the 16-bit counts, ``<view>.npy`` their log transform
``−ln(I / open_field_counts)`` (float32), ``geometry.json`` the geometry, technique and seed.
"""

from __future__ import annotations

import argparse

import numpy as np

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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render, simulate and write the live pair; print one line per view; return 0."""
    r = render_scene(args)  # checks --pose, --seed and --out before rendering
    seed = int(r["scene"].simulation.seed if args.seed is None else args.seed)
    rng = np.random.default_rng(seed)
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
