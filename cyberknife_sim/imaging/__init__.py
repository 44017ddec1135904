"""Imaging: kV view geometry, DRR renderers and the live X-ray detector model."""

from ._drr import DrrRenderer
from ._geometry import ViewGeometry, imaging_pair, view_from_settings
from ._io import GEOMETRY_FORMAT, load_geometry_json, write_geometry_json, write_view_images
from ._reference import reference_drr
from ._siddon import ExactDrrRenderer, exact_drr
from ._splat import project_particles, project_sets
from ._xray import XrayModel

__all__ = [
    "GEOMETRY_FORMAT",
    "DrrRenderer",
    "ExactDrrRenderer",
    "ViewGeometry",
    "XrayModel",
    "exact_drr",
    "imaging_pair",
    "load_geometry_json",
    "project_particles",
    "project_sets",
    "reference_drr",
    "view_from_settings",
    "write_geometry_json",
    "write_view_images",
]
