"""Imaging: kV view geometry, DRR renderers and the live X-ray detector model."""

from ._drr import DrrRenderer
from ._geometry import ViewGeometry, imaging_pair, view_from_settings
from ._reference import reference_drr

__all__ = [
    "DrrRenderer",
    "ViewGeometry",
    "imaging_pair",
    "reference_drr",
    "view_from_settings",
]
