"""Generated plans cached on disk, keyed by everything they depend on.

A generated plan (:func:`cyberknife_sim.plan.generate_plan`) depends only on

- the room as the robot checks see it: ``scene.room`` without the settings no check reads
  (robot servo lag, encoder noise, command latency; the imaging binning, μ_water and the
  X-ray physics),
- ``scene.plan`` and ``scene.patient.target_radius_mm``,
- the state of the random generator it draws from,
- the code: the package version, :data:`cyberknife_sim.plan.PLAN_CODE_VERSION`, a hash of
  the plan and robot sources, a hash of the robot model files (URDF) and the numpy, numba
  and pybullet versions.

All of them go into a SHA-256 key; the entry ``<key>.json`` holds the plan in the plan-file
format (floats written with ``repr``: read back bit-identical, rejected nodes included), the
generator state after the generation (restored on a hit, so the caller's ``rng`` ends where a
fresh generation leaves it) and the robot posture the generation left the world in (also
restored).

Folder: ``$CKSIM_CACHE_DIR/plans`` when ``CKSIM_CACHE_DIR`` is set, else the user cache
folder (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
``%LOCALAPPDATA%`` on Windows) ``/cyberknife_sim/plans``. ``CKSIM_PLAN_CACHE=0`` turns the
cache off. A missing, unreadable, corrupt or mismatching entry is regenerated and
rewritten; entries are written to a temporary file and moved into place (atomic); a folder
that cannot be written only means no caching.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._cache_dirs import CACHE_DIR_ENV, atomic_write_bytes, cache_folder, cache_switch_on
from .errors import InputError
from .plan import PLAN_CODE_VERSION, Plan, generate_plan, plan_from_dict, plan_to_dict
from .robot import RobotWorld
from .scene import Scene

__all__ = ["CACHE_DIR_ENV", "cached_plan", "plan_cache_dir", "plan_cache_enabled",
           "plan_cache_key"]

CACHE_SWITCH_ENV = "CKSIM_PLAN_CACHE"
"""Environment variable: ``0``, ``off``, ``false`` or ``no`` turns the plan cache off."""
ENTRY_FORMAT = "cksim-plan-cache"

# settings of scene.room that no plan check reads (excluded from the key)
_ROOM_EXCLUDE = {"robot": {"servo_lag_s", "encoder_noise_deg", "command_latency_s"},
                 "imaging": {"binning", "mu_water_per_mm", "xray"}}


def plan_cache_enabled() -> bool:
    """False when ``CKSIM_PLAN_CACHE`` is ``0``, ``off``, ``false`` or ``no``."""
    return cache_switch_on(CACHE_SWITCH_ENV)


def plan_cache_dir() -> Path:
    """Folder of the plan cache (see the module docstring); not created here."""
    return cache_folder("plans")


@lru_cache(maxsize=1)
def _code_fingerprint() -> dict[str, str]:
    """Hashes of the plan/robot sources and robot model files, and library versions."""
    pkg = Path(__file__).resolve().parent

    def digest(files: list[Path]) -> str:
        h = hashlib.sha256()
        for f in sorted(files):
            h.update(f.relative_to(pkg).as_posix().encode())
            h.update(f.read_bytes())
        return h.hexdigest()

    out = {"package": __version__, "plan_code_version": str(PLAN_CODE_VERSION)}
    with contextlib.suppress(OSError, ValueError):
        out["sources"] = digest([pkg / "plan.py", *(pkg / "robot").glob("*.py")])
    with contextlib.suppress(OSError, ValueError):
        out["robot_model"] = digest([f for f in (pkg / "data" / "robot").rglob("*")
                                     if f.is_file()])
    for lib in ("numpy", "numba", "pybullet"):
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:  # pragma: no cover - installed deps
            out[lib] = "?"
    return out


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The bit generator's state as plain JSON (TypeError when it holds arrays)."""
    state = rng.bit_generator.state
    json.dumps(state)  # PCG64 (default_rng) and PCG64DXSM are plain ints; others hold arrays
    return state


def plan_cache_key(scene: Scene, world: RobotWorld, rng: np.random.Generator) -> str:
    """SHA-256 (hex) of everything :func:`generate_plan` depends on (module docstring).

    Parameters
    ----------
    scene : Scene
        ``scene.plan`` and ``scene.patient.target_radius_mm`` are used.
    world : RobotWorld
        Its scene's room (robot base, collision margin, couch, imaging geometry).
    rng : numpy.random.Generator
        Its current state (not advanced). Bit generators whose state holds arrays
        (MT19937, Philox, SFC64) are not supported: TypeError.
    """
    payload = {
        "entry": ENTRY_FORMAT,
        "code": _code_fingerprint(),
        "room": world.scene.room.model_dump(mode="json", exclude=_ROOM_EXCLUDE),
        "plan": scene.plan.model_dump(mode="json"),
        "target_radius_mm": scene.patient.target_radius_mm,
        "rng": _rng_state(rng),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _read_entry(path: Path, key: str) -> dict[str, Any] | None:
    """The entry at ``path`` when it is a valid entry for ``key``, else None."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not (isinstance(entry, dict) and entry.get("format") == ENTRY_FORMAT
            and entry.get("key") == key and isinstance(entry.get("rng_state_after"), dict)):
        return None
    return entry


def _write_entry(path: Path, entry: dict[str, Any]) -> None:
    """Write ``entry`` atomically; an unwritable folder is ignored."""
    atomic_write_bytes(path, json.dumps(entry, separators=(",", ":")).encode("utf-8"))


def _from_entry(entry: dict[str, Any], path: Path, world: RobotWorld,
                rng: np.random.Generator) -> Plan | None:
    """The cached plan, with the rng and the world put where the generation left them;
    None (nothing changed) when the entry does not parse."""
    try:
        plan = plan_from_dict(entry.get("plan"), str(path))
        joints = np.asarray(entry.get("world_joints_rad"), dtype=np.float64)
        if joints.shape != (6,) or not np.all(np.isfinite(joints)):
            return None
        rng.bit_generator.state = entry["rng_state_after"]
    except (InputError, TypeError, ValueError, KeyError):
        return None
    world._set_joints_rad(joints)
    return plan


def cached_plan(scene: Scene, world: RobotWorld, rng: np.random.Generator, *,
                cache_dir: str | Path | None = None) -> Plan:
    """:func:`~cyberknife_sim.plan.generate_plan`, through the on-disk cache.

    A hit returns the stored plan (bit-identical to a fresh generation, rejected nodes
    included) and leaves ``rng`` and the world's robot posture as the generation would; a
    miss generates, stores and returns the plan. Generators the key cannot describe
    (see :func:`plan_cache_key`) are not cached.

    Parameters
    ----------
    scene : Scene
    world : RobotWorld
    rng : numpy.random.Generator
    cache_dir : path, optional
        Cache folder; default :func:`plan_cache_dir`.

    Returns
    -------
    Plan
    """
    try:
        key = plan_cache_key(scene, world, rng)
    except TypeError:
        return generate_plan(scene, world, rng)
    path = Path(cache_dir if cache_dir is not None else plan_cache_dir()) / f"{key}.json"
    entry = _read_entry(path, key)
    if entry is not None:
        plan = _from_entry(entry, path, world, rng)
        if plan is not None:
            return plan
    plan = generate_plan(scene, world, rng)
    _write_entry(path, {"format": ENTRY_FORMAT, "version": 1, "key": key,
                        "rng_state_after": rng.bit_generator.state,
                        "world_joints_rad": world._joints_rad.tolist(),
                        "plan": plan_to_dict(plan)})
    return plan
