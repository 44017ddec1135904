"""Registration: skeletal enhancement and fiducial-free 6-DoF spine registration (Xsight-style).

Build :class:`Registration2D3D` once per treatment and call
:meth:`~Registration2D3D.register` with each live pair; the free functions are the building
blocks (enhancement, similarity, template matching, projective math).
"""

from ._depth import Window
from ._enhance import ENHANCE_METHODS, EnhanceMethod, enhance
from ._projective import increment_matrix, pose_jacobian, project, triangulate, triangulate_shift
from ._register import Registration2D3D, RegistrationResult
from ._roi import DRR_CONTENTS, DrrContent, roi_model
from ._shift import ShiftEstimate, match_template, match_template_candidates, subpixel_peak
from ._similarity import gradient_correlation, ncc

__all__ = [
    "DRR_CONTENTS",
    "ENHANCE_METHODS",
    "DrrContent",
    "EnhanceMethod",
    "Registration2D3D",
    "RegistrationResult",
    "ShiftEstimate",
    "Window",
    "enhance",
    "gradient_correlation",
    "increment_matrix",
    "match_template",
    "match_template_candidates",
    "ncc",
    "pose_jacobian",
    "project",
    "roi_model",
    "subpixel_peak",
    "triangulate",
    "triangulate_shift",
]
