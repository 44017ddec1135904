"""Simulated QA tests: the ball-cube end-to-end (E2E) targeting test (AAPM TG-135)."""

from ._ballcube import FILM_AXES, BallCube, Film, make_ball_cube_phantom
from ._film import FilmResult, isodose_centroid_mm, total_targeting_error

__all__ = [
    "FILM_AXES",
    "BallCube",
    "Film",
    "FilmResult",
    "isodose_centroid_mm",
    "make_ball_cube_phantom",
    "total_targeting_error",
]
