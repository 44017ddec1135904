"""Kinematic chain of the robot + linac, read from the shipped URDF; FK and Jacobian.

The URDF (``cyberknife_sim/data/robot/kr240_linac.urdf``) is the single source of truth for
the joint origins, axes, limits and speeds; PyBullet loads the same file for collisions and
rendering. Here lengths are **mm** (URDF metres × 1000) and angles radians; the public
robot API converts to degrees. The hot kinematics (beam source, pointing Jacobian) run as
compiled kernels (:mod:`._fastik`); :meth:`Chain.frames` (all joint frames) stays in numpy.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from . import _fastik
from ._fastik import pack_chain

__all__ = [
    "JOINT_ACCEL_LIMIT_DEG_S2",
    "Chain",
    "load_chain",
    "urdf_path",
]

JOINT_ACCEL_LIMIT_DEG_S2 = np.array([200.0, 200.0, 200.0, 400.0, 400.0, 400.0])
"""Maximum joint accelerations (deg/s²). ASSUMPTION: KUKA does not publish these; values of
the order a KR 240-class arm reaches with a ~150 kg payload (about 0.5-1 s to full speed)."""


def urdf_path() -> Path:
    """Path of the shipped robot + linac URDF (package data)."""
    return Path(str(resources.files("cyberknife_sim") / "data" / "robot" / "kr240_linac.urdf"))


def _vec(text: str | None, default: str) -> NDArray[np.float64]:
    return np.array([float(v) for v in (text or default).split()], dtype=np.float64)


def _rpy_matrix(rpy: NDArray[np.float64]) -> NDArray[np.float64]:
    r, p, y = rpy
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Chain:
    """Serial chain: six revolute joints, then a fixed flange → beam-source transform.

    Attributes
    ----------
    joint_names : tuple of str
        URDF joint names of the six actuated joints, base first.
    link_names : tuple of str
        URDF child link of each actuated joint.
    origins_mm : ndarray, shape (6, 4, 4)
        Fixed transform parent-link → joint frame (mm) of each joint.
    axes : ndarray, shape (6, 3)
        Unit joint axes in the joint frames.
    lower_rad, upper_rad : ndarray, shape (6,)
        Joint limits (rad).
    velocity_rad_s : ndarray, shape (6,)
        Maximum joint speeds (rad/s).
    accel_rad_s2 : ndarray, shape (6,)
        Maximum joint accelerations (rad/s², assumption).
    flange_from_source_mm : ndarray, shape (4, 4)
        Beam-source frame in the last link (flange) frame; beam along its +z (mm).
    axis_index : tuple of int
        Which coordinate axis (0 x, 1 y, 2 z) of its joint frame each joint turns about.
    """

    joint_names: tuple[str, ...]
    link_names: tuple[str, ...]
    origins_mm: NDArray[np.float64]
    axes: NDArray[np.float64]
    lower_rad: NDArray[np.float64]
    upper_rad: NDArray[np.float64]
    velocity_rad_s: NDArray[np.float64]
    accel_rad_s2: NDArray[np.float64]
    flange_from_source_mm: NDArray[np.float64]
    axis_index: tuple[int, ...]

    def frames(self, q_rad: NDArray[np.float64],
               base_mm: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Joint frames and the beam-source frame.

        Parameters
        ----------
        q_rad : ndarray, shape (6,)
            Joint angles (rad).
        base_mm : ndarray, shape (4, 4)
            ``room_from_base`` (mm).

        Returns
        -------
        joints : ndarray, shape (6, 4, 4)
            ``room_from_joint_i`` after each joint's rotation (mm).
        source : ndarray, shape (4, 4)
            ``room_from_source`` (mm); beam direction is column 2 of the rotation.
        """
        out = np.empty((6, 4, 4))
        t = np.asarray(base_mm, dtype=np.float64)
        for i in range(6):
            t = t @ self.origins_mm[i]
            r = np.eye(4)
            r[:3, :3] = _elementary(self.axis_index[i], float(q_rad[i]))
            t = t @ r
            out[i] = t
        return out, t @ self.flange_from_source_mm

    @cached_property
    def packed(self) -> NDArray[np.float64]:
        """Joint offsets, flange → source, limits and axis indices packed for the compiled
        kernels (:mod:`._fastik`), shape (KIN_SIZE,); computed once per chain."""
        return pack_chain(self.origins_mm, self.axis_index, self.flange_from_source_mm,
                          self.lower_rad, self.upper_rad)

    def pointing_jacobian(self, q_rad: NDArray[np.float64], base_mm: NDArray[np.float64]
                          ) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                     NDArray[np.float64], NDArray[np.float64]]:
        """Source position, beam direction and their Jacobians (room frame).

        Parameters
        ----------
        q_rad : ndarray, shape (6,)
            Joint angles (rad).
        base_mm : ndarray, shape (4, 4)
            ``room_from_base`` (mm).

        Returns
        -------
        source_mm : ndarray, shape (3,)
        direction : ndarray, shape (3,)
            Unit beam direction.
        jv : ndarray, shape (3, 6)
            d(source)/dq (mm/rad).
        jw : ndarray, shape (3, 6)
            Angular velocity of the linac per joint rate (rad/rad).
        """
        return _fastik.pointing_jacobian(self.packed, _f64(base_mm), _f64(q_rad))

    def source_axis(self, q_rad: NDArray[np.float64], base_mm: NDArray[np.float64]
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Source position (room mm) and unit beam direction at ``q_rad`` (rad): the forward
        kinematics of :meth:`pointing_jacobian` without the Jacobian (same arithmetic, same
        result)."""
        return _fastik.source_axis(self.packed, _f64(base_mm), _f64(q_rad))


def _f64(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """``a`` as a C-contiguous float64 array (no copy when it already is one)."""
    return np.ascontiguousarray(a, dtype=np.float64)


_I1 = [1, 2, 0]
_I2 = [2, 0, 1]


def cross_rows(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Row-wise cross product of (n, 3) arrays (or of two (3,) vectors); cheaper than np.cross
    for the tiny arrays of the control loop."""
    if a.ndim == 1 and b.ndim == 1:
        return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2],
                         a[0] * b[1] - a[1] * b[0]])
    return a[..., _I1] * b[..., _I2] - a[..., _I2] * b[..., _I1]


