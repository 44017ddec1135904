"""Write a validated scene back as YAML (the run folder's ``scene.yaml``)."""

from __future__ import annotations

import yaml

from ._load import Scene

__all__ = ["scene_to_yaml"]


def scene_to_yaml(scene: Scene) -> str:
    """The scene as YAML text, every key written out (defaults included, file paths
    absolute), so that loading it gives the same scene and reproduces the run.

    Floats are written with Python's shortest round-trip ``repr``, so every number reads back
    bit for bit.
    """
    data = scene.model_dump(mode="json")
    head = (f"# Resolved scene of a cksim run (every key, defaults included).\n"
            f"# Source: {scene.source if scene.source else '(built in code)'}\n")
    return head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
