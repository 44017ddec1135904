"""``cksim validate SCENE``: check a scene file and list every problem."""

from __future__ import annotations

import argparse

from ..scene import load_scene


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``validate`` sub-command."""
    p = sub.add_parser("validate", help="check a scene file; exit 2 with one line per problem",
                       description="Validate a scene YAML file. Prints 'ok' and exits 0, or "
                       "prints one line per problem and exits 2.")
    p.add_argument("scene", help="scene YAML file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate ``args.scene``; problems propagate as :class:`SceneError` (exit 2)."""
    scene = load_scene(args.scene)
    print(f"{args.scene}: ok (scene '{scene.name}')")
    return 0
