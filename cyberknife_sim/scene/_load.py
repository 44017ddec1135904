"""The Scene model and the YAML loader that reports every problem at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from ..errors import SceneError
from ._base import Section
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
    source: Path | None = Field(None, exclude=True,
                                description="(set by the loader) the scene file")


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _format(err: dict[str, Any], origin: str) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = _MESSAGES.get(err["type"], err["msg"])
    msg = msg.removeprefix("Value error, ")
    line = f"{origin}: {loc}: {msg}"
    if err["type"] != "missing":
        line += f" (got {_short(err.get('input'))})"
    return line


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
        Listing every problem, one line each.
    """
    path = Path(path)
    origin = str(path)
    if not path.is_file():
        raise SceneError([f"{origin}: scene file not found"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SceneError([f"{origin}: cannot read scene file ({exc.__class__.__name__})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SceneError([f"{origin}: {where}YAML syntax error: {problem}"]) from None
    scene = scene_from_dict(data, origin=origin, scene_dir=path.parent)
    return scene.model_copy(update={"source": path.resolve()})
