"""The Scene model and the YAML loader that reports every problem at once."""

from __future__ import annotations

import difflib
import reprlib
import stat
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from ..errors import SceneError
from ._base import Section
from ._dose import DoseSettings
from ._motion import MotionSettings
from ._patient import PatientSettings
from ._plan import PlanSettings
from ._room import RoomSettings
from ._simulation import SimulationSettings
from ._tracking import TrackingSettings

__all__ = ["Scene", "load_scene", "scene_from_dict"]


class Scene(Section):
    """A complete, validated scene (frozen)."""

    name: str = Field("scene", description="short name used in reports")
    description: str = Field("", description="free text")
    room: RoomSettings = Field(default_factory=RoomSettings, description="the room")
    patient: PatientSettings = Field(default_factory=PatientSettings, description="the patient")
    plan: PlanSettings = Field(default_factory=PlanSettings, description="the plan")
    motion: MotionSettings = Field(default_factory=MotionSettings, description="motion truth")
    tracking: TrackingSettings = Field(default_factory=TrackingSettings,
                                       description="tracking")
    simulation: SimulationSettings = Field(default_factory=SimulationSettings,
                                           description="simulation clock")
    dose: DoseSettings = Field(default_factory=DoseSettings,
                               description="planned and delivered dose")
    source: Path | None = Field(None, exclude=True,
                                description="(set by the loader) the scene file")

    @model_validator(mode="after")
    def _frames_fit(self) -> Scene:
        frames = self.tracking.markers.rate_hz * (self.simulation.duration_s + 1.0)
        if frames > MAX_MARKER_FRAMES:
            raise ValueError(f"tracking.markers.rate_hz x simulation.duration_s: "
                             f"{frames:.3g} marker frames exceed the {MAX_MARKER_FRAMES:.0e} a "
                             f"run holds in memory (lower the rate or the duration)")
        return self


MAX_MARKER_FRAMES = 4_000_000
"""Most marker-camera frames a run precomputes (about 200 bytes each: 0.8 GB at the limit;
the default scene has 47 000)."""


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


MAX_FILE_BYTES = 1 << 20
"""Largest scene file read (bytes); scenes are a few kB."""
MAX_DEPTH = 50
"""Deepest nesting of YAML collections accepted (scenes nest about 5 levels)."""
MAX_NODES = 100_000
"""Most YAML nodes a scene may expand to, aliases counted at every use (an alias bomb)."""

_REPR = reprlib.Repr()  # bounded repr: keyword arguments need Python 3.12
for _name in ("maxtuple", "maxlist", "maxarray", "maxdict", "maxset", "maxfrozenset",
              "maxdeque"):
    setattr(_REPR, _name, 6)
_REPR.maxlevel, _REPR.maxstring, _REPR.maxlong, _REPR.maxother = 3, 60, 40, 60


