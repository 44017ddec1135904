"""A virtual ball-cube film phantom inserted into the built-in spine phantom.

The CyberKnife end-to-end (E2E) test irradiates a "ball cube": an acrylic cube holding a
target ball, with two orthogonal radiochromic films crossing at the ball's centre (AAPM
TG-135, Dieterich et al., Med Phys 2011;38:2914). For a spine (Xsight-Spine) E2E the ball
cube sits in an anthropomorphic phantom next to the spine, so the spine registration tracks
it. Here the cube replaces the soft tissue just anterior to the target level's vertebral
body of :func:`cyberknife_sim.anatomy.phantom.make_phantom`.

Dimensions and materials
------------------------

=====================  ==========  ========================================================
quantity               value       source
=====================  ==========  ========================================================
cube edge              63.5 mm     Accuray ball cube (2.5 in), as recalled; not verified in
                                   this session (assumption)
ball diameter          31.75 mm    Accuray ball cube (1.25 in), as recalled; not verified
                                   in this session (assumption)
cube CT number         +120 HU     PMMA (1.19 g/cm^3, relative electron density ~1.16):
                                   assumption
ball CT number         +800 HU     a high-density ball, visible on CT and DRRs: assumption
gap to the vertebra    2 mm        cube's posterior face to the body's anterior cortex:
                                   assumption
film size              60 x 60 mm  assumption (films cover the ball and the 50 % isodose)
film pixel             0.5 mm      assumption (a 50 dpi film scan)
=====================  ==========  ========================================================

Film planes (CT frame, DICOM LPS): ``coronal`` is the x-z plane through the ball centre (film
axes u = x, v = z), ``sagittal`` the y-z plane (u = y, v = z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..anatomy.volume import Volume
from ..errors import InputError

__all__ = ["FILM_AXES", "BallCube", "Film", "make_ball_cube_phantom"]

FILM_AXES = {"coronal": (0, 2), "sagittal": (1, 2)}
"""CT axes (0 = x, 1 = y, 2 = z) of each film's (u, v) coordinates."""

CUBE_EDGE_MM = 63.5
BALL_DIAMETER_MM = 31.75
CUBE_HU = 120.0
BALL_HU = 800.0


@dataclass(frozen=True)
class Film:
    """One film plane through the ball centre.

    Attributes
    ----------
    name : {"coronal", "sagittal"}
    center_ct : ndarray, shape (3,)
        Ball centre, CT mm (the film's origin).
    u_mm, v_mm : ndarray, shape (n,), (m,)
        Film coordinates of the pixel centres relative to the centre (mm) along CT axes
        ``FILM_AXES[name]``; the dose image is ``[iv, iu]`` (row = v = z, increasing).
    """

    name: str
    center_ct: NDArray[np.float64]
    u_mm: NDArray[np.float64]
    v_mm: NDArray[np.float64]

    @property
    def axes(self) -> tuple[int, int]:
        """CT axes of (u, v)."""
        return FILM_AXES[self.name]

    def points_ct(self) -> NDArray[np.float64]:
        """Pixel centres in CT mm, shape (m * n, 3), row-major over ``[iv, iu]``."""
        vv, uu = np.meshgrid(self.v_mm, self.u_mm, indexing="ij")
        pts = np.repeat(self.center_ct[None, :], vv.size, axis=0)
        a_u, a_v = self.axes
        pts[:, a_u] += uu.ravel()
        pts[:, a_v] += vv.ravel()
        return pts


@dataclass(frozen=True)
class BallCube:
    """The spine phantom with the ball cube inserted.

    Attributes
    ----------
    volume : Volume
        CT (HU, int16) with the cube and ball painted in; the phantom's CT frame.
    ball_center_ct : ndarray, shape (3,)
        Ball centre, CT mm.
    ball_radius_mm, cube_edge_mm : float
    films : tuple of Film
        ``(coronal, sagittal)``.
    """

    volume: Volume
    ball_center_ct: NDArray[np.float64]
    ball_radius_mm: float
    cube_edge_mm: float
    films: tuple[Film, Film]


def _film_axis_mm(size_mm: float, spacing_mm: float) -> NDArray[np.float64]:
    half = int(round(0.5 * size_mm / spacing_mm))
    return np.arange(-half, half + 1, dtype=np.float64) * spacing_mm


