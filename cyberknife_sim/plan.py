"""Treatment plan: nodes (linac source positions), beams, MU, delivery time.

A *node* is a linac source position on the sphere of radius SAD around the planned target
(room mm), with the joint solution that reaches it. A *beam* is delivered from a node toward
an aim point (the target, or for extra beams on an already used node a point inside the
target: non-isocentric delivery), with MU and a circular collimator. Beam-on time is
MU / dose rate; the robot travels between beams with trapezoidal joint profiles.

Plan file (JSON)::

    {"format": "cksim-plan", "version": 1, "sad_mm": 800, "dose_rate_mu_per_min": 1000,
     "target_room": [0, 0, 0],
     "beams": [{"node": 0, "source_room": [x, y, z], "aim_room": [x, y, z], "mu": 100,
                "collimator_mm": 20, "joints_deg": [6 numbers] (optional)}, ...],
     "rejected": [{"source_room": [x, y, z], "reason": "..."}, ...] (optional)}

Floats are written with ``repr`` precision, so a plan read back is bit-identical.
Generated plans are cached on disk (:mod:`cyberknife_sim.plan_cache`); see
:func:`plan_for_scene`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import InputError
from .robot import RobotWorld, traversal_time_s
from .scene import Scene

__all__ = [
    "Beam",
    "Node",
    "Plan",
    "candidate_nodes",
    "generate_plan",
    "load_plan",
    "plan_for_scene",
    "plan_from_dict",
    "plan_to_dict",
]

PLAN_FORMAT = "cksim-plan"
PLAN_CODE_VERSION = 1
"""Version of the plan generator's results (this module and the robot checks it uses);
part of the plan cache key. Bump it when a change alters generated plans."""


@dataclass(frozen=True)
class Node:
    """A linac source position (room mm) and the joints (deg) that reach it."""

    index: int
    source_room: NDArray[np.float64]
    joints_deg: NDArray[np.float64] | None = None


@dataclass(frozen=True)
class Beam:
    """One beam: from ``node`` toward ``aim_room``.

    Attributes
    ----------
    node : Node
    aim_room : ndarray, shape (3,)
        Point the beam axis passes through (room mm).
    mu : float
        Monitor units.
    collimator_mm : float
        Circular field diameter at SAD (mm).
    dose_rate_mu_per_min : float
    joints_deg : ndarray, shape (6,), or None
        Joint solution for this beam (deg).
    """

    node: Node
    aim_room: NDArray[np.float64]
    mu: float
    collimator_mm: float
    dose_rate_mu_per_min: float
    joints_deg: NDArray[np.float64] | None = None

    @property
    def source_room(self) -> NDArray[np.float64]:
        """Linac source position (room mm)."""
        return self.node.source_room

    @property
    def direction_room(self) -> NDArray[np.float64]:
        """Unit beam direction, source → aim point (room)."""
        d = self.aim_room - self.node.source_room
        return d / np.linalg.norm(d)

    @property
    def duration_s(self) -> float:
        """Beam-on time: MU / dose rate (s)."""
        return 60.0 * self.mu / self.dose_rate_mu_per_min


@dataclass(frozen=True)
class Plan:
    """A sequence of beams in delivery order.

    Attributes
    ----------
    beams : tuple of Beam
    target_room : ndarray, shape (3,)
        Planned target (room mm).
    sad_mm, dose_rate_mu_per_min : float
    rejected : tuple of (ndarray (3,), str)
        Candidate nodes (room mm) rejected by the generator and why (as stored in the
        file for loaded plans; empty when the file has none).
    """

    beams: tuple[Beam, ...]
    target_room: NDArray[np.float64]
    sad_mm: float
    dose_rate_mu_per_min: float
    rejected: tuple[tuple[NDArray[np.float64], str], ...] = field(default=())

    @property
    def nodes(self) -> tuple[Node, ...]:
        """Distinct nodes in delivery order."""
        seen: dict[int, Node] = {}
        for b in self.beams:
            seen.setdefault(b.node.index, b.node)
        return tuple(seen.values())

    @property
    def total_mu(self) -> float:
        """MU summed over all beams."""
        return float(sum(b.mu for b in self.beams))

    @property
    def beam_on_time_s(self) -> float:
        """Sum of beam durations (s)."""
        return float(sum(b.duration_s for b in self.beams))

    def traversal_times_s(self, world: RobotWorld) -> NDArray[np.float64]:
        """Robot travel time before each beam after the first (s), shape (n_beams - 1,).

        Uses the robot's joint speed and acceleration limits and the beams' joint solutions
        (solved here when a beam has none).
        """
        q = [b.joints_deg if b.joints_deg is not None
             else world.solve_pointing(b.source_room, b.aim_room) for b in self.beams]
        v = np.degrees(world.chain.velocity_rad_s)
        a = np.degrees(world.chain.accel_rad_s2)
        return np.array([traversal_time_s(q0, q1, velocity_deg_s=v, accel_deg_s2=a)
                         for q0, q1 in zip(q[:-1], q[1:], strict=True)])

    def to_json(self, path: str | Path) -> None:
        """Write the plan file (format in the module docstring)."""
        Path(path).write_text(json.dumps(plan_to_dict(self), indent=1), encoding="utf-8")


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan file's JSON object (format in the module docstring); floats kept exact."""
    data: dict[str, Any] = {
        "format": PLAN_FORMAT, "version": 1, "sad_mm": plan.sad_mm,
        "dose_rate_mu_per_min": plan.dose_rate_mu_per_min,
        "target_room": plan.target_room.tolist(),
        "beams": [{"node": b.node.index, "source_room": b.source_room.tolist(),
                   "aim_room": b.aim_room.tolist(), "mu": b.mu,
                   "collimator_mm": b.collimator_mm,
                   **({"joints_deg": b.joints_deg.tolist()}
                      if b.joints_deg is not None else {})}
                  for b in plan.beams],
    }
    if plan.rejected:
        data["rejected"] = [{"source_room": np.asarray(src, dtype=np.float64).tolist(),
                             "reason": reason} for src, reason in plan.rejected]
    return data


