"""Tissue labels of the procedural phantom and their nominal CT numbers (HU)."""

from __future__ import annotations

__all__ = ["TISSUE_HU", "TISSUE_LABELS"]

TISSUE_LABELS: dict[str, int] = {
    "air": 0,
    "fat": 1,
    "soft_tissue": 2,
    "lung": 3,
    "cortical_bone": 4,
    "cancellous_bone": 5,
    "disc": 6,
    "csf": 7,
    "cord": 8,
    "lesion": 9,
    "liver": 10,
    "rib_marrow": 11,
}
"""Label value of each tissue in :attr:`Phantom.labels`."""

TISSUE_HU: dict[str, float] = {
    "air": -1000.0,
    "fat": -100.0,
    "soft_tissue": 40.0,
    "lung": -820.0,          # mean; a posterior-dependent gradient of +-30 HU is added
    "cortical_bone": 1050.0,
    "cancellous_bone": 225.0,  # mean of the random trabecular texture
    "disc": 85.0,
    "csf": 10.0,
    "cord": 35.0,
    "lesion_lytic": 30.0,
    "lesion_blastic": 800.0,
    "liver": 60.0,
    "rib_marrow": 250.0,
}
"""Nominal CT number of each tissue (HU) before noise."""
