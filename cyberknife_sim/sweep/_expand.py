"""Expanding a sweep spec into runs: key paths written into the base scene, each run's scene
validated, run ids (the second half of :mod:`._spec`)."""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import BaseModel

from ..errors import SceneError
from ..scene import Scene, scene_from_dict
from ..scene._load import _one_line, _short

if TYPE_CHECKING:
    from ._spec import SweepSpec

__all__ = ["RunSpec", "expand_runs", "grid_combinations", "key_path_problem", "run_id_of"]


@dataclass(frozen=True, eq=True)
class RunSpec:
    """One run of a sweep.

    Attributes
    ----------
    run_id : str
        16 hex digits: sha256 of the canonical JSON (sorted keys) of
        ``{"imaging": imaging, "scene": scene_data}``.
    seed : int
        The run's ``simulation.seed``.
    params : dict
        Varied key path → value (a trace as its file name).
    scene_data : dict
        The resolved scene (``Scene.model_dump(mode="json")``, file paths absolute).
    imaging : {"xray", "truth"}
        The ``simulate()`` imaging seam.
    """

    run_id: str
    seed: int
    params: dict[str, Any]
    scene_data: dict[str, Any]
    imaging: str

    def scene(self) -> Scene:
        """The run's validated scene, rebuilt from :attr:`scene_data`."""
        return scene_from_dict(self.scene_data, origin=f"run {self.run_id}")


# ----------------------------------------------------------------------------- key paths


def _core(annotation: Any) -> Any:
    """``annotation`` without ``Annotated[...]`` and ``| None``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def key_path_problem(path: str) -> str | None:
    """Why ``path`` (dotted, list indices as numbers) is not a scene key path; None if it is.

    The last key may name a whole section (its value is then a mapping).
    """
    annotation: Any = Scene
    for i, part in enumerate(path.split(".")):
        core = _core(annotation)
        so_far = ".".join(path.split(".")[:i]) or "(top level)"
        if part.isdigit():
            if typing.get_origin(core) not in (tuple, list):
                return f"{so_far} is not a list, so {part} is not a key here"
            args = typing.get_args(core)
            if len(args) == 2 and args[1] is Ellipsis:
                annotation = args[0]
            elif int(part) < len(args):
                annotation = args[int(part)]
            else:
                return f"index {part} is beyond the {len(args)} items of {so_far}"
            continue
        if not (isinstance(core, type) and issubclass(core, BaseModel)):
            return f"{so_far} is a value, not a section, so it has no key {part!r}"
        fields = [k for k, f in core.model_fields.items() if not f.exclude]
        if part not in fields:
            close = difflib.get_close_matches(part, fields, n=1, cutoff=0.6)
            return "unknown scene key" + (f" (did you mean {close[0]}?)" if close else "")
        annotation = core.model_fields[part].annotation
    return None


def run_id_of(scene_data: dict[str, Any], imaging: str) -> str:
    """16 hex digits of sha256 of the canonical JSON of the resolved scene and the seam."""
    text = json.dumps({"imaging": imaging, "scene": scene_data}, sort_keys=True,
                      separators=(",", ":"), allow_nan=False, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def grid_combinations(grid: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Cartesian product of ``grid`` (key order kept, the last key varies fastest)."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


# ----------------------------------------------------------------------------- expansion

_RUN = "<run>"
"""Origin given to :func:`scene_from_dict` for a run's scene; replaced in its messages."""

Override = tuple[str, str, Any]
"""(spec section, scene key path, value) of one override."""


