"""The robot seam of the loop: the plan and the PyBullet robot's servo-lagged controller.

:class:`ControllerRobot` adapts :class:`cyberknife_sim.robot.RobotController` to the loop:
``goto(beam)`` starts the move to a beam's node, ``command(beam, target_room, rotation_deg)``
aims that beam through the commanded target (translation + rotation compensation about the
beam's aim point), ``step`` advances the servo, ``beam_axis`` comes from the simulated joints.
The robot is "arrived" at a node once the actual axis passes within
``ARRIVAL_TOLERANCE_MM`` of the commanded target and the source is within
``ARRIVAL_SOURCE_MM`` of its commanded position; beam-on waits for that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ..plan import Beam
from ..robot._fastik import axis_distance
from ..scene import Scene
from ._seams import RobotSeam

if TYPE_CHECKING:
    from ..robot import RobotController

__all__ = ["ARRIVAL_SOURCE_MM", "ARRIVAL_TOLERANCE_MM", "ControllerRobot",
           "build_plan_and_robot"]

ARRIVAL_TOLERANCE_MM = 0.3
"""Axis-to-commanded-target distance below which the robot counts as at the node (mm)."""

ARRIVAL_SOURCE_MM = 5.0
"""Source-to-commanded-source distance below which the robot counts as at the node (mm)."""


class ControllerRobot:
    """Loop seam around a :class:`~cyberknife_sim.robot.RobotController` (see module doc);
    satisfies :class:`._seams.RobotSeam`."""

    def __init__(self, controller: RobotController):
        from ..robot._control import compensated_pointing

        self._pointing = compensated_pointing
        self.controller = controller
        self.command_latency_s = float(controller.command_latency_s)
        self._cmd: tuple[NDArray[np.float64], NDArray[np.float64], NDArray] | None = None
        self.following_error_mm = float("inf")
        self.arrived = False
        self._key: tuple | None = None
        self._offset = np.zeros(3)
        self._axis = controller.beam_axis()

    def goto(self, beam: Beam) -> None:
        """Start moving to ``beam``'s node (the servo limits set the traversal time)."""
        self.arrived = False
        self.controller.planned_target_room = np.asarray(beam.aim_room, dtype=np.float64)

    def command(self, beam: Beam, target_room: NDArray[np.float64],
                rotation_deg: NDArray[np.float64]) -> None:
        """Aim ``beam`` through ``target_room`` (mm), turned by ``rotation_deg`` (rotvec).

        The rotated node offset changes only with the beam or the rotation; the loop passes
        the same rotation array until a new pair is accepted, so both are compared by
        identity (and the rotation's values when the array is new).
        """
        key = self._key
        if key is None or key[0] is not beam or key[1] is not rotation_deg:
            rot = rotation_deg if np.any(rotation_deg) else None
            src, _ = self._pointing(beam.source_room, beam.aim_room, beam.aim_room,
                                    rotation_deg=rot)
            self._key = key = (beam, rotation_deg, rot)
            self._offset = src - beam.aim_room
        self.controller.command(beam.source_room, target_room, rotation_deg=key[2],
                                node_joints_deg=beam.joints_deg)
        tgt = np.asarray(target_room, dtype=np.float64)
        self._cmd = (tgt + self._offset, tgt)

    def step(self, t_s: float, dt_s: float) -> None:
        """Advance the servo by ``dt_s`` (s) and update the following error and arrival."""
        self.controller.step(dt_s)
        self._axis = p, d = self.controller.beam_axis()
        if self._cmd is None:
            return
        src, tgt = self._cmd
        self.following_error_mm = axis_distance(p, d, tgt)
        if not self.arrived:
            self.arrived = (self.following_error_mm < ARRIVAL_TOLERANCE_MM
                            and float(np.linalg.norm(p - src)) < ARRIVAL_SOURCE_MM)

    def beam_axis(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Actual beam source (room mm) and unit direction from the simulated joints (as of
        the last :meth:`step`)."""
        return self._axis

    def joints_deg(self) -> NDArray[np.float64]:
        """The simulated joint angles (deg)."""
        return self.controller.joints_deg


def build_plan_and_robot(scene: Scene, *, rng: np.random.Generator,
                         beams: list[Beam] | None = None, robot: RobotSeam | None = None
                         ) -> tuple[list[Beam], RobotSeam]:
    """The scene's plan (file or generated) and the robot seam, built on one RobotWorld.

    Returns
    -------
    beams : list of Beam
        The plan's beams in delivery order.
    robot : RobotSeam
        A :class:`ControllerRobot`, or the one passed in.
    """
    from ..plan import plan_for_scene
    from ..robot import RobotController, RobotWorld

    rng_plan, rng_robot = rng.spawn(2)
    world = RobotWorld(scene)
    if beams is None:
        beams = list(plan_for_scene(scene, world, rng_plan).beams)
    if robot is None:
        ctrl = RobotController(world, rng=rng_robot)
        if beams and beams[0].joints_deg is not None:
            ctrl.reset(beams[0].joints_deg)
        robot = ControllerRobot(ctrl)
    return beams, robot
