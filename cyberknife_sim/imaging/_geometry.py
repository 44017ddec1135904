"""Geometry of one kV view (point source + flat detector) and the default orthogonal pair.

Conventions
-----------
* A view is a point source ``source_room`` and a flat detector: its center
  ``detector_center_room``, the unit vectors ``row_direction_room`` (direction of increasing
  row) and ``col_direction_room`` (increasing column), a square ``pixel_spacing_mm`` and a
  ``shape`` ``(rows, cols)``. Pixel ``(col, row)`` has its center at
  ``detector_center + (col - (cols-1)/2)·s·col_dir + (row - (rows-1)/2)·s·row_dir``, so the
  detector center lies between the four middle pixels of an even-sized detector.
* ``projection_matrix`` ``P`` (3×4, float64) maps homogeneous room mm to homogeneous pixel
  coordinates ``(col, row, 1)`` of pixel centers (OpenCV ``(x, y)`` order). The third
  homogeneous coordinate is positive for points on the detector side of the source.
* Default pair (:func:`imaging_pair`, CyberKnife-like, unverified numbers): view ``θ`` has its
  source at ``SAD·(sin θ, −cos θ, 0)`` (room −y is the ceiling, positive θ toward room +x,
  patient left) and its detector center ``SID_iso`` beyond the room origin on the central
  axis. Image rows run toward inferior: ``row_direction = (0, 0, −1)`` (superior at the top).
  Columns run along ``col_direction = (cos θ, sin θ, 0)``, chosen so that (col, row, beam)
  is right-handed: the image is seen as from the source (beam's-eye view); for θ = 0
  (source above the patient) the patient's left is on the image's right.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..geometry import check_points
from ..scene import ImagingSettings, ViewSettings

__all__ = ["ViewGeometry", "imaging_pair", "view_from_settings"]

_UNIT_ATOL = 1e-9


def _vec3(value: ArrayLike, name: str) -> NDArray[np.float64]:
    v = np.array(value, dtype=np.float64)
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise ValueError(f"{name}: expected 3 finite numbers, got shape {v.shape}")
    v.flags.writeable = False
    return v


@dataclass(frozen=True, eq=False)
class ViewGeometry:
    """One kV view: point source and flat detector, all in room mm (read-only).

    Parameters
    ----------
    name : str
        View name (used in file names).
    source_room : array-like, shape (3,)
        Focal spot position, room mm.
    detector_center_room : array-like, shape (3,)
        Center of the detector plane, room mm.
    row_direction_room, col_direction_room : array-like, shape (3,)
        Unit vectors of increasing row and column index, room frame; must be orthogonal.
    pixel_spacing_mm : float
        Pixel pitch (square pixels), mm.
    shape : tuple of int
        Detector ``(rows, cols)``.
    """

    name: str
    source_room: NDArray[np.float64]
    detector_center_room: NDArray[np.float64]
    row_direction_room: NDArray[np.float64]
    col_direction_room: NDArray[np.float64]
    pixel_spacing_mm: float
    shape: tuple[int, int]
    projection_matrix: NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        s = _vec3(self.source_room, "source_room")
        c = _vec3(self.detector_center_room, "detector_center_room")
        r = _vec3(self.row_direction_room, "row_direction_room")
        u = _vec3(self.col_direction_room, "col_direction_room")
        for v, n in ((r, "row_direction_room"), (u, "col_direction_room")):
            if abs(np.linalg.norm(v) - 1.0) > 1e-6:
                raise ValueError(f"view {self.name}: {n} must be a unit vector "
                                 f"(norm {np.linalg.norm(v):.6g})")
        if abs(float(r @ u)) > 1e-6:
            raise ValueError(f"view {self.name}: row and column directions are not orthogonal")
        sp = float(self.pixel_spacing_mm)
        if not (np.isfinite(sp) and sp > 0):
            raise ValueError(f"view {self.name}: pixel_spacing_mm must be > 0 (got {sp})")
        shape = tuple(int(x) for x in self.shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"view {self.name}: shape must be (rows, cols) >= 1, got {shape}")
        normal = np.cross(u, r)
        h = float(normal @ (c - s))
        if abs(h) < 1e-6:
            raise ValueError(f"view {self.name}: the source lies in the detector plane")
        for name, value in (("source_room", s), ("detector_center_room", c),
                            ("row_direction_room", r), ("col_direction_room", u),
                            ("pixel_spacing_mm", sp), ("shape", shape)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "projection_matrix", _projection_matrix(s, c, r, u, sp, shape))

    # --- derived quantities -------------------------------------------------------------
    @property
    def normal_room(self) -> NDArray[np.float64]:
        """Detector normal ``col_dir × row_dir`` (unit); points away from the source by default."""
        return np.cross(self.col_direction_room, self.row_direction_room)

    @property
    def center_pixel(self) -> tuple[float, float]:
        """``(col, row)`` of the detector center: ``((cols-1)/2, (rows-1)/2)``."""
        return ((self.shape[1] - 1) / 2.0, (self.shape[0] - 1) / 2.0)

    @property
    def source_to_detector_mm(self) -> float:
        """Distance from the source to the detector plane along its normal (mm)."""
        return abs(float(self.normal_room @ (self.detector_center_room - self.source_room)))

    @property
    def central_axis_room(self) -> NDArray[np.float64]:
        """Unit vector from the source toward the detector plane, along its normal."""
        n = self.normal_room
        return n if n @ (self.detector_center_room - self.source_room) > 0 else -n

    @property
    def pixel_to_room_matrix(self) -> NDArray[np.float64]:
        """3×3 matrix ``M`` with ``M @ (col, row, 1)`` = pixel center in room mm."""
        c0, r0 = self.center_pixel
        s = self.pixel_spacing_mm
        u, v = self.col_direction_room, self.row_direction_room
        return np.column_stack([s * u, s * v, self.detector_center_room - s * (c0 * u + r0 * v)])

    # --- mappings -------------------------------------------------------------------------
    def project(self, points_room: ArrayLike) -> NDArray[np.float64]:
        """Central projection of room points onto the detector.

        Parameters
        ----------
        points_room : array-like, shape (3,) or (n, 3)
            Points in room mm.

        Returns
        -------
        ndarray, shape (n, 2)
            ``(col, row)`` pixel coordinates (pixel centers are integers).
        """
        p = np.atleast_2d(check_points(points_room, name="points_room"))
        h = np.hstack([p, np.ones((p.shape[0], 1))]) @ self.projection_matrix.T
        return h[:, :2] / h[:, 2:3]

    def pixel_to_room(self, cols: ArrayLike, rows: ArrayLike) -> NDArray[np.float64]:
        """Detector points (room mm) at pixel coordinates; result shape ``broadcast + (3,)``."""
        c = np.asarray(cols, dtype=np.float64)
        r = np.asarray(rows, dtype=np.float64)
        c, r = np.broadcast_arrays(c, r)
        m = self.pixel_to_room_matrix
        return c[..., None] * m[:, 0] + r[..., None] * m[:, 1] + m[:, 2]

    def with_binning(self, binning: int) -> ViewGeometry:
        """The same detector read out ``binning × binning`` pixels at a time.

        The detector center and extent are unchanged; shape is divided by ``binning`` and
        the pitch multiplied by it. Raises ValueError if the shape is not divisible.
        """
        b = int(binning)
        if b < 1 or b != binning:
            raise ValueError(f"binning must be a positive integer (got {binning!r})")
        if self.shape[0] % b or self.shape[1] % b:
            raise ValueError(f"view {self.name}: shape {self.shape} is not divisible by "
                             f"binning {b}")
        return ViewGeometry(self.name, self.source_room, self.detector_center_room,
                            self.row_direction_room, self.col_direction_room,
                            self.pixel_spacing_mm * b, (self.shape[0] // b, self.shape[1] // b))

    def to_dict(self) -> dict:
        """Plain-JSON description (lists of floats), as written to ``geometry.json``."""
        return {
            "name": self.name,
            "projection_matrix": self.projection_matrix.tolist(),
            "source_room": self.source_room.tolist(),
            "detector_center_room": self.detector_center_room.tolist(),
            "row_direction_room": self.row_direction_room.tolist(),
            "col_direction_room": self.col_direction_room.tolist(),
            "detector_shape": list(self.shape),
            "pixel_spacing_mm": self.pixel_spacing_mm,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ViewGeometry:
        """Inverse of :meth:`to_dict` (``projection_matrix`` is recomputed)."""
        return cls(str(data["name"]), data["source_room"], data["detector_center_room"],
                   data["row_direction_room"], data["col_direction_room"],
                   float(data["pixel_spacing_mm"]), tuple(data["detector_shape"]))


def _projection_matrix(s: NDArray, c: NDArray, r: NDArray, u: NDArray, spacing: float,
                       shape: tuple[int, int]) -> NDArray[np.float64]:
    """3×4 ``P``: room mm (homogeneous) → ``(col, row, 1)`` (homogeneous).

    A point X is seen along ``w = X - S``; its ray meets the plane ``n·(Q - C) = 0`` at
    ``Q = S + t w`` with ``t = h / (n·w)``, ``h = n·(C - S)``. Then
    ``col = u·(Q - C)/s + c0 = [u·(S-C) (n·w) + h (u·w)] / (s n·w) + c0`` and likewise for
    rows, a ratio of linear functions of w.
    """
    n = np.cross(u, r)
    h = float(n @ (c - s))
    sign = 1.0 if h > 0 else -1.0
    c0, r0 = (shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0
    a_col = (float(u @ (s - c)) * n + h * u) / spacing + c0 * n
    a_row = (float(r @ (s - c)) * n + h * r) / spacing + r0 * n
    m = sign * np.vstack([a_col, a_row, n])
    p = np.hstack([m, -(m @ s)[:, None]])
    p.flags.writeable = False
    return p


def view_from_settings(view: ViewSettings, imaging: ImagingSettings, *,
                       binning: int | None = None) -> ViewGeometry:
    """Geometry of one scene view (see the module docstring for the axes).

    Parameters
    ----------
    view : ViewSettings
        Name and source angle from vertical (deg, positive toward room +x).
    imaging : ImagingSettings
        Distances (mm), native detector size and pitch, binning.
    binning : int, optional
        Override ``imaging.binning`` (1 = native detector).
    """
    theta = np.deg2rad(view.source_angle_deg)
    toward_source = np.array([np.sin(theta), -np.cos(theta), 0.0])
    native = ViewGeometry(
        name=view.name,
        source_room=imaging.source_to_isocenter_mm * toward_source,
        detector_center_room=-imaging.isocenter_to_detector_mm * toward_source,
        row_direction_room=np.array([0.0, 0.0, -1.0]),
        col_direction_room=np.array([np.cos(theta), np.sin(theta), 0.0]),
        pixel_spacing_mm=imaging.pixel_spacing_mm,
        shape=(imaging.detector_rows, imaging.detector_cols),
    )
    return native.with_binning(imaging.binning if binning is None else binning)


def imaging_pair(settings: ImagingSettings, *,
                 binning: int | None = None) -> tuple[ViewGeometry, ViewGeometry]:
    """The two views of the scene's imaging pair, binning applied.

    Parameters
    ----------
    settings : ImagingSettings
        The ``room.imaging`` section of a scene.
    binning : int, optional
        Override ``settings.binning``.

    Returns
    -------
    tuple of ViewGeometry
        In the order of ``settings.views``.
    """
    a, b = (view_from_settings(v, settings, binning=binning) for v in settings.views)
    return a, b