def make_ball_cube_phantom(*, preset: str = "default", seed: int = 0,
                           cube_edge_mm: float = CUBE_EDGE_MM,
                           ball_diameter_mm: float = BALL_DIAMETER_MM,
                           cube_hu: float = CUBE_HU, ball_hu: float = BALL_HU,
                           gap_mm: float = 2.0, film_size_mm: float = 60.0,
                           film_spacing_mm: float = 0.5) -> BallCube:
    """The spine phantom ``preset`` with a ball cube just anterior to its target vertebra.

    The cube is axis-aligned in the CT frame, centred on the target level's vertebral body
    in x and z, its posterior face ``gap_mm`` anterior to the body's anterior cortex (found
    on the CT along the body's centre line, HU > 300). Everything inside the cube is
    replaced by acrylic and the ball.

    Parameters
    ----------
    preset : str
        Phantom preset (``phantoms/``).
    seed : int
        Phantom seed.
    cube_edge_mm, ball_diameter_mm : float
        Sizes (mm); see the module's table.
    cube_hu, ball_hu : float
        CT numbers (HU).
    gap_mm : float
        Cube to vertebral body (mm).
    film_size_mm, film_spacing_mm : float
        Film edge and pixel (mm).

    Returns
    -------
    BallCube
    """
    from ..anatomy.phantom import make_phantom

    if not 0.0 < ball_diameter_mm < cube_edge_mm:
        raise InputError(f"ball cube: ball diameter {ball_diameter_mm} mm must be > 0 and "
                         f"smaller than the cube edge {cube_edge_mm} mm")
    if not 0.0 < film_spacing_mm <= film_size_mm / 4:
        raise InputError(f"ball cube: film spacing {film_spacing_mm} mm must be > 0 and at "
                         f"most a quarter of the film size {film_size_mm} mm")
    ph = make_phantom(preset, seed=seed)
    vol = ph.volume
    level = ph.truth.lesion_level
    body_ct = np.asarray(
        ph.truth.body_centers_ct_mm[ph.truth.vertebra_labels.index(level)], dtype=np.float64)
    # Anterior cortex: the first bone voxel walking anteriorly (-y) from the body centre
    # stops being bone; walk from the centre toward -y and take the last bone sample.
    ys = body_ct[1] - np.arange(0.0, 60.0, 0.25)
    line = np.column_stack([np.full_like(ys, body_ct[0]), ys, np.full_like(ys, body_ct[2])])
    ijk = np.rint(vol.ct_to_ijk(line)).astype(int)
    hu_line = vol.hu[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
    bone = np.nonzero(hu_line > 300)[0]
    if bone.size == 0:
        raise InputError(f"ball cube: no vertebral body found anterior to {level}'s centre")
    anterior_y = ys[bone[-1]]
    center = np.array([body_ct[0], anterior_y - gap_mm - 0.5 * cube_edge_mm, body_ct[2]])

    nk, nj, ni = vol.shape
    m = vol.ct_from_ijk[:3, :3]
    if np.any(np.abs(m - np.diag(np.diag(m))) > 1e-9):
        raise InputError("ball cube: the phantom's CT grid is not axis-aligned")
    x = vol.ct_from_ijk[0, 3] + m[0, 0] * np.arange(ni)
    y = vol.ct_from_ijk[1, 3] + m[1, 1] * np.arange(nj)
    z = vol.ct_from_ijk[2, 3] + m[2, 2] * np.arange(nk)
    half = 0.5 * cube_edge_mm
    dx, dy, dz = x - center[0], y - center[1], z - center[2]
    in_cube = ((np.abs(dz) <= half)[:, None, None] & (np.abs(dy) <= half)[None, :, None]
               & (np.abs(dx) <= half)[None, None, :])
    r2 = dz[:, None, None] ** 2 + dy[None, :, None] ** 2 + dx[None, None, :] ** 2
    in_ball = r2 <= (0.5 * ball_diameter_mm) ** 2
    hu = np.array(vol.hu, dtype=np.int16, copy=True)
    hu[in_cube] = np.int16(round(cube_hu))
    hu[in_ball] = np.int16(round(ball_hu))
    out = Volume(hu, vol.ct_from_ijk, name="ball_cube")
    axis = _film_axis_mm(film_size_mm, film_spacing_mm)
    films = (Film("coronal", center, axis, axis.copy()),
             Film("sagittal", center, axis.copy(), axis.copy()))
    return BallCube(out, center, 0.5 * ball_diameter_mm, cube_edge_mm, films)