def _elementary(axis: int, angle_rad: float) -> NDArray[np.float64]:
    """Rotation matrix about room axis 0 (x), 1 (y) or 2 (z)."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    if axis == 0:
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    if axis == 1:
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@lru_cache(maxsize=4)
def load_chain(path: str | None = None) -> Chain:
    """Read the six actuated joints and the flange → beam-source transform from a URDF.

    Parameters
    ----------
    path : str, optional
        URDF file; the shipped one by default.

    Returns
    -------
    Chain
        Lengths converted to mm.
    """
    root = ET.parse(path or urdf_path()).getroot()
    joints = {j.find("child").get("link"): j for j in root.findall("joint")}
    # walk from the beam_source link back to the root
    order = []
    link = "beam_source"
    while link in joints:
        order.append(joints[link])
        link = joints[link].find("parent").get("link")
    order.reverse()
    names, links, origins, axes, lo, hi, vel = [], [], [], [], [], [], []
    fixed_tail = np.eye(4)
    for j in order:
        org = j.find("origin")
        m = np.eye(4)
        if org is not None:
            m[:3, :3] = _rpy_matrix(_vec(org.get("rpy"), "0 0 0"))
            m[:3, 3] = 1000.0 * _vec(org.get("xyz"), "0 0 0")
        if j.get("type") == "revolute":
            if np.any(fixed_tail != np.eye(4)):
                raise ValueError("URDF: fixed joints between actuated joints are not supported")
            names.append(j.get("name"))
            links.append(j.find("child").get("link"))
            origins.append(m)
            a = _vec(j.find("axis").get("xyz"), "1 0 0")
            if not np.allclose(m[:3, :3], np.eye(3)) or sorted(a.tolist()) != [0.0, 0.0, 1.0]:
                raise ValueError(f"URDF joint {j.get('name')}: only translation-only origins "
                                 "and +x/+y/+z axes are supported")
            axes.append(a)
            lim = j.find("limit")
            lo.append(float(lim.get("lower")))
            hi.append(float(lim.get("upper")))
            vel.append(float(lim.get("velocity")))
        elif j.get("type") == "fixed":
            fixed_tail = fixed_tail @ m
        else:
            raise ValueError(f"URDF joint {j.get('name')}: unsupported type {j.get('type')}")
    if len(names) != 6:
        raise ValueError(f"URDF: expected 6 revolute joints to beam_source, got {len(names)}")
    return Chain(
        joint_names=tuple(names), link_names=tuple(links), origins_mm=np.array(origins),
        axes=np.array(axes), lower_rad=np.array(lo), upper_rad=np.array(hi),
        velocity_rad_s=np.array(vel), accel_rad_s2=np.radians(JOINT_ACCEL_LIMIT_DEG_S2),
        flange_from_source_mm=fixed_tail,
        axis_index=tuple(int(np.argmax(a)) for a in axes),
    )
