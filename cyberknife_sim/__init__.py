"""cyberknife_sim: a closed-loop simulator of robotic radiosurgery motion tracking.

Construct-then-call from Python, the same capabilities as the ``cksim`` command::

    import cyberknife_sim as cks

    scene = cks.load_scene("scenes/default.yaml")
    result = cks.simulate(scene, seed=0, duration_s=120)
    print(result.summary.targeting_error_mm["rms"])
    cks.write_run("runs/notebook", result)

Subpackages follow the data flow (DESIGN.md): :mod:`~cyberknife_sim.scene`, ``anatomy``,
``imaging``, ``registration``, ``motion``, ``tracking``, ``robot``, then the simulation loop,
metrics, report and CLI. Nothing below the loop imports it. The names below are loaded on
first use, so ``import cyberknife_sim`` stays cheap and has no side effects.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("cyberknife_sim")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

_LAZY = {
    "Scene": "scene",
    "load_scene": "scene",
    "scene_from_dict": "scene",
    "scene_to_yaml": "scene",
    "RunResult": "simulation",
    "RunSummary": "simulation",
    "StoppedEarly": "simulation",
    "TreatmentLoop": "simulation",
    "simulate": "simulation",
    "write_run": "simulation",
    "read_ct": "anatomy",
    "Beam": "plan",
    "Plan": "plan",
}

__all__ = [
    "Beam",
    "Plan",
    "RunResult",
    "RunSummary",
    "Scene",
    "StoppedEarly",
    "TreatmentLoop",
    "__version__",
    "load_scene",
    "read_ct",
    "scene_from_dict",
    "scene_to_yaml",
    "simulate",
    "write_run",
]

if TYPE_CHECKING:  # pragma: no cover
    from .anatomy import read_ct
    from .plan import Beam, Plan
    from .scene import Scene, load_scene, scene_from_dict, scene_to_yaml
    from .simulation import (
        RunResult,
        RunSummary,
        StoppedEarly,
        TreatmentLoop,
        simulate,
        write_run,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cyberknife_sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