def _vector(value: Any, n: int, where: str) -> NDArray[np.float64]:
    if (type(value) is list and len(value) == n  # fast path: a JSON list of finite floats
            and all(type(x) is float and math.isfinite(x) for x in value)):
        return np.array(value, dtype=np.float64)
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: expected {n} numbers (got {value!r:.60})") from None
    if v.shape != (n,) or not np.isfinite(v).all():
        raise InputError(f"{where}: expected {n} finite numbers (got {value!r:.60})")
    return v


def _number(value: Any, where: str, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise InputError(f"{where}: expected a number (got {value!r:.60})")
    if positive and value <= 0:
        raise InputError(f"{where}: must be > 0 (got {value})")
    return float(value)


def load_plan(path: str | Path) -> Plan:
    """Read a plan file written by :meth:`Plan.to_json` (or by hand).

    Raises
    ------
    InputError
        One line naming the file, the key and the bad value.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: plan file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read plan JSON ({exc})") from None
    return plan_from_dict(data, str(path))


def plan_from_dict(data: Any, where: str) -> Plan:
    """A plan from the plan file's JSON object (inverse of :func:`plan_to_dict`).

    Parameters
    ----------
    data : object
        The parsed JSON.
    where : str
        Prefix of error messages (the file name).

    Raises
    ------
    InputError
        One line naming ``where``, the key and the bad value.
    """
    path = where
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise InputError(f"{path}: not a cksim plan (expected \"format\": \"{PLAN_FORMAT}\")")
    if data.get("version") != 1:
        raise InputError(f"{path}: version: unsupported plan version {data.get('version')!r}")
    sad = _number(data.get("sad_mm"), f"{path}: sad_mm")
    rate = _number(data.get("dose_rate_mu_per_min"), f"{path}: dose_rate_mu_per_min")
    target = _vector(data.get("target_room", [0, 0, 0]), 3, f"{path}: target_room")
    raw = data.get("beams")
    if not isinstance(raw, list) or not raw:
        raise InputError(f"{path}: beams: expected a non-empty list")
    nodes: dict[int, Node] = {}
    beams = [_beam_from_dict(b, f"{path}: beams[{i}]", target, rate, nodes)
             for i, b in enumerate(raw)]
    return Plan(tuple(beams), target, sad, rate, _rejected(data.get("rejected", []), path))


def _beam_from_dict(b: Any, where: str, target: NDArray[np.float64], rate: float,
                    nodes: dict[int, Node]) -> Beam:
    """One beam of the plan file; ``nodes`` collects the nodes seen so far (by index)."""
    if not isinstance(b, dict):
        raise InputError(f"{where}: expected an object")
    unknown = set(b) - {"node", "source_room", "aim_room", "mu", "collimator_mm", "joints_deg"}
    if unknown:
        raise InputError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    idx = b.get("node")
    if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
        raise InputError(f"{where}.node: expected an index >= 0 (got {idx!r:.40})")
    src = _vector(b.get("source_room"), 3, f"{where}.source_room")
    aim = _vector(b.get("aim_room", target.tolist()), 3, f"{where}.aim_room")
    if np.linalg.norm(aim - src) < 1.0:
        raise InputError(f"{where}: source_room and aim_room coincide")
    if idx in nodes and not (np.abs(nodes[idx].source_room - src)
                             <= 1e-6 + 1e-5 * np.abs(src)).all():  # np.allclose, cheaper
        raise InputError(f"{where}.source_room: differs from earlier beams of node {idx}")
    joints = _vector(b["joints_deg"], 6, f"{where}.joints_deg") if "joints_deg" in b else None
    node = nodes.setdefault(idx, Node(idx, src, joints))
    coll = _number(b.get("collimator_mm"), f"{where}.collimator_mm")
    return Beam(node, aim, _number(b.get("mu"), f"{where}.mu"), coll, rate, joints)


def _rejected(raw: Any, path: str) -> tuple[tuple[NDArray[np.float64], str], ...]:
    if not isinstance(raw, list):
        raise InputError(f"{path}: rejected: expected a list")
    out = []
    for i, r in enumerate(raw):
        where = f"{path}: rejected[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("reason"), str):
            raise InputError(f"{where}: expected an object with source_room and reason")
        out.append((_vector(r.get("source_room"), 3, f"{where}.source_room"), r["reason"]))
    return tuple(out)


def candidate_nodes(n: int, sad_mm: float, target_room: NDArray[np.float64], *,
                    max_polar_deg: float, yaw_rad: float = 0.0) -> NDArray[np.float64]:
    """Fibonacci-lattice points on the SAD sphere within ``max_polar_deg`` of vertical.

    Parameters
    ----------
    n : int
        Lattice size on the whole sphere.
    sad_mm : float
    target_room : ndarray, shape (3,)
        Sphere centre (room mm).
    max_polar_deg : float
        Largest angle from "up" (room -y).
    yaw_rad : float
        Rotation of the lattice about the vertical.

    Returns
    -------
    ndarray, shape (m, 3)
        Source positions (room mm), sorted from the top down.
    """
    i = np.arange(n) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / n)
    azim = np.pi * (1.0 + 5.0**0.5) * i + yaw_rad
    keep = polar <= np.radians(max_polar_deg) + 1e-12
    polar, azim = polar[keep], azim[keep]
    u = np.stack([np.sin(polar) * np.cos(azim), -np.cos(polar), np.sin(polar) * np.sin(azim)], 1)
    return target_room + sad_mm * u


def _path_order(points: NDArray[np.float64]) -> list[int]:
    """Greedy nearest-neighbour tour starting at the first point."""
    left = list(range(len(points)))
    order = [left.pop(0)]
    while left:
        d = np.linalg.norm(points[left] - points[order[-1]], axis=1)
        order.append(left.pop(int(np.argmin(d))))
    return order


def generate_plan(scene: Scene, world: RobotWorld, rng: np.random.Generator) -> Plan:
    """Default plan: valid nodes of a candidate lattice, ``scene.plan.n_beams`` beams.

    Candidates on the SAD sphere around the planned target (the room origin) are checked
    with :meth:`RobotWorld.check_node`; rejected ones are kept with their reason. Nodes are
    ordered by a nearest-neighbour path. With at least as many valid nodes as beams, beams
    go to nodes spread along the path, aimed at the target; otherwise every node gets one
    beam at the target and the remaining beams are spread over the nodes, aimed at random
    points within half the target radius (non-isocentric), each one checked too. MU weights
    are uniform in [0.5, 1.5], scaled to ``scene.plan.total_mu``.

    Parameters
    ----------
    scene : Scene
    world : RobotWorld
    rng : numpy.random.Generator
        Lattice yaw, extra aim points and MU weights.

    Returns
    -------
    Plan
    """
    ps = scene.plan
    target = np.zeros(3)
    cands = candidate_nodes(ps.candidate_nodes, ps.sad_mm, target,
                            max_polar_deg=ps.max_polar_deg,
                            yaw_rad=float(rng.uniform(0.0, 2.0 * np.pi)))
    valid: list[tuple[NDArray[np.float64], NDArray[np.float64]]] = []
    rejected: list[tuple[NDArray[np.float64], str]] = []
    for src in cands:
        check = world.check_node(src, target)
        if check.ok:
            assert check.joints_deg is not None
            valid.append((src, check.joints_deg))
        else:
            rejected.append((src, check.reason))
    if not valid:
        raise InputError("plan: no reachable, collision-free node (check room.robot placement)")
    order = _path_order(np.array([v[0] for v in valid]))
    nodes = [Node(k, valid[i][0], valid[i][1]) for k, i in enumerate(order)]
    n = ps.n_beams
    specs: list[tuple[Node, NDArray[np.float64], NDArray[np.float64]]] = []
    if len(nodes) >= n:
        pick = np.unique(np.round(np.linspace(0, len(nodes) - 1, n)).astype(int))
        specs = [(nodes[i], target, nodes[i].joints_deg) for i in pick]
    else:
        per_node: list[list[tuple[NDArray[np.float64], NDArray[np.float64]]]] = [
            [(target, node.joints_deg)] for node in nodes]
        radius = 0.5 * scene.patient.target_radius_mm
        extra, attempts = n - len(nodes), 0
        while extra > 0 and attempts < 4 * n:
            k = attempts % len(nodes)
            attempts += 1
            offset = rng.normal(size=3)
            offset *= radius * rng.uniform() ** (1 / 3) / np.linalg.norm(offset)
            aim = target + offset
            check = world.check_node(nodes[k].source_room, aim, seed_deg=nodes[k].joints_deg)
            if check.ok:
                per_node[k].append((aim, check.joints_deg))
                extra -= 1
        specs = [(node, aim, q) for node, lst in zip(nodes, per_node, strict=True)
                 for aim, q in lst]
    weights = rng.uniform(0.5, 1.5, len(specs))
    mus = ps.total_mu * weights / weights.sum()
    beams = tuple(Beam(node, aim, float(mu), ps.collimator_mm, ps.dose_rate_mu_per_min, q)
                  for (node, aim, q), mu in zip(specs, mus, strict=True))
    return Plan(beams, target, ps.sad_mm, ps.dose_rate_mu_per_min, tuple(rejected))


def plan_for_scene(scene: Scene, world: RobotWorld, rng: np.random.Generator, *,
                   cache: bool = True) -> Plan:
    """The scene's plan: ``scene.plan.file`` when given, else :func:`generate_plan`.

    Parameters
    ----------
    scene : Scene
    world : RobotWorld
    rng : numpy.random.Generator
        Passed to :func:`generate_plan`.
    cache : bool
        Generated plans come from / go to the on-disk plan cache
        (:func:`cyberknife_sim.plan_cache.cached_plan`; folder ``$CKSIM_CACHE_DIR/plans`` or
        the user cache folder, off with ``CKSIM_PLAN_CACHE=0``). A hit is bit-identical to
        a fresh generation and leaves ``rng`` in the same state.
    """
    if scene.plan.file is not None:
        return load_plan(scene.plan.file)
    if cache:
        from .plan_cache import cached_plan, plan_cache_enabled

        if plan_cache_enabled():
            return cached_plan(scene, world, rng)
    return generate_plan(scene, world, rng)
