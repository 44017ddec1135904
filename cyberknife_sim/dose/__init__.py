"""Dose: beam data, the cone dose engine, structures, plan MU optimisation, DVH, gamma and
the delivered dose of a run (see docs/dose.md)."""

from ._grid import DoseGrid
from ._result import DoseResult

__all__ = ["DoseGrid", "DoseResult"]