def expand_runs(spec: SweepSpec, base_raw: Any, base_dump: dict[str, Any],
                 origin: str) -> list[RunSpec]:
    """Every run of ``spec``: each distinct scene (all but the seed) is validated once."""
    problems = [f"{origin}: {where}.{p}: {why}" for where, p in spec._paths()
                if (why := key_path_problem(p)) is not None]
    if problems:
        raise SceneError([_one_line(p) for p in problems])
    samples: list[dict[str, Any]] = [{}]
    if spec.random is not None:
        rng = np.random.default_rng(spec.random.seed)
        drawn = {p: d.sample(rng, spec.random.n) for p, d in spec.random.params.items()}
        samples = [{p: v[i] for p, v in drawn.items()} for i in range(spec.random.n)]
    traces: list[Path | None] = list(spec.trace_files) or [None]
    fixed: list[Override] = [("set", p, v) for p, v in spec.set.items()]
    runs: list[RunSpec] = []
    ids: set[str] = set()
    for g, s, t in itertools.product(grid_combinations(spec.grid), samples, traces):
        overrides = (fixed + [("grid", p, v) for p, v in g.items()]
                     + [("random.params", p, v) for p, v in s.items()])
        params = {**g, **s}
        if t is not None:
            overrides.append(("traces", spec.traces.key, str(t)))
            params[spec.traces.key] = t.name
        dump = _resolved_scene(spec, base_raw, base_dump, overrides, origin)
        for seed in spec.seeds or (None,):
            data = copy.deepcopy(dump)
            if seed is not None:
                data["simulation"]["seed"] = seed
            run_id = run_id_of(data, spec.imaging)
            if run_id not in ids:
                ids.add(run_id)
                runs.append(RunSpec(run_id, int(data["simulation"]["seed"]),
                                    copy.deepcopy(params), data, spec.imaging))
    return runs


def _resolved_scene(spec: SweepSpec, base_raw: Any, base_dump: dict[str, Any],
                    overrides: list[Override], origin: str) -> dict[str, Any]:
    """The base YAML with ``overrides`` written in, validated, as ``model_dump(mode="json")``."""
    raw = copy.deepcopy(base_raw) if isinstance(base_raw, dict) else {}
    for where, path, value in overrides:
        _apply(raw, base_dump, path, copy.deepcopy(value), f"{origin}: {where}.{path}")
    try:
        scene = scene_from_dict(raw, origin=_RUN, scene_dir=spec.base.parent)
    except SceneError as exc:
        raise SceneError([_run_problem(line, overrides, origin) for line in exc.problems]
                         ) from None
    return scene.model_dump(mode="json")


def _apply(raw: dict[str, Any], defaults: Any, path: str, value: Any, where: str) -> None:
    """Write ``value`` at ``path`` in the raw scene dict, as a user would in the YAML.

    A missing section is created empty (its defaults apply); a list indexed into but not
    written in the base YAML is first copied from the base scene's (default) value.
    """
    parts: list[Any] = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = raw
    for i, part in enumerate(parts):
        default = _child(defaults, part)
        if isinstance(part, int) and part >= len(node):
            raise SceneError([_one_line(f"{where}: index {part} is beyond the {len(node)} "
                                        f"items of {'.'.join(map(str, parts[:i]))}")])
        if i == len(parts) - 1:
            node[part] = value
            return
        child = node[part] if isinstance(part, int) or part in node else None
        if isinstance(parts[i + 1], int):
            if not isinstance(child, list):
                child = list(copy.deepcopy(default) or [])
        elif not isinstance(child, dict):
            child = {}
        node[part] = child
        node, defaults = child, default


def _child(node: Any, part: Any) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        return node[part]
    return None


def _run_problem(line: str, overrides: list[Override], origin: str) -> str:
    """A scene problem of a run, said in the spec's terms (section, key path, value)."""
    loc, _, msg = line.removeprefix(f"{_RUN}: ").partition(": ")
    hits = [o for o in overrides
            if loc == o[1] or loc.startswith(o[1] + ".") or o[1].startswith(loc + ".")]
    if not hits:
        what = ", ".join(f"{w}.{p}={_short(v, 40)}" for w, p, v in overrides) or "no overrides"
        return _one_line(f"{origin}: the run with {what}: {loc}: {msg}")
    where, path, value = max(hits, key=lambda o: len(o[1]))
    if loc == path:
        return _one_line(f"{origin}: {where}.{path}: {msg}")
    return _one_line(f"{origin}: {where}.{path} = {_short(value, 40)}: {loc}: {msg}")
