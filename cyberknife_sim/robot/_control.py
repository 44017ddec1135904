"""Motion control: differential-IK tracking at joint speed/acceleration limits with servo lag.

The controller keeps two joint vectors: the *desired* joints (kinematic solution of the
latest command, updated by one damped Gauss-Newton step per control step around the node's
IK solution) and the *actual* joints (a first-order servo with time constant
``servo_lag_s`` following the delayed command, clipped to the joint speed and acceleration
limits). The beam axis reported is that of the actual joints plus encoder/repeatability
noise, so the dynamic targeting error is real, not assumed zero.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

from ._chain import _elementary, cross_rows
from ._ik import _perp_basis, pointing_step
from ._world import RobotWorld, _vec3

__all__ = ["RobotController", "compensated_pointing", "traversal_time_s"]

JACOBIAN_REUSE_RAD = 2e-3
"""The refinement reuses the damped pseudo-inverse of the pointing Jacobian while the desired
joints stay within this distance (rad, max over joints) of where it was computed; the step
still uses the exact pointing error, so the fixed point (zero error) is the same, only the
convergence rate changes (performance: one forward kinematics instead of a Jacobian and a
linear solve per step)."""


def _source_axis(chain, q_rad: NDArray[np.float64], base_mm: NDArray[np.float64]
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Beam source (mm) and unit direction of ``q_rad``: the forward kinematics of
    ``chain.pointing_jacobian`` without the Jacobian (same arithmetic, same result)."""
    rot = base_mm[:3, :3]
    pos = base_mm[:3, 3]
    offsets = chain.origins_mm[:, :3, 3]
    for i in range(6):
        pos = pos + rot @ offsets[i]
        rot = rot @ _elementary(chain.axis_index[i], float(q_rad[i]))
    return pos + rot @ chain.flange_from_source_mm[:3, 3], rot @ chain.flange_from_source_mm[:3, 2]


