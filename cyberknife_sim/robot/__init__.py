"""Robot + linac in PyBullet: kinematics, pointing IK, collision checks, motion control."""

from ._chain import JOINT_ACCEL_LIMIT_DEG_S2, Chain, load_chain, urdf_path
from ._control import RobotController, compensated_pointing, traversal_time_s
from ._ik import PointingSolution, pointing_error, pointing_sigma_min, solve_pointing_ik
from ._room_bodies import RoomBody, imaging_geometry, room_bodies, room_from_base
from ._world import NodeCheck, PointingFailed, RobotWorld

__all__ = [
    "JOINT_ACCEL_LIMIT_DEG_S2",
    "Chain",
    "NodeCheck",
    "PointingFailed",
    "PointingSolution",
    "RobotController",
    "RobotWorld",
    "RoomBody",
    "compensated_pointing",
    "imaging_geometry",
    "load_chain",
    "pointing_error",
    "pointing_sigma_min",
    "room_bodies",
    "room_from_base",
    "solve_pointing_ik",
    "traversal_time_s",
    "urdf_path",
]
