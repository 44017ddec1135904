"""Fixed collision bodies of the treatment room, in room mm, built from the scene.

Couch, patient volume, the two kV sources and flat-panel detectors (boxes), and the two
imaging beams (convex frusta from each source to its detector, which the linac must not
block). Free functions only; :class:`~cyberknife_sim.robot.RobotWorld` turns them into
PyBullet bodies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..scene import Scene

__all__ = ["RoomBody", "imaging_geometry", "room_bodies", "room_from_base"]

SOURCE_HOUSING_MM = (450.0, 450.0, 450.0)
"""kV tube housing modelled as a cube (ASSUMPTION)."""
DETECTOR_HOUSING_MM = 100.0
"""Thickness of the flat-panel housing (ASSUMPTION); its face is 80 mm wider than the panel."""


@dataclass(frozen=True)
class RoomBody:
    """A fixed body of the room.

    Attributes
    ----------
    name : str
        Used in collision reasons ("couch", "patient", "source A", "detector B", "beam A").
    kind : {"box", "hull"}
    room_from_body : ndarray, shape (4, 4)
        Pose of the body centre (mm).
    half_extents_mm : tuple of float, or None
        Box half sizes along the body axes (mm); boxes only.
    vertices_mm : ndarray, shape (n, 3), or None
        Convex-hull vertices in the body frame (mm); hulls only.
    rgba : tuple of float
        Display colour.
    obstacle : bool
        True: any robot link touching it is a collision. False (imaging beams): only the
        linac and the arm blocking it is reported, as "blocks imaging beam".
    """

    name: str
    kind: str
    room_from_body: NDArray[np.float64]
    half_extents_mm: tuple[float, float, float] | None = None
    vertices_mm: NDArray[np.float64] | None = None
    rgba: tuple[float, float, float, float] = (0.6, 0.6, 0.6, 1.0)
    obstacle: bool = True


def room_from_base(position_mm: NDArray[np.float64] | tuple[float, float, float],
                   yaw_deg: float) -> NDArray[np.float64]:
    """``room_from_base`` of the robot (mm).

    The robot base frame has +z up (room -y) and, at yaw 0, +x toward room +z (superior);
    ``yaw_deg`` turns it about the room vertical (right-handed about "up", room -y). The
    default yaw 180° with the base superior of the couch faces the robot toward the patient.
    """
    r0 = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    a = np.radians(yaw_deg)
    c, s = np.cos(a), np.sin(a)
    # rotation by +a about the unit axis u = (0, -1, 0)
    r_yaw = np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])
    m = np.eye(4)
    m[:3, :3] = r_yaw @ r0
    m[:3, 3] = np.asarray(position_mm, dtype=np.float64)
    return m


def imaging_geometry(scene: Scene) -> list[tuple[str, NDArray[np.float64], NDArray[np.float64]]]:
    """(view name, source_room, detector_center_room) of each kV view (mm).

    Source = d_s · (sin θ, −cos θ, 0), detector centre = −d_d · (sin θ, −cos θ, 0), θ the
    view's ``source_angle_deg`` (DESIGN.md room frame).
    """
    im = scene.room.imaging
    out = []
    for view in im.views:
        t = np.radians(view.source_angle_deg)
        u = np.array([np.sin(t), -np.cos(t), 0.0])
        out.append((view.name, im.source_to_isocenter_mm * u, -im.isocenter_to_detector_mm * u))
    return out


def _frame_looking_along(center: NDArray[np.float64], axis: NDArray[np.float64]
                         ) -> NDArray[np.float64]:
    """Pose at ``center`` whose +z is ``axis`` (unit) and +x is room +z-free."""
    z = axis / np.linalg.norm(axis)
    helper = np.array([0.0, 0.0, 1.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, np.cross(z, x), z, center
    return m


def room_bodies(scene: Scene) -> list[RoomBody]:
    """Every fixed body of the room for ``scene`` (mm, room frame)."""
    couch = scene.room.couch
    w, t, length = couch.size_mm
    bodies = [
        RoomBody("couch", "box", _translation(0.0, couch.top_y_mm + t / 2, couch.center_z_mm),
                 half_extents_mm=(w / 2, t / 2, length / 2), rgba=(0.25, 0.3, 0.35, 1.0)),
    ]
    pw, pt, pl = couch.patient_size_mm
    bodies.append(RoomBody("patient", "box",
                           _translation(0.0, couch.top_y_mm - pt / 2, couch.patient_center_z_mm),
                           half_extents_mm=(pw / 2, pt / 2, pl / 2),
                           rgba=(0.85, 0.7, 0.6, 1.0)))
    im = scene.room.imaging
    half_panel = 0.5 * np.array([im.detector_cols, im.detector_rows]) * im.pixel_spacing_mm
    for name, src, det in imaging_geometry(scene):
        axis = det - src
        bodies.append(RoomBody(f"source {name}", "box", _frame_looking_along(src, axis),
                               half_extents_mm=tuple(0.5 * np.array(SOURCE_HOUSING_MM)),
                               rgba=(0.5, 0.5, 0.55, 1.0)))
        hx, hy = half_panel + 40.0
        det_frame = _frame_looking_along(det, axis)
        det_frame[:3, 3] += det_frame[:3, 2] * DETECTOR_HOUSING_MM / 2
        bodies.append(RoomBody(f"detector {name}", "box", det_frame,
                               half_extents_mm=(hx, hy, DETECTOR_HOUSING_MM / 2),
                               rgba=(0.2, 0.2, 0.25, 1.0)))
        # imaging beam: apex at the source, base = the panel (beam frame at the source)
        length = float(np.linalg.norm(axis))
        apex = 5.0
        verts = [(sx * apex, sy * apex, 0.0) for sx in (-1, 1) for sy in (-1, 1)]
        verts += [(sx * half_panel[0], sy * half_panel[1], length)
                  for sx in (-1, 1) for sy in (-1, 1)]
        bodies.append(RoomBody(f"beam {name}", "hull", _frame_looking_along(src, axis),
                               vertices_mm=np.array(verts), rgba=(0.3, 0.6, 1.0, 0.15),
                               obstacle=False))
    return bodies


def _translation(x: float, y: float, z: float) -> NDArray[np.float64]:
    m = np.eye(4)
    m[:3, 3] = (x, y, z)
    return m
