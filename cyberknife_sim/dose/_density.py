"""CT number → electron density relative to water (the dose engine's CT calibration).

A piecewise-linear curve, as a clinical CT-to-density calibration is (Schneider, Bortfeld &
Schlegel, Phys Med Biol 2000;45:459; phantoms such as the CIRS 062M). Its nodes:

=========  =====  =========================================================================
HU         RED    source
=========  =====  =========================================================================
-1000      0.00   air; its true 0.001 is taken as 0 so the radiological depth starts at
                  the skin (assumption; < 0.5 mm over 500 mm of air)
-800       0.19   CIRS 062M lung (inhale) insert, RED 0.190
-500       0.49   CIRS 062M lung (exhale) insert, RED 0.489
-100       0.95   adipose, ICRU Report 44 (0.95 g/cm³); the project's ``adipose``
                  (``truth/_materials.py``: -100 HU)
0          1.00   water, by definition
40         1.05   soft tissue 1.06 g/cm³ (ICRU-44 / Schneider 2000; the project's
                  ``soft_tissue`` at 40 HU), electrons per gram ≈ 0.99 of water's
1600       1.78   cortical bone 1.92 g/cm³ (ICRU-44; the project's ``cortical_bone`` at
                  1600 HU), electrons per gram ≈ 0.927 of water's
3000       2.43   the bone segment extended (assumption); clipped above (metal is
                  not modelled)
=========  =====  =========================================================================

Between 40 and 1600 HU the project's CT model (``truth/_materials.py``) is a volume mixture
of soft tissue and cortical bone, so the electron density is linear in HU there: this
segment matches it exactly. Between -100 and 40 HU that model mixes adipose and soft tissue
(RED 1.02 at 0 HU); this curve goes through water instead (1.00 at 0 HU), as a clinical
calibration does: the two differ by < 2.2 % in that range.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["relative_electron_density", "RED_TABLE_HU", "RED_TABLE"]

RED_TABLE_HU: NDArray[np.float64] = np.array([-1000.0, -800.0, -500.0, -100.0, 0.0, 40.0,
                                              1600.0, 3000.0])
"""HU nodes of the calibration curve (see the module docstring for their sources)."""

RED_TABLE: NDArray[np.float64] = np.array([0.0, 0.19, 0.49, 0.95, 1.0, 1.05, 1.78,
                                           1.05 + (1.78 - 1.05) * (3000.0 - 40.0) / 1560.0])
"""Electron density relative to water at :data:`RED_TABLE_HU`."""


def relative_electron_density(hu: ArrayLike) -> NDArray[np.float64]:
    """Electron density relative to water of CT numbers.

    Parameters
    ----------
    hu : array-like
        CT numbers (HU), any shape.

    Returns
    -------
    ndarray, same shape, float64
        Relative electron density (water = 1), piecewise linear in HU, clipped to the
        table's ends (0 below -1000 HU, 2.43 above 3000 HU).
    """
    return np.interp(np.asarray(hu, dtype=np.float64), RED_TABLE_HU, RED_TABLE)
