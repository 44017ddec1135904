"""The PyBullet world: robot + linac, couch, patient, imagers; pointing IK and node checks.

PyBullet works in metres; this module converts at the boundary. Everything public is room
mm and degrees. Kinematics (FK, Jacobian, IK) run in numpy on the chain read from the same
URDF PyBullet loads (see :mod:`._chain`), so pointing is exact to floating point; PyBullet is
used for collisions and rendering.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

from ..errors import CksimError
from ..scene import Scene
from ._chain import Chain, load_chain, urdf_path
from ._ik import PointingSolution, solve_pointing_ik
from ._pybullet import pb
from ._room_bodies import RoomBody, room_bodies, room_from_base

__all__ = ["NodeCheck", "PointingFailed", "RobotWorld"]

_M = 1e-3  # metres per mm
SINGULAR_SIGMA_MM = 100.0
"""Smallest singular value of the scaled pointing Jacobian below which a pose counts as
near-singular (mm/rad; ~1/8 of the typical value at a comfortable pose)."""


class PointingFailed(CksimError):
    """No joint solution places the linac as asked; the message says why."""


@dataclass(frozen=True)
class NodeCheck:
    """Verdict on a candidate node.

    Attributes
    ----------
    ok : bool
    reason : str
        "ok", or why the node is rejected ("unreachable: ...", "joint limit: ...",
        "singular: ...", "collision: linac with couch", "blocks imaging beam A").
    joints_deg : ndarray, shape (6,), or None
        The IK solution (deg) when IK converged.
    bodies : tuple of str
        Bodies involved in a collision ("couch", "detector A", "self: link2", ...).
    """

    ok: bool
    reason: str
    joints_deg: NDArray[np.float64] | None = None
    bodies: tuple[str, ...] = field(default=())


def _vec3(value: ArrayLike, name: str) -> NDArray[np.float64]:
    v = np.asarray(value, dtype=np.float64)
    if v.shape != (3,) or not all(map(math.isfinite, v.tolist())):  # (cheaper than numpy)
        raise ValueError(f"{name}: expected 3 finite numbers (mm), got shape {v.shape}")
    return v


class RobotWorld:
    """Owns one PyBullet client with the robot, linac and the room bodies of a scene.

    Parameters
    ----------
    scene : Scene
        Uses ``scene.room`` (robot base, couch, patient, imaging pair).
    gui : bool
        Open a PyBullet GUI window (needs a display); headless ``DIRECT`` otherwise.

    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, scene: Scene, *, gui: bool = False):
        if gui and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise CksimError("no display available for the PyBullet GUI (DISPLAY is not set); "
                             "render headlessly instead: cksim view SCENE --out FILE.gif")
        self.scene = scene
        self.chain: Chain = load_chain()
        self.room_from_base_mm = room_from_base(scene.room.robot.base_position_mm,
                                                scene.room.robot.base_yaw_deg)
        self.margin_mm = float(scene.room.robot.collision_margin_mm)
        self._client = pb.connect(pb.GUI if gui else pb.DIRECT)
        if self._client < 0:
            raise CksimError("could not start the PyBullet client")
        quat = Rotation.from_matrix(self.room_from_base_mm[:3, :3]).as_quat()
        self.robot_id = pb.loadURDF(str(urdf_path()), (self.room_from_base_mm[:3, 3] * _M).tolist(),
                                    quat.tolist(), useFixedBase=True,
                                    physicsClientId=self._client)
        names = {pb.getJointInfo(self.robot_id, j, physicsClientId=self._client)[1].decode(): j
                 for j in range(pb.getNumJoints(self.robot_id, physicsClientId=self._client))}
        self._joint_ids = [names[n] for n in self.chain.joint_names]
        self._link_names = {-1: "base"} | {
            j: pb.getJointInfo(self.robot_id, j, physicsClientId=self._client)[12].decode()
            for j in names.values()}
        self._linac_link = names["flange_to_linac"]
        self._source_link = names["linac_to_source"]
        self._self_links = [-1] + self._joint_ids[:4]  # base, link1..link4 vs the linac
        self.bodies: list[RoomBody] = room_bodies(scene)
        self._body_ids = [self._add_body(b) for b in self.bodies]
        self._q_rad = np.zeros(6)
        self.set_joints(np.zeros(6))

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Disconnect the PyBullet client (idempotent)."""
        if self._client >= 0:
            pb.disconnect(physicsClientId=self._client)
            self._client = -1

    def __enter__(self) -> RobotWorld:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()

    @property
    def client_id(self) -> int:
        """The PyBullet physics client id (for callers that draw debug items)."""
        return self._client

    def _add_body(self, body: RoomBody) -> int:
        c = self._client
        if body.kind == "box":
            he = (np.asarray(body.half_extents_mm) * _M).tolist()
            col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=he, physicsClientId=c)
            vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=he, rgbaColor=body.rgba,
                                       physicsClientId=c)
        else:
            verts = (body.vertices_mm * _M).tolist()
            col = pb.createCollisionShape(pb.GEOM_MESH, vertices=verts, physicsClientId=c)
            vis = -1  # the imaging beams are not drawn
        quat = Rotation.from_matrix(body.room_from_body[:3, :3]).as_quat().tolist()
        return pb.createMultiBody(0.0, col, vis, (body.room_from_body[:3, 3] * _M).tolist(),
                                  quat, physicsClientId=c)

    # ------------------------------------------------------------------ joints and beam
    @property
    def joints_deg(self) -> NDArray[np.float64]:
        """Current joints (deg), a copy."""
        return np.degrees(self._q_rad)

    @property
    def lower_deg(self) -> NDArray[np.float64]:
        """Lower joint limits (deg)."""
        return np.degrees(self.chain.lower_rad)

    @property
    def upper_deg(self) -> NDArray[np.float64]:
        """Upper joint limits (deg)."""
        return np.degrees(self.chain.upper_rad)

    def set_joints(self, q_deg: ArrayLike) -> None:
        """Put the robot at joints ``q_deg`` (shape (6,), deg) in PyBullet and the numpy model."""
        q = np.asarray(q_deg, dtype=np.float64)
        if q.shape != (6,) or not np.all(np.isfinite(q)):
            raise ValueError(f"q_deg: expected 6 finite joint angles (deg), got shape {q.shape}")
        self._set_joints_rad(np.radians(q))

    @property
    def _joints_rad(self) -> NDArray[np.float64]:
        """Current joints (rad), a copy (exact, for the plan cache)."""
        return self._q_rad.copy()

    def _set_joints_rad(self, q_rad: NDArray[np.float64]) -> None:
        """:meth:`set_joints` in radians, without checks (exact, for the plan cache)."""
        self._q_rad = np.array(q_rad, dtype=np.float64)
        for j, a in zip(self._joint_ids, self._q_rad, strict=True):
            pb.resetJointState(self.robot_id, j, float(a), physicsClientId=self._client)

    def beam_axis(self, q_deg: ArrayLike | None = None
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Beam source (room mm) and unit beam direction (room) at ``q_deg`` or the current joints.
        """
        q = self._q_rad if q_deg is None else np.radians(np.asarray(q_deg, dtype=np.float64))
        p, d, _, _ = self.chain.pointing_jacobian(q, self.room_from_base_mm)
        return p, d

    def beam_axis_pybullet(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Beam source and direction read back from PyBullet's link state (cross-check)."""
        st = pb.getLinkState(self.robot_id, self._source_link, computeForwardKinematics=True,
                             physicsClientId=self._client)
        pos = np.array(st[4]) / _M
        rot = Rotation.from_quat(st[5]).as_matrix()
        return pos, rot[:, 2]

    # ------------------------------------------------------------------ IK
    def default_seed_deg(self, source_room: ArrayLike) -> NDArray[np.float64]:
        """A start posture facing the node: A1 toward it, arm bent, wrist tilted."""
        s = _vec3(source_room, "source_room")
        inv = np.linalg.inv(self.room_from_base_mm)
        pb_ = inv[:3, :3] @ s + inv[:3, 3]
        return np.array([np.degrees(np.arctan2(pb_[1], pb_[0])), 10.0, -20.0, 0.0, 30.0, 0.0])

    def _seeds(self, src: NDArray[np.float64], seed_deg: ArrayLike | None
               ) -> list[NDArray[np.float64]]:
        base = self.default_seed_deg(src)
        seeds = [np.asarray(seed_deg, dtype=np.float64)] if seed_deg is not None else []
        for a4, a5, a6 in ((0.0, 30.0, 0.0), (90.0, 30.0, -90.0), (-90.0, 30.0, 90.0),
                           (0.0, 30.0, 180.0), (0.0, -30.0, 0.0), (180.0, 30.0, 0.0)):
            seeds.append(base + np.array([0.0, 0.0, 0.0, a4, a5 - 30.0, a6]))
        return seeds

    def _solutions(self, source_room: ArrayLike, target_room: ArrayLike,
                   seed_deg: ArrayLike | None, tol_mm: float):
        """Yield the IK result of each seed in turn (rad)."""
        src = _vec3(source_room, "source_room")
        tgt = _vec3(target_room, "target_room")
        if np.linalg.norm(tgt - src) < 1.0:
            raise ValueError("source_room and target_room coincide: no beam direction")
        for seed in self._seeds(src, seed_deg):
            yield solve_pointing_ik(self.chain, self.room_from_base_mm, src, tgt,
                                    np.radians(seed), tol_mm=tol_mm)

    def solve(self, source_room: ArrayLike, target_room: ArrayLike, *,
              seed_deg: ArrayLike | None = None, tol_mm: float = 1e-4) -> PointingSolution:
        """Pointing IK with several seeds; returns the first good :class:`PointingSolution`
        (converged, not near-singular), else the best attempt.

        The given seed is tried first, then postures facing the node with the wrist rolled
        by 0, ±90°, 180°.
        """
        best: PointingSolution | None = None
        for sol in self._solutions(source_room, target_room, seed_deg, tol_mm):
            if sol.converged and sol.sigma_min >= SINGULAR_SIGMA_MM:
                return sol
            if best is None or (sol.converged, -sol.position_error_mm) > (
                    best.converged, -best.position_error_mm):
                best = sol
        assert best is not None
        return best

    def solve_pointing(self, source_room: ArrayLike, target_room: ArrayLike, *,
                       seed_deg: ArrayLike | None = None) -> NDArray[np.float64]:
        """Joints (deg, shape (6,)) placing the linac source at ``source_room`` (mm) with the
        beam axis through ``target_room`` (mm); residuals < 1e-4 mm.

        Raises
        ------
        PointingFailed
            When no seed converges (outside the workspace, or blocked by joint limits).
        """
        sol = self.solve(source_room, target_room, seed_deg=seed_deg)
        if not sol.converged:
            raise PointingFailed(self._ik_reason(sol, _vec3(source_room, "source_room")))
        return np.degrees(sol.q_rad)

    def _ik_reason(self, sol: PointingSolution, src: NDArray[np.float64]) -> str:
        shoulder = self.room_from_base_mm[:3, 3] + self.room_from_base_mm[:3, 2] * 675.0
        dist = float(np.linalg.norm(src - shoulder))
        where = (f"source {np.round(src, 1).tolist()} mm is {dist:.0f} mm from the shoulder; "
                 f"best IK misses it by {sol.position_error_mm:.1f} mm")
        if sol.at_limit:
            return f"joint limit: {where}"
        return f"unreachable (outside the workspace): {where}"

    # ------------------------------------------------------------------ collisions
    def collisions(self, *, margin_mm: float | None = None) -> list[tuple[str, str]]:
        """(robot link, body) pairs closer than the margin at the current joints.

        Bodies: room obstacles by name, ``"beam A"``/``"beam B"`` (the linac or arm blocking
        an imaging beam, no margin), and ``"self: <link>"`` (linac against the arm).
        """
        margin = (self.margin_mm if margin_mm is None else margin_mm) * _M
        c = self._client
        hits: list[tuple[str, str]] = []
        for body, bid in zip(self.bodies, self._body_ids, strict=True):
            dist = margin if body.obstacle else 0.0
            pts = pb.getClosestPoints(self.robot_id, bid, dist, physicsClientId=c)
            links = sorted({p[3] for p in pts})
            hits += [(self._link_names[li], body.name) for li in links]
        for li in self._self_links:
            if pb.getClosestPoints(self.robot_id, self.robot_id, margin,
                                   linkIndexA=self._linac_link, linkIndexB=li,
                                   physicsClientId=c):
                hits.append(("linac", f"self: {self._link_names[li]}"))
        return hits

    def check_node(self, source_room: ArrayLike, target_room: ArrayLike, *,
                   seed_deg: ArrayLike | None = None) -> NodeCheck:
        """Is this pointing usable? Reachable, within limits, not singular, collision-free.

        Parameters
        ----------
        source_room, target_room : array-like, shape (3,)
            Linac source and target (room mm).
        seed_deg : array-like, shape (6,), optional
            IK start posture (deg).

        Returns
        -------
        NodeCheck
            The first IK solution (over several seeds) that passes every check; else the
            first converged solution's failure, else the IK failure. The robot is left at
            the solution reported.
        """
        src = _vec3(source_room, "source_room")
        first: NodeCheck | None = None
        best_attempt: PointingSolution | None = None
        for sol in self._solutions(src, target_room, seed_deg, 1e-4):
            if not sol.converged:
                if best_attempt is None or sol.position_error_mm < best_attempt.position_error_mm:
                    best_attempt = sol
                continue
            self.set_joints(np.degrees(sol.q_rad))
            verdict = self._verdict(sol)
            if verdict.ok:
                return verdict
            first = first or verdict
        if first is not None:
            self.set_joints(first.joints_deg)
            return first
        assert best_attempt is not None
        self.set_joints(np.degrees(best_attempt.q_rad))
        return NodeCheck(False, self._ik_reason(best_attempt, src))

    def _verdict(self, sol: PointingSolution) -> NodeCheck:
        """Singularity and collision verdict for a converged solution (robot already there)."""
        q_deg = np.degrees(sol.q_rad)
        if sol.sigma_min < SINGULAR_SIGMA_MM:
            return NodeCheck(False, f"singular: pointing Jacobian sigma_min "
                             f"{sol.sigma_min:.1f} mm/rad < {SINGULAR_SIGMA_MM:.0f}", q_deg)
        hits = self.collisions()
        if hits:
            bodies = tuple(dict.fromkeys(b for _, b in hits))
            obstacles = [f"{link} with {b}" for link, b in hits if not b.startswith("beam")]
            if obstacles:
                reason = "collision: " + ", ".join(obstacles)
            else:
                reason = "blocks imaging " + " and ".join(
                    dict.fromkeys(b for _, b in hits if b.startswith("beam")))
            return NodeCheck(False, reason, q_deg, bodies)
        return NodeCheck(True, "ok", q_deg)

    # ------------------------------------------------------------------ rendering
    def render_frame(self, width: int = 480, height: int = 360, *,
                     eye_room: ArrayLike = (2600.0, -2200.0, 2400.0),
                     look_at_room: ArrayLike = (0.0, 0.0, 700.0),
                     fov_deg: float = 60.0) -> NDArray[np.uint8]:
        """Render the scene headlessly (PyBullet TinyRenderer).

        Parameters
        ----------
        width, height : int
            Image size (pixels).
        eye_room, look_at_room : array-like, shape (3,)
            Camera position and the point it looks at (room mm). Room -y is up.

        Returns
        -------
        ndarray, shape (height, width, 3), uint8
            RGB image, row 0 at the top.
        """
        if not (8 <= width <= 4096 and 8 <= height <= 4096):
            raise ValueError(f"render size must be 8..4096 pixels, got {width}x{height}")
        eye = _vec3(eye_room, "eye_room") * _M
        at = _vec3(look_at_room, "look_at_room") * _M
        view = pb.computeViewMatrix(eye.tolist(), at.tolist(), [0.0, -1.0, 0.0],
                                    physicsClientId=self._client)
        proj = pb.computeProjectionMatrixFOV(fov_deg, width / height, 0.05, 20.0,
                                             physicsClientId=self._client)
        img = pb.getCameraImage(width, height, view, proj, renderer=pb.ER_TINY_RENDERER,
                                physicsClientId=self._client)
        rgba = np.reshape(np.asarray(img[2], dtype=np.uint8), (height, width, 4))
        return np.ascontiguousarray(rgba[:, :, :3])
