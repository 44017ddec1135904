"""Mass particles: the truth patient's representation, shared by its motion, its projector
and its simulated CT acquisition.

A truth patient is a set of small mass elements ("particles"), each of ONE material: its
reference position (CT mm, LPS, at exhale), its mass (g), its material index into
:data:`MATERIALS` and the edge of the cube of tissue it stands for (``size_mm``, shared by
all particles of one :class:`ParticleSet`). A voxel of a mixture (cancellous bone = marrow +
mineral) is two particles at the same place.

Why particles: motion is a forward map of the particles (rigid per vertebra and rib, a smooth
displacement field for soft tissue), so mass is conserved and lung density falls as it
expands without a volume being re-sampled; the live X-ray projector splats them onto the
detector (a voxel-driven projector, independent of the registration's ray-driven shear-warp
DRR); the planning CT is a separate acquisition that bins them into CT voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["MATERIALS", "ParticleSet"]

MATERIALS: tuple[str, ...] = ("soft_tissue", "adipose", "lung", "cortical_bone")
"""Material of each particle by index (compositions: ICRU-44 / NIST, see
``cyberknife_sim.imaging.xrayphysics``). Cancellous bone and marrow are mixtures of
``soft_tissue`` and ``cortical_bone`` particles."""


@dataclass(frozen=True, eq=False)
class ParticleSet:
    """Particles of one size.

    Attributes
    ----------
    position_ct_mm : ndarray, shape (n, 3), float32
        Reference positions (CT mm, LPS; the patient at exhale, pose zero).
    mass_g : ndarray, shape (n,), float32
        Mass of each particle (g).
    material : ndarray, shape (n,), uint8
        Index into :data:`MATERIALS`.
    component : ndarray, shape (n,), int16
        Which rigid or deforming part moves the particle (meaning set by the truth patient;
        0 = deforming soft tissue).
    size_mm : float
        Edge of the cube each particle stands for (mm); the projector splats particles of
        a set with a footprint of about this size.
    name : str
        What the set holds (e.g. ``"vertebrae 0.5 mm"``).
    """

    position_ct_mm: NDArray[np.float32]
    mass_g: NDArray[np.float32]
    material: NDArray[np.uint8]
    component: NDArray[np.int16]
    size_mm: float
    name: str = ""

    def __post_init__(self) -> None:
        n = self.mass_g.shape[0] if self.mass_g.ndim == 1 else -1
        if self.position_ct_mm.shape != (n, 3):
            raise ValueError(f"ParticleSet {self.name!r}: position_ct_mm must be (n, 3) with "
                             f"n = len(mass_g) = {n} (got {self.position_ct_mm.shape})")
        for key in ("material", "component"):
            if getattr(self, key).shape != (n,):
                raise ValueError(f"ParticleSet {self.name!r}: {key} must have shape ({n},) "
                                 f"(got {getattr(self, key).shape})")
        if not (np.isfinite(self.size_mm) and self.size_mm > 0):
            raise ValueError(f"ParticleSet {self.name!r}: size_mm must be > 0 "
                             f"(got {self.size_mm})")

    def __len__(self) -> int:
        return int(self.mass_g.shape[0])

    @property
    def total_mass_g(self) -> float:
        """Sum of the particle masses (g)."""
        return float(np.sum(self.mass_g, dtype=np.float64))
