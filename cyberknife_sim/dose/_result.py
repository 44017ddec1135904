"""What a run's dose step hands to the summary, the files and the report."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ._grid import DoseGrid

__all__ = ["DoseResult"]


@dataclass
class DoseResult:
    """Planned and delivered dose of one run on its dose grid (CT frame, Gy).

    Attributes
    ----------
    grid : DoseGrid
    planned_gy : ndarray, shape grid.shape, float32
        The plan's dose (optimised MU, static patient, beams on their planned axes).
    delivered_gy : ndarray, shape grid.shape, float32, or None
        The dose the run delivered in the moving target's frame (None before a run).
    masks : dict of str to ndarray of bool, shape grid.shape
        Structures on the dose grid (at least the target and the cord).
    target_name, cord_name : str
        Which masks are the target and the cord.
    ct_hu : ndarray, shape grid.shape, float32
        The planning CT sampled at the dose points (background of dose slices).
    prescription_gy : float
    cord_max_gy : float
        Cord point-maximum limit (Gy).
    cord_v10_limit_cc : float
        Cord V10 Gy limit (cc).
    metrics : dict
        The ``dose`` object of ``summary.json`` (``planned``, ``delivered``, ``gamma``).
    """

    grid: DoseGrid
    planned_gy: NDArray[np.float32]
    delivered_gy: NDArray[np.float32] | None
    masks: dict[str, NDArray[np.bool_]]
    target_name: str
    cord_name: str
    ct_hu: NDArray[np.float32]
    prescription_gy: float
    cord_max_gy: float
    cord_v10_limit_cc: float
    metrics: dict = field(default_factory=dict)