def _short(value: Any, limit: int = 60) -> str:
    """A bounded repr (cheap on huge or deeply nested values), escaped to one line."""
    text = _one_line(_REPR.repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(text: str) -> str:
    """Escape line breaks and other control characters so a message stays on one line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _key_text(part: Any) -> str:
    text = str(part)
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The scene section class inside an annotation (``X``, ``X | None``, ``tuple[X, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _allowed_keys(loc: tuple) -> list[str]:
    """Keys of the section that holds the (unknown) key at ``loc``; [] when not found."""
    model: type[BaseModel] | None = Scene
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part)) if model is not None else None
        model = _model_in(field.annotation) if field is not None else None
        if model is None:
            return []
    return [] if model is None else list(model.model_fields)


def _suggestion(loc: tuple) -> str:
    if not loc or not isinstance(loc[-1], str):
        return ""
    allowed = [k for k in _allowed_keys(loc) if k != "source" or len(loc) > 1]
    close = difflib.get_close_matches(loc[-1], allowed, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _format(err: dict[str, Any], origin: str) -> str:
    loc = ".".join(_key_text(p) for p in err["loc"]) or "(top level)"
    msg = _MESSAGES.get(err["type"], err["msg"])
    msg = msg.removeprefix("Value error, ")
    line = f"{origin}: {loc}: {msg}"
    if err["type"] != "missing":
        line += f" (got {_short(err.get('input'))})"
    if err["type"] == "extra_forbidden":
        line += _suggestion(tuple(err["loc"]))
    return _one_line(line)


class _YamlProblem(Exception):
    """A YAML document this loader refuses (not a syntax error): message and line."""

    def __init__(self, message: str, mark: Any = None):
        super().__init__(message)
        self.line = mark.line + 1 if mark is not None else None


class _SceneLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, deep nesting and alias expansion bombs."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: D102 (PyYAML API)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _YamlProblem(f"nested more than {MAX_DEPTH} levels deep",
                                   self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):  # noqa: D102 (PyYAML API)
        node = super().compose_document()
        _check_expansion(node)
        return node

    def construct_mapping(self, node, deep=False):  # noqa: D102 (PyYAML API)
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = key_node.value
                if key in seen and key_node.tag != "tag:yaml.org,2002:merge":
                    raise _YamlProblem(f"duplicate key {_short(key)} (first at line "
                                       f"{seen[key]})", key_node.start_mark)
                seen.setdefault(key, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: yaml.Node | None) -> None:
    """Refuse a node graph whose aliases expand to more than :data:`MAX_NODES` nodes."""
    if root is None:
        return
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in size and not done:
            continue
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        if done:
            total = 1 + sum(size.get(id(c), 0) for c in children)
            size[id(node)] = total
            if total > MAX_NODES:
                raise _YamlProblem(f"aliases expand to more than {MAX_NODES} values (an alias "
                                   "bomb?)", node.start_mark)
            continue
        size[id(node)] = 0  # a recursive alias counts as nothing more
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _read_scene_text(path: Path, origin: str) -> str:
    try:
        st = path.stat()
    except OSError:
        raise SceneError([f"{origin}: scene file not found"]) from None
    if stat.S_ISDIR(st.st_mode):
        raise SceneError([f"{origin}: is a folder, not a scene file"])
    if not stat.S_ISREG(st.st_mode):
        raise SceneError([f"{origin}: not a regular file (a device, FIFO or socket)"])
    if st.st_size > MAX_FILE_BYTES:
        raise SceneError([f"{origin}: {st.st_size} bytes is too large for a scene file "
                          f"(at most {MAX_FILE_BYTES})"])
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SceneError([f"{origin}: cannot read scene file ({exc.strerror or exc})"]) from None
    try:
        if b"\x00" in raw:
            raise UnicodeDecodeError("utf-8", raw, 0, 1, "NUL byte")
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SceneError([f"{origin}: not a YAML text file (binary data or not UTF-8; "
                          "a scene is a UTF-8 YAML file)"]) from None


def _parse_yaml(text: str, origin: str) -> Any:
    loader = _SceneLoader(text)
    try:
        return loader.get_single_data()
    except _YamlProblem as exc:
        where = f"line {exc.line}: " if exc.line else ""
        raise SceneError([_one_line(f"{origin}: {where}{exc}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SceneError([_one_line(f"{origin}: {where}YAML syntax error: {problem}")]
                         ) from None
    except RecursionError:
        raise SceneError([f"{origin}: nested too deeply"]) from None
    finally:
        loader.dispose()


def scene_from_dict(data: Any, *, origin: str = "<scene>",
                    scene_dir: Path | None = None) -> Scene:
    """Validate a scene given as plain data.

    Parameters
    ----------
    data : mapping
        Parsed YAML (``None`` is an empty scene: all defaults).
    origin : str
        Name used at the start of each problem line (normally the file path).
    scene_dir : Path, optional
        Folder that relative file paths are resolved against.

    Raises
    ------
    SceneError
        With one ``origin: key.path: what is wrong (got X)`` line per problem.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SceneError([f"{origin}: (top level): a scene must be a mapping of keys "
                          f"(got {type(data).__name__})"])
    context = {"scene_dir": str(scene_dir or Path.cwd())}
    try:
        return Scene.model_validate(data, context=context)
    except ValidationError as exc:
        raise SceneError([_format(e, origin) for e in exc.errors()]) from None


def load_scene(path: str | Path) -> Scene:
    """Read and validate a scene YAML file (``yaml.safe_load`` only).

    Parameters
    ----------
    path : str or Path
        The scene file.

    Returns
    -------
    Scene
        Frozen, validated scene with file paths resolved.

    Raises
    ------
    SceneError
        Listing every problem, one line each: also a missing file, a folder, a FIFO or
        device, a file over :data:`MAX_FILE_BYTES`, binary or non-UTF-8 data, an empty
        document, duplicate keys (named, with both lines), collections nested deeper than
        :data:`MAX_DEPTH`, aliases expanding beyond :data:`MAX_NODES` values. An unknown
        key gets a "did you mean" suggestion from its section's keys.
    """
    path = Path(path)
    origin = _one_line(str(path))
    data = _parse_yaml(_read_scene_text(path, origin), origin)
    if data is None:
        raise SceneError([f"{origin}: scene file is empty (no keys; write `{{}}` for a scene "
                          "of all defaults)"])
    scene = scene_from_dict(data, origin=origin, scene_dir=path.parent)
    return scene.model_copy(update={"source": path.resolve()})
