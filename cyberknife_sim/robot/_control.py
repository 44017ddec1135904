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

from . import _fastik
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
    return chain.source_axis(q_rad, base_mm)


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
        self.planned_target_room = planned_target_room
        f64 = np.ascontiguousarray
        self._kin = self.chain.packed
        self._base = f64(world.room_from_base_mm, dtype=np.float64)
        self._dyn = f64(np.stack([self.chain.velocity_rad_s, self.chain.accel_rad_s2]),
                        dtype=np.float64)
        self.reset(world.joints_deg)

    @property
    def planned_target_room(self) -> NDArray[np.float64]:
        """The point the commanded node is aimed at in the plan (room mm, shape (3,))."""
        return self._planned

    @planned_target_room.setter
    def planned_target_room(self, value: ArrayLike) -> None:
        self._planned = np.ascontiguousarray(_vec3(value, "planned_target_room"))

    # ------------------------------------------------------------------ state
    def reset(self, q_deg: ArrayLike, *, time_s: float = 0.0) -> None:
        """Put the robot at rest at ``q_deg`` (deg), with that as the command; clear history."""
        q = np.radians(np.asarray(q_deg, dtype=np.float64))
        if q.shape != (6,):
            raise ValueError(f"q_deg: expected 6 joint angles, got shape {q.shape}")
        self.time_s = float(time_s)
        # one state vector for the compiled step (layout: _fastik.STATE_*); named views
        st = self._state = np.zeros(_fastik.STATE_SIZE)
        self._q, self._qd = st[_fastik.STATE_Q], st[_fastik.STATE_QD]
        self._q_des, self._noise = st[_fastik.STATE_Q_DES], st[_fastik.STATE_NOISE]
        self._q[:] = q
        self._q_des[:] = q
        # reused damped pseudo-inverse (see JACOBIAN_REUSE_RAD): joints and lever where it was
        # computed (in the state; lever NaN = none yet), basis and A^T (A A^T + λ² I)^-1
        st[_fastik.STATE_GAIN_LEVER] = math.nan
        self._gain_basis = np.zeros((2, 3))
        self._gain_pinv = np.zeros((6, 5))
        self._queue: deque[tuple[float, NDArray[np.float64]]] = deque([(-math.inf, q.copy())])
        self._node: NDArray[np.float64] | None = None
        self._node_key = b""
        self._goal = np.zeros((2, 3))  # commanded source (mm) and unit beam direction
        self._has_goal = False
        self._axis: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None
        self._axis_in_state = False  # the last step left the beam axis in the state
        self._turn: tuple[tuple[bytes, bytes, bytes], NDArray[np.float64],
                          NDArray[np.float64]] | None = None

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
        node_key = node.tobytes()
        # the rotated node offset and its direction change only with the node, the rotation
        # or the planned aim point (beams of one node aimed at different points)
        rot_key = b"" if rotation_deg is None else np.asarray(rotation_deg, np.float64).tobytes()
        planned = self._planned
        turn_key = (node_key, rot_key, planned.tobytes())
        turn = self._turn
        if turn is None or turn[0] != turn_key:
            src0, _ = compensated_pointing(node, planned, planned, rotation_deg=rotation_deg)
            offset = src0 - planned
            turn = self._turn = (turn_key, offset,
                                 np.ascontiguousarray(-offset / float(np.linalg.norm(offset))))
        target = _vec3(target_room, "target_room")
        if self._node is None or (node_key != self._node_key
                                  and not np.array_equal(node, self._node)):
            if node_joints_deg is None:
                q = self.world.solve_pointing(node, self._planned,
                                              seed_deg=np.degrees(self._q_des))
            else:
                q = np.asarray(node_joints_deg, dtype=np.float64)
                if q.shape != (6,):
                    raise ValueError(f"node_joints_deg: expected 6 joint angles (deg), "
                                     f"got shape {q.shape}")
            self._q_des[:] = np.radians(q)
            self._node = node.copy()
            self._state[_fastik.STATE_GAIN_LEVER] = math.nan
        self._node_key = node_key
        np.add(target, turn[1], out=self._goal[0])
        self._goal[1] = turn[2]
        self._has_goal = True

    def step(self, dt_s: float) -> None:
        """Advance the robot by ``dt_s`` seconds.

        The desired joints take one differential-IK step toward the latest command. The
        command issued now enters the latency queue; the servo follows the newest command at
        least ``command_latency_s`` old, as a first-order lag clipped to the speed from which
        it can still stop at the acceleration limit, then to the joint acceleration and speed
        limits. One compiled kernel (:func:`._fastik.control_step`) does the arithmetic.
        """
        if not (dt_s > 0.0 and math.isfinite(dt_s)):
            raise ValueError(f"dt_s must be a positive number, got {dt_s}")
        dt_s = float(dt_s)
        queue = self._queue
        due = self.time_s - self.command_latency_s + 1e-12
        # the command issued now is due at once without latency; else the newest due one
        now_due = self.time_s <= due
        while len(queue) > 1 and queue[1][0] <= due:
            queue.popleft()
        if self.encoder_noise_deg > 0.0:
            assert self.rng is not None
            self._noise[:] = np.radians(self.rng.normal(0.0, self.encoder_noise_deg, 6))
        frac = -math.expm1(-dt_s / self.servo_lag_s) if self.servo_lag_s > 0.0 else 1.0
        _fastik.control_step(self._kin, self._base, self._state, self._goal, self._planned,
                             self._gain_basis, self._gain_pinv, self._dyn, queue[0][1],
                             now_due, self._has_goal, JACOBIAN_REUSE_RAD, frac, dt_s)
        if now_due:
            queue.clear()
        queue.append((self.time_s, self._q_des.copy()))
        self._axis = None
        self._axis_in_state = True
        self.time_s += dt_s

    # ------------------------------------------------------------------ outputs
    def beam_axis(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Actual beam source (room mm) and unit direction, from the simulated joints."""
        if self._axis is None:  # forward kinematics once per step (done by the step kernel)
            st = self._state
            if self._axis_in_state:
                self._axis = (st[_fastik.STATE_AXIS_P].copy(), st[_fastik.STATE_AXIS_D].copy())
            else:
                self._axis = _fastik.source_axis(self._kin, self._base, self._q + self._noise)
        return self._axis

    def targeting_error_mm(self, target_room: ArrayLike) -> float:
        """Distance from ``target_room`` (mm) to the actual beam axis (mm)."""
        p, d = self.beam_axis()
        t = np.asarray(target_room, dtype=np.float64)
        if t.shape != (3,):
            raise ValueError(f"target_room: expected shape (3,), got {t.shape}")
        return _fastik.axis_distance(p, d, t)

    def sync_world(self) -> None:
        """Copy the actual joints into the PyBullet world (before rendering or collisions)."""
        self.world.set_joints(self.joints_deg)
