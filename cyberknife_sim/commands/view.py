"""``cksim view SCENE``: the robot tracking a breathing target, in a GUI or saved as a GIF.

With ``--out FILE.gif`` the scene is rendered headlessly (PyBullet's TinyRenderer); without
it a PyBullet GUI window opens, which needs a display (a clear error otherwise).
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..robot import RobotWorld

from ..errors import InputError
from ..scene import load_scene
from ._args import check_number, check_out_file


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``view`` sub-command."""
    p = sub.add_parser("view", help="show the robot tracking a moving target (GUI or GIF)",
                       description="Move the linac over a few valid nodes while the target "
                       "breathes (10 mm, 4 s, along z); open a PyBullet GUI, or with --out "
                       "render headlessly to an animated GIF.")
    p.add_argument("scene", help="scene YAML file")
    p.add_argument("--out", help="write an animated GIF here instead of a GUI (its folder is "
                   "created, and checked writable, before any work)")
    p.add_argument("--seconds", type=float, default=8.0, help="simulated time (s), default 8")
    p.add_argument("--size", default="320x240", help="GIF frame size WxH (default 320x240)")
    p.add_argument("--fps", type=float, default=10.0, help="GIF frames per second (default 10)")
    p.set_defaults(func=run)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size: expected WxH such as 320x240 (got {text!r})") from None
    if not (16 <= w <= 2048 and 16 <= h <= 2048):
        raise InputError(f"--size: each side must be 16..2048 pixels (got {text!r})")
    return w, h


def _valid_nodes(world: RobotWorld, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from ..plan import candidate_nodes

    ps = world.scene.plan
    out = []
    for src in candidate_nodes(60, ps.sad_mm, np.zeros(3), max_polar_deg=ps.max_polar_deg):
        check = world.check_node(src, np.zeros(3))
        if check.ok:
            out.append((src, check.joints_deg))
            if len(out) == count:
                break
    if not out:
        raise InputError("no reachable, collision-free node for this robot placement")
    return out


def run(args: argparse.Namespace) -> int:
    """Animate; returns 0."""
    from ..robot import RobotController, RobotWorld

    check_number(args.seconds, "--seconds", low=0.5, high=600.0)
    check_number(args.fps, "--fps", low=1.0, high=60.0)
    size = _size(args.size)
    scene = load_scene(args.scene)
    out = None if args.out is None else check_out_file(args.out, "--out", suffixes=(".gif",))
    with RobotWorld(scene, gui=out is None) as world:
        nodes = _valid_nodes(world, 3)
        ctl = RobotController(world, rng=np.random.default_rng(scene.simulation.seed))
        ctl.reset(nodes[0][1])
        dt = scene.simulation.time_step_s
        steps = int(round(args.seconds / dt))
        frame_every = max(1, int(round(1.0 / (args.fps * dt))))
        frames = []
        for k in range(steps):
            t = k * dt
            node, q = nodes[min(int(t / (args.seconds / len(nodes))), len(nodes) - 1)]
            target = np.array([0.0, 0.0, 10.0 * np.sin(2 * np.pi * t / 4.0)])
            ctl.command(node, target, node_joints_deg=q)
            ctl.step(dt)
            if k % frame_every == 0:
                ctl.sync_world()
                if out is not None:
                    frames.append(world.render_frame(*size))
                else:
                    time.sleep(dt * frame_every)
        if out is None:
            return 0
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(out, save_all=True, append_images=images[1:],
                   duration=int(1000 / args.fps), loop=0)
    print(f"wrote {out} ({len(frames)} frames, {size[0]}x{size[1]})")
    return 0