def compensated_pointing(node_room: ArrayLike, planned_target_room: ArrayLike,
                         target_room: ArrayLike, *, rotation_deg: ArrayLike | None = None
                         ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Source position and beam direction that follow a moved target (room mm).

    Translation compensation moves the node with the target, keeping the planned beam
    direction; optional rotation compensation turns node and direction about the target by
    the anatomy's rotation vector ``rotation_deg`` (axis × angle, degrees; keep it small).

    Returns
    -------
    source_room : ndarray, shape (3,)
        mm.
    direction_room : ndarray, shape (3,)
        Unit beam direction.
    """
    node = _vec3(node_room, "node_room")
    planned = _vec3(planned_target_room, "planned_target_room")
    target = _vec3(target_room, "target_room")
    offset = node - planned
    if rotation_deg is not None:
        offset = Rotation.from_rotvec(_vec3(rotation_deg, "rotation_deg"),
                                      degrees=True).apply(offset)
    dist = float(np.linalg.norm(offset))
    if dist < 1.0:
        raise ValueError("node_room coincides with the planned target: no beam direction")
    return target + offset, -offset / dist


def traversal_time_s(q_from_deg: ArrayLike, q_to_deg: ArrayLike, *,
                     velocity_deg_s: ArrayLike, accel_deg_s2: ArrayLike) -> float:
    """Time of a synchronized point-to-point joint move with trapezoidal profiles (s).

    Each joint needs ``d/v + v/a`` (cruise) or ``2·sqrt(d/a)`` (triangle); the move takes
    the slowest joint's time.
    """
    d = np.abs(np.asarray(q_to_deg, dtype=np.float64) - np.asarray(q_from_deg, dtype=np.float64))
    v = np.asarray(velocity_deg_s, dtype=np.float64)
    a = np.asarray(accel_deg_s2, dtype=np.float64)
    tri = d <= v * v / a
    t = np.where(tri, 2.0 * np.sqrt(d / a), d / v + v / a)
    return float(np.max(t)) if t.size else 0.0


class RobotController:
    """Servo-lagged, speed- and acceleration-limited tracking of a commanded pointing.

    Parameters
    ----------
    world : RobotWorld
        Supplies the kinematics and limits; its PyBullet joints are updated only by
        :meth:`sync_world` (rendering), not every step.
    servo_lag_s : float, optional
        First-order servo time constant (s); default ``scene.room.robot.servo_lag_s``.
    encoder_noise_deg : float, optional
        Joint repeatability noise, 1 sigma (deg), drawn each step; default from the scene.
    rng : numpy.random.Generator, optional
        Required when ``encoder_noise_deg > 0``.
    command_latency_s : float, optional
        Delay from a command to the servo acting on it (s); default from the scene.
    planned_target_room : array-like, shape (3,)
        The target position the plan's nodes were aimed at (room mm; the origin).
    """

    def __init__(self, world: RobotWorld, *, servo_lag_s: float | None = None,
                 encoder_noise_deg: float | None = None, rng: np.random.Generator | None = None,
                 command_latency_s: float | None = None,
                 planned_target_room: ArrayLike = (0.0, 0.0, 0.0)):
        rs = world.scene.room.robot
        self.world = world
        self.chain = world.chain
        self.servo_lag_s = float(rs.servo_lag_s if servo_lag_s is None else servo_lag_s)
        self.encoder_noise_deg = float(rs.encoder_noise_deg if encoder_noise_deg is None
                                       else encoder_noise_deg)
        self.command_latency_s = float(rs.command_latency_s if command_latency_s is None
                                       else command_latency_s)
        for name, val in (("servo_lag_s", self.servo_lag_s),
                          ("encoder_noise_deg", self.encoder_noise_deg),
                          ("command_latency_s", self.command_latency_s)):
            if not (math.isfinite(val) and val >= 0.0):
                raise ValueError(f"{name} must be a finite number >= 0, got {val}")
        if self.encoder_noise_deg > 0.0 and rng is None:
            raise ValueError("encoder_noise_deg > 0 needs an rng (numpy.random.Generator)")
        self.rng = rng
        self.planned_target_room = _vec3(planned_target_room, "planned_target_room")
        self._base = world.room_from_base_mm
        self._lo, self._hi = self.chain.lower_rad, self.chain.upper_rad
        self._vmax, self._amax = self.chain.velocity_rad_s, self.chain.accel_rad_s2
        self.reset(world.joints_deg)

    # ------------------------------------------------------------------ state
    def reset(self, q_deg: ArrayLike, *, time_s: float = 0.0) -> None:
        """Put the robot at rest at ``q_deg`` (deg), with that as the command; clear history."""
        q = np.radians(np.asarray(q_deg, dtype=np.float64))
        if q.shape != (6,):
            raise ValueError(f"q_deg: expected 6 joint angles, got shape {q.shape}")
        self.time_s = float(time_s)
        self._q = q.copy()
        self._qd = np.zeros(6)
        self._q_des = q.copy()
        self._noise = np.zeros(6)
        self._queue: deque[tuple[float, NDArray[np.float64]]] = deque([(-math.inf, q.copy())])
        self._node: NDArray[np.float64] | None = None
        self._goal: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None
        self._axis: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None
        self._gain: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64],
                          float] | None = None
        self._turn: tuple[bytes, bytes, NDArray[np.float64]] | None = None

    @property
    def joints_deg(self) -> NDArray[np.float64]:
        """Actual joints including the current encoder/repeatability noise (deg)."""
        return np.degrees(self._q + self._noise)

    @property
    def desired_joints_deg(self) -> NDArray[np.float64]:
        """Kinematic solution of the latest command (deg)."""
        return np.degrees(self._q_des)

    @property
    def joint_velocity_deg_s(self) -> NDArray[np.float64]:
        """Actual joint velocities (deg/s)."""
        return np.degrees(self._qd)

    # ------------------------------------------------------------------ commands
    def command(self, node_room: ArrayLike, target_room: ArrayLike, *,
                rotation_deg: ArrayLike | None = None,
                node_joints_deg: ArrayLike | None = None) -> None:
        """Command the linac to node ``node_room`` with the beam through ``target_room``.

        The pointing follows :func:`compensated_pointing` (translation compensation,
        optional small rotation). On a new node the desired joints jump to the node's IK
        solution (``node_joints_deg``, or solved here); otherwise they are refined by one
        differential-IK step per control step.

        Parameters
        ----------
        node_room, target_room : array-like, shape (3,)
            Plan node (aimed at ``planned_target_room``) and the current target (room mm).
        rotation_deg : array-like, shape (3,), optional
            Anatomy rotation vector to compensate (deg).
        node_joints_deg : array-like, shape (6,), optional
            IK solution at the node (deg), e.g. from the plan.
        """
        node = np.asarray(node_room, dtype=np.float64)
        # the rotated node offset changes only with the node or the rotation (cached)
        rot_key = b"" if rotation_deg is None else np.asarray(rotation_deg, np.float64).tobytes()
        if self._turn is None or self._turn[0] != node.tobytes() or self._turn[1] != rot_key:
            src0, _ = compensated_pointing(node, self.planned_target_room,
                                           self.planned_target_room, rotation_deg=rotation_deg)
            self._turn = (node.tobytes(), rot_key, src0 - self.planned_target_room)
        offset = self._turn[2]
        target = _vec3(target_room, "target_room")
        src, d = target + offset, -offset / float(np.linalg.norm(offset))
        if self._node is None or not np.array_equal(node, self._node):
            if node_joints_deg is None:
                q = self.world.solve_pointing(node, self.planned_target_room,
                                              seed_deg=np.degrees(self._q_des))
            else:
                q = np.asarray(node_joints_deg, dtype=np.float64)
            self._q_des = np.radians(q)
            self._node = node.copy()
            self._gain = None
        self._goal = (src, d)

    def _refine(self) -> None:
        """One damped Gauss-Newton step of the desired joints toward the goal pointing."""
        if self._goal is None:
            return
        src, d = self._goal
        lever = float(np.linalg.norm(src - self.planned_target_room))
        g = self._gain
        if (g is None or abs(g[3] - lever) > 1e-6 * lever
                or float(np.max(np.abs(self._q_des - g[0]))) > JACOBIAN_REUSE_RAD):
            dq, _, _ = pointing_step(self.chain, self._q_des, self._base, src, d,
                                     lever_mm=lever)
            self._gain = self._pseudo_inverse(lever)
        else:
            p, d_now = _source_axis(self.chain, self._q_des, self._base)
            e_w = cross_rows(d_now, d)
            e = np.concatenate([src - p, lever * (g[1] @ e_w)])
            dq = g[2] @ e
            step = float(np.max(np.abs(dq)))
            if step > 0.3:  # pointing_step's max_step_rad
                dq *= 0.3 / step
        self._q_des = np.clip(self._q_des + dq, self._lo, self._hi)

    def _pseudo_inverse(self, lever: float) -> tuple:
        """(q, basis, damped pseudo-inverse A^T (A A^T + λ² I)^-1, lever) at the desired
        joints, as in :func:`pointing_step` (damping 1e-3)."""
        q = self._q_des.copy()
        _, d, jv, jw = self.chain.pointing_jacobian(q, self._base)
        basis = _perp_basis(d)
        a = np.vstack([jv, lever * (basis @ jw)])
        aat = a @ a.T
        lam2 = 1e-6 * float(np.trace(aat)) / 5.0
        return q, basis, a.T @ np.linalg.inv(aat + lam2 * np.eye(5)), lever

    def step(self, dt_s: float) -> None:
        """Advance the robot by ``dt_s`` seconds.

        The command issued now enters the latency queue; the servo follows the newest
        command at least ``command_latency_s`` old, as a first-order lag clipped to the
        speed from which it can still stop at the acceleration limit, then to the joint
        acceleration and speed limits.
        """
        if not (dt_s > 0.0 and math.isfinite(dt_s)):
            raise ValueError(f"dt_s must be a positive number, got {dt_s}")
        self._refine()
        self._queue.append((self.time_s, self._q_des.copy()))
        due = self.time_s - self.command_latency_s + 1e-12
        while len(self._queue) > 1 and self._queue[1][0] <= due:
            self._queue.popleft()
        q_cmd = self._queue[0][1]
        frac = -math.expm1(-dt_s / self.servo_lag_s) if self.servo_lag_s > 0.0 else 1.0
        err = q_cmd - self._q
        v = frac * err / dt_s
        # never faster than a stop at the acceleration limit allows (no overshoot)
        v_stop = np.sqrt(2.0 * self._amax * np.abs(err))
        v = np.clip(v, -v_stop, v_stop)
        dv = np.clip(v - self._qd, -self._amax * dt_s, self._amax * dt_s)
        v = np.clip(self._qd + dv, -self._vmax, self._vmax)
        self._q = np.clip(self._q + v * dt_s, self._lo, self._hi)
        self._qd = v
        self._axis = None
        self.time_s += dt_s
        if self.encoder_noise_deg > 0.0:
            assert self.rng is not None
            self._noise = np.radians(self.rng.normal(0.0, self.encoder_noise_deg, 6))

    # ------------------------------------------------------------------ outputs
    def beam_axis(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Actual beam source (room mm) and unit direction, from the simulated joints."""
        if self._axis is None:  # forward kinematics once per step
            self._axis = _source_axis(self.chain, self._q + self._noise, self._base)
        return self._axis

    def targeting_error_mm(self, target_room: ArrayLike) -> float:
        """Distance from ``target_room`` (mm) to the actual beam axis (mm)."""
        p, d = self.beam_axis()
        v = np.asarray(target_room, dtype=np.float64) - p
        return float(np.linalg.norm(v - (v @ d) * d))

    def sync_world(self) -> None:
        """Copy the actual joints into the PyBullet world (before rendering or collisions)."""
        self.world.set_joints(self.joints_deg)
