"""cyberknife_sim: a closed-loop simulator of robotic radiosurgery motion tracking.

Subpackages follow the data flow (DESIGN.md): :mod:`~cyberknife_sim.scene`,
``anatomy``, ``imaging``, ``registration``, ``motion``, ``tracking``, ``robot``, then
the simulation loop, metrics, report and CLI. Nothing below the loop imports it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cyberknife_sim")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
