"""Compiled (numba) kinematics of the 6-axis chain: forward kinematics, pointing Jacobian,
pointing IK and one control step, on plain float64 arrays.

The numpy versions spent most of their time in Python overhead on 3×3 arrays (plan
generation runs ~17 000 Gauss-Newton steps; the control loop one per 38 ms step). These
kernels do the same arithmetic as the numpy code they replace, loop by loop, so results
agree to floating-point rounding. ``cache=True`` keeps the compiled code in ``__pycache__``.

Packed chain parameters (``kin``, shape (KIN_SIZE,), float64; :func:`pack_chain`):

====================  ==========================================================
``kin[0:18]``         joint origin offsets, parent link → joint (6 × 3, mm)
``kin[18:21]``        beam source position in the flange frame (mm)
``kin[21:24]``        beam direction (+z of the source frame) in the flange frame
``kin[24:30]``        lower joint limits (rad)
``kin[30:36]``        upper joint limits (rad)
``kin[36:42]``        joint axis index (0 x, 1 y, 2 z), stored as float
====================  ==========================================================

Lengths mm, angles rad; ``base`` is ``room_from_base`` (4, 4), mm.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = [
    "KIN_SIZE",
    "STATE_SIZE",
    "axis_distance",
    "control_step",
    "controller_refine",
    "pack_chain",
    "pointing_jacobian",
    "servo_update",
    "solve_pointing",
    "source_axis",
]

KIN_SIZE = 42
MAX_STEP_RAD = 0.3
"""Largest joint step of one Gauss-Newton iteration (rad, max over joints)."""
DAMPING = 1e-3
"""Relative damping of the least-squares steps: λ² = DAMPING² · trace(A Aᵀ) / 5."""


def pack_chain(origins_mm: NDArray[np.float64], axis_index: tuple[int, ...],
               flange_from_source_mm: NDArray[np.float64], lower_rad: NDArray[np.float64],
               upper_rad: NDArray[np.float64]) -> NDArray[np.float64]:
    """The packed chain parameters (layout in the module docstring), shape (KIN_SIZE,)."""
    kin = np.empty(KIN_SIZE)
    kin[0:18] = np.asarray(origins_mm)[:, :3, 3].ravel()
    kin[18:21] = flange_from_source_mm[:3, 3]
    kin[21:24] = flange_from_source_mm[:3, 2]
    kin[24:30] = lower_rad
    kin[30:36] = upper_rad
    kin[36:42] = axis_index
    return kin


@njit(cache=True)
def _rotate(rot, axis, angle):  # pragma: no cover - compiled
    """rot ← rot @ R_axis(angle), in place (3, 3)."""
    c = math.cos(angle)
    s = math.sin(angle)
    for r in range(3):
        a0 = rot[r, 0]
        a1 = rot[r, 1]
        a2 = rot[r, 2]
        if axis == 0:
            rot[r, 1] = a1 * c + a2 * s
            rot[r, 2] = a2 * c - a1 * s
        elif axis == 1:
            rot[r, 0] = a0 * c - a2 * s
            rot[r, 2] = a0 * s + a2 * c
        else:
            rot[r, 0] = a0 * c + a1 * s
            rot[r, 1] = a1 * c - a0 * s


@njit(cache=True)
def _walk(kin, base, q, p, d, z, o):  # pragma: no cover - compiled
    """Forward kinematics: source ``p`` (3,), direction ``d`` (3,), joint axes ``z`` (6, 3)
    and joint origins ``o`` (6, 3), room frame, written in place."""
    rot = np.empty((3, 3))
    pos = np.empty(3)
    for r in range(3):
        pos[r] = base[r, 3]
        for c in range(3):
            rot[r, c] = base[r, c]
    for i in range(6):
        ox = kin[3 * i]
        oy = kin[3 * i + 1]
        oz = kin[3 * i + 2]
        for r in range(3):
            pos[r] += rot[r, 0] * ox + rot[r, 1] * oy + rot[r, 2] * oz
        k = int(kin[36 + i])
        _rotate(rot, k, q[i])
        for r in range(3):
            z[i, r] = rot[r, k]
            o[i, r] = pos[r]
    for r in range(3):
        p[r] = pos[r] + (rot[r, 0] * kin[18] + rot[r, 1] * kin[19] + rot[r, 2] * kin[20])
        d[r] = rot[r, 0] * kin[21] + rot[r, 1] * kin[22] + rot[r, 2] * kin[23]


@njit(cache=True)
def source_axis(kin, base, q):  # pragma: no cover - compiled
    """Beam source (mm) and unit beam direction at joints ``q`` (rad), room frame."""
    p = np.empty(3)
    d = np.empty(3)
    z = np.empty((6, 3))
    o = np.empty((6, 3))
    _walk(kin, base, q, p, d, z, o)
    return p, d


@njit(cache=True)
def pointing_jacobian(kin, base, q):  # pragma: no cover - compiled
    """Source (3,), direction (3,), jv = d(source)/dq (3, 6) and jw (3, 6) (joint axes)."""
    p = np.empty(3)
    d = np.empty(3)
    z = np.empty((6, 3))
    o = np.empty((6, 3))
    _walk(kin, base, q, p, d, z, o)
    jv = np.empty((3, 6))
    jw = np.empty((3, 6))
    for i in range(6):
        rx = p[0] - o[i, 0]
        ry = p[1] - o[i, 1]
        rz = p[2] - o[i, 2]
        jv[0, i] = z[i, 1] * rz - z[i, 2] * ry
        jv[1, i] = z[i, 2] * rx - z[i, 0] * rz
        jv[2, i] = z[i, 0] * ry - z[i, 1] * rx
        jw[0, i] = z[i, 0]
        jw[1, i] = z[i, 1]
        jw[2, i] = z[i, 2]
    return p, d, jv, jw


@njit(cache=True)
def _system(kin, base, q, src, direction, lever, a, e, basis):  # pragma: no cover - compiled
    """The scaled 5×6 pointing Jacobian ``a`` and residual ``e`` (5,) at ``q``, and the
    basis (2, 3) perpendicular to the current beam direction, in place.

    Returns (position error mm, scaled angle error mm)."""
    p = np.empty(3)
    d = np.empty(3)
    z = np.empty((6, 3))
    o = np.empty((6, 3))
    _walk(kin, base, q, p, d, z, o)
    # two unit vectors perpendicular to d (as _ik._perp_basis)
    if abs(d[0]) < 0.9:
        hx, hy = 1.0, 0.0
    else:
        hx, hy = 0.0, 1.0
    ux = d[1] * 0.0 - d[2] * hy
    uy = d[2] * hx - d[0] * 0.0
    uz = d[0] * hy - d[1] * hx
    n = math.sqrt(ux * ux + uy * uy + uz * uz)
    ux /= n
    uy /= n
    uz /= n
    basis[0, 0] = ux
    basis[0, 1] = uy
    basis[0, 2] = uz
    basis[1, 0] = d[1] * uz - d[2] * uy
    basis[1, 1] = d[2] * ux - d[0] * uz
    basis[1, 2] = d[0] * uy - d[1] * ux
    for i in range(6):
        rx = p[0] - o[i, 0]
        ry = p[1] - o[i, 1]
        rz = p[2] - o[i, 2]
        a[0, i] = z[i, 1] * rz - z[i, 2] * ry
        a[1, i] = z[i, 2] * rx - z[i, 0] * rz
        a[2, i] = z[i, 0] * ry - z[i, 1] * rx
        for b in range(2):
            a[3 + b, i] = lever * (basis[b, 0] * z[i, 0] + basis[b, 1] * z[i, 1]
                                   + basis[b, 2] * z[i, 2])
    for r in range(3):
        e[r] = src[r] - p[r]
    wx = d[1] * direction[2] - d[2] * direction[1]
    wy = d[2] * direction[0] - d[0] * direction[2]
    wz = d[0] * direction[1] - d[1] * direction[0]
    for b in range(2):
        e[3 + b] = lever * (basis[b, 0] * wx + basis[b, 1] * wy + basis[b, 2] * wz)
    return (math.sqrt(e[0] * e[0] + e[1] * e[1] + e[2] * e[2]),
            math.sqrt(e[3] * e[3] + e[4] * e[4]))


@njit(cache=True)
def _damped_cholesky(a, low):  # pragma: no cover - compiled
    """Cholesky factor ``low`` (5, 5) of A Aᵀ + λ² I, λ² = DAMPING² trace(A Aᵀ) / 5."""
    m = np.empty((5, 5))
    for i in range(5):
        for j in range(i + 1):
            acc = 0.0
            for k in range(6):
                acc += a[i, k] * a[j, k]
            m[i, j] = acc
            m[j, i] = acc
    lam2 = DAMPING * DAMPING * (m[0, 0] + m[1, 1] + m[2, 2] + m[3, 3] + m[4, 4]) / 5.0
    for i in range(5):
        m[i, i] += lam2
    for j in range(5):
        s = m[j, j]
        for k in range(j):
            s -= low[j, k] * low[j, k]
        low[j, j] = math.sqrt(s)
        for i in range(j + 1, 5):
            s = m[i, j]
            for k in range(j):
                s -= low[i, k] * low[j, k]
            low[i, j] = s / low[j, j]
        for i in range(j):
            low[i, j] = 0.0


@njit(cache=True)
def _cho_solve(low, b):  # pragma: no cover - compiled
    """x with (L Lᵀ) x = b, b shape (5,)."""
    y = np.empty(5)
    for i in range(5):
        s = b[i]
        for k in range(i):
            s -= low[i, k] * y[k]
        y[i] = s / low[i, i]
    x = np.empty(5)
    for i in range(4, -1, -1):
        s = y[i]
        for k in range(i + 1, 5):
            s -= low[k, i] * x[k]
        x[i] = s / low[i, i]
    return x


@njit(cache=True)
def _at_times(a, x, out, sign):  # pragma: no cover - compiled
    """out += sign · Aᵀ x (A (5, 6), x (5,), out (6,))."""
    for i in range(6):
        acc = 0.0
        for r in range(5):
            acc += a[r, i] * x[r]
        out[i] += sign * acc


@njit(cache=True)
def _limit_step(dq):  # pragma: no cover - compiled
    """Scale ``dq`` in place so that no joint moves more than MAX_STEP_RAD."""
    step = 0.0
    for i in range(6):
        step = max(step, abs(dq[i]))
    if step > MAX_STEP_RAD:
        f = MAX_STEP_RAD / step
        for i in range(6):
            dq[i] *= f


@njit(cache=True)
def _clip_into(q, lo, hi):  # pragma: no cover - compiled
    for i in range(6):
        q[i] = min(max(q[i], lo[i]), hi[i])


@njit(cache=True)
def solve_pointing(kin, base, src, tgt, seed, tol_mm, max_iter):  # pragma: no cover - compiled
    """Damped Gauss-Newton pointing IK with a null-space pull toward the seed (see
    :func:`cyberknife_sim.robot.solve_pointing_ik`).

    Returns
    -------
    q (6,) rad, iterations, source error mm, target-to-axis distance mm, the scaled 5×6
    pointing Jacobian at q (its smallest singular value: nearness to a singularity, mm/rad),
    some joint at a limit.
    """
    lo = kin[24:30]
    hi = kin[30:36]
    direction = tgt - src
    lever = math.sqrt(direction[0] ** 2 + direction[1] ** 2 + direction[2] ** 2)
    direction /= lever
    q = seed.copy()
    _clip_into(q, lo, hi)
    rest = q.copy()
    gain = 0.1
    a = np.empty((5, 6))
    e = np.empty(5)
    basis = np.empty((2, 3))
    low = np.zeros((5, 5))
    it = 0
    while it < max_iter:
        it += 1
        ep, ea = _system(kin, base, q, src, direction, lever, a, e, basis)
        if ep < tol_mm and ea < tol_mm:
            break
        _damped_cholesky(a, low)
        dq = np.zeros(6)
        _at_times(a, _cho_solve(low, e), dq, 1.0)
        if gain > 0.0:
            pull = gain * (rest - q)
            a_pull = np.empty(5)
            for r in range(5):
                acc = 0.0
                for i in range(6):
                    acc += a[r, i] * pull[i]
                a_pull[r] = acc
            dq += pull
            _at_times(a, _cho_solve(low, a_pull), dq, -1.0)
        _limit_step(dq)
        if ep + ea < 1.0:  # close: pure Gauss-Newton converges quadratically
            gain = 0.0
        q += dq
        _clip_into(q, lo, hi)
    _system(kin, base, q, src, direction, lever, a, e, basis)
    p, d = source_axis(kin, base, q)
    pe = math.sqrt((src[0] - p[0]) ** 2 + (src[1] - p[1]) ** 2 + (src[2] - p[2]) ** 2)
    v = tgt - p
    vd = v[0] * d[0] + v[1] * d[1] + v[2] * d[2]
    ae = math.sqrt((v[0] - vd * d[0]) ** 2 + (v[1] - vd * d[1]) ** 2 + (v[2] - vd * d[2]) ** 2)
    at_limit = False
    for i in range(6):
        if abs(q[i] - lo[i]) <= 1e-9 or abs(q[i] - hi[i]) <= 1e-9:
            at_limit = True
    return q, it, pe, ae, a, at_limit


@njit(cache=True)
def controller_refine(kin, base, q_des, src, direction, planned, gain_q, gain_basis,
                      gain_pinv, gain_lever, reuse_rad):  # pragma: no cover - compiled
    """One damped Gauss-Newton step of the desired joints ``q_des`` (rad, in place) toward
    the pointing (``src`` mm, unit ``direction``), lever = |src − planned|.

    The damped pseudo-inverse Aᵀ(AAᵀ + λ²I)⁻¹ (``gain_pinv`` (6, 5), with ``gain_basis``
    (2, 3), ``gain_q`` (6,) and ``gain_lever`` (1,), NaN = none) is recomputed when the
    lever changed by more than 1e-6 relative or the joints moved more than ``reuse_rad``
    since; otherwise reused with the exact pointing error at ``q_des``.
    """
    lever = math.sqrt((src[0] - planned[0]) ** 2 + (src[1] - planned[1]) ** 2
                      + (src[2] - planned[2]) ** 2)
    g_lever = gain_lever[0]
    fresh = not (abs(g_lever - lever) <= 1e-6 * lever)  # NaN (no gain yet) → fresh
    if not fresh:
        for i in range(6):
            if abs(q_des[i] - gain_q[i]) > reuse_rad:
                fresh = True
                break
    e = np.empty(5)
    if fresh:
        a = np.empty((5, 6))
        low = np.zeros((5, 5))
        _system(kin, base, q_des, src, direction, lever, a, e, gain_basis)
        _damped_cholesky(a, low)
        # Aᵀ M⁻¹ column by column
        unit = np.zeros(5)
        for c in range(5):
            unit[:] = 0.0
            unit[c] = 1.0
            col = _cho_solve(low, unit)
            for i in range(6):
                s = 0.0
                for r in range(5):
                    s += a[r, i] * col[r]
                gain_pinv[i, c] = s
        gain_q[:] = q_des
        gain_lever[0] = lever
    else:
        p, d_now = source_axis(kin, base, q_des)
        wx = d_now[1] * direction[2] - d_now[2] * direction[1]
        wy = d_now[2] * direction[0] - d_now[0] * direction[2]
        wz = d_now[0] * direction[1] - d_now[1] * direction[0]
        for r in range(3):
            e[r] = src[r] - p[r]
        for b in range(2):
            e[3 + b] = lever * (gain_basis[b, 0] * wx + gain_basis[b, 1] * wy
                                + gain_basis[b, 2] * wz)
    dq = np.empty(6)
    for i in range(6):
        acc = 0.0
        for r in range(5):
            acc += gain_pinv[i, r] * e[r]
        dq[i] = acc
    _limit_step(dq)
    for i in range(6):
        q_des[i] += dq[i]
    _clip_into(q_des, kin[24:30], kin[30:36])


@njit(cache=True)
def servo_update(q, qd, q_cmd, frac, dt_s, amax, vmax, lo, hi):  # pragma: no cover - compiled
    """First-order servo toward ``q_cmd``, no faster than a stop at ``amax`` allows, then
    clipped to the acceleration and speed limits; ``q`` and ``qd`` updated in place."""
    for i in range(6):
        err = q_cmd[i] - q[i]
        v = frac * err / dt_s
        v_stop = math.sqrt(2.0 * amax[i] * abs(err))
        v = min(max(v, -v_stop), v_stop)
        da = amax[i] * dt_s
        dv = min(max(v - qd[i], -da), da)
        v = min(max(qd[i] + dv, -vmax[i]), vmax[i])
        q[i] = min(max(q[i] + v * dt_s, lo[i]), hi[i])
        qd[i] = v


# RobotController state vector (float64, STATE_SIZE): actual joints, joint velocities, desired
# joints, encoder noise (rad, rad/s), the joints and lever of the reused pseudo-inverse (lever
# NaN: none yet), and the beam source and direction of the actual joints plus noise
STATE_Q = slice(0, 6)
STATE_QD = slice(6, 12)
STATE_Q_DES = slice(12, 18)
STATE_NOISE = slice(18, 24)
STATE_GAIN_Q = slice(24, 30)
STATE_GAIN_LEVER = slice(30, 31)
STATE_AXIS_P = slice(31, 34)
STATE_AXIS_D = slice(34, 37)
STATE_SIZE = 37


@njit(cache=True)
def control_step(kin, base, state, goal, planned, gain_basis, gain_pinv, dyn, q_cmd,
                 use_desired, has_goal, reuse_rad, frac, dt_s):  # pragma: no cover - compiled
    """One control step of :class:`~cyberknife_sim.robot.RobotController` on its ``state``
    (layout: the STATE_* slices), in place.

    Refines the desired joints toward ``goal`` (rows: source mm, unit direction) when
    ``has_goal`` (:func:`controller_refine`); moves the servo toward the desired joints
    (``use_desired``, no latency) or ``q_cmd`` (:func:`servo_update`, ``dyn`` rows: speed
    and acceleration limits); then the beam axis of the actual joints plus noise.
    """
    q_des = state[12:18]
    if has_goal:
        controller_refine(kin, base, q_des, goal[0], goal[1], planned, state[24:30],
                          gain_basis, gain_pinv, state[30:31], reuse_rad)
    if use_desired:
        servo_update(state[0:6], state[6:12], q_des, frac, dt_s, dyn[1], dyn[0], kin[24:30],
                     kin[30:36])
    else:
        servo_update(state[0:6], state[6:12], q_cmd, frac, dt_s, dyn[1], dyn[0], kin[24:30],
                     kin[30:36])
    p, d = source_axis(kin, base, state[0:6] + state[18:24])
    state[31:34] = p
    state[34:37] = d


@njit(cache=True)
def axis_distance(p, d, t):  # pragma: no cover - compiled
    """Distance (mm) from point ``t`` to the line through ``p`` along unit ``d`` (room mm)."""
    v0 = t[0] - p[0]
    v1 = t[1] - p[1]
    v2 = t[2] - p[2]
    vd = v0 * d[0] + v1 * d[1] + v2 * d[2]
    w0 = v0 - vd * d[0]
    w1 = v1 - vd * d[1]
    w2 = v2 - vd * d[2]
    return math.sqrt(w0 * w0 + w1 * w1 + w2 * w2)
