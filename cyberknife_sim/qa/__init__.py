"""Simulated QA tests: the ball-cube end-to-end (E2E) targeting test (AAPM TG-135)."""

from ._ballcube import FILM_AXES, BallCube, Film, make_ball_cube_phantom
from ._e2e import (
    MOTION_TOLERANCE_MM,
    STATIC_TOLERANCE_MM,
    E2EResult,
    axis_intersection_ct,
    draw_setup_offset,
    e2e_scene,
    run_e2e,
)
from ._film import FilmResult, isodose_centroid_mm, total_targeting_error

__all__ = [
    "FILM_AXES",
    "MOTION_TOLERANCE_MM",
    "STATIC_TOLERANCE_MM",
    "E2EResult",
    "axis_intersection_ct",
    "draw_setup_offset",
    "e2e_scene",
    "run_e2e",
    "BallCube",
    "Film",
    "FilmResult",
    "isodose_centroid_mm",
    "make_ball_cube_phantom",
    "total_targeting_error",
]
