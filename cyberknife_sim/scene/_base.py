"""Common base for scene sections: frozen, typed, unknown keys rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo

__all__ = ["Section", "Vec3", "resolve_scene_path"]


class Section(BaseModel):
    """A frozen scene section; every field is typed, documented and range-checked.

    Unknown keys are errors (``extra="forbid"``); ints are not silently accepted for
    strings nor strings for numbers (``strict`` where it matters is set per field).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


Vec3 = Annotated[tuple[float, float, float], Field(description="three numbers [x, y, z]")]
"""A 3-vector in the room or CT frame (mm unless the key says otherwise)."""


def resolve_scene_path(value: Path | None, info: ValidationInfo) -> Path | None:
    """Resolve a path relative to the scene file's folder and require that it exists."""
    if value is None:
        return None
    base = Path((info.context or {}).get("scene_dir", "."))
    path = value if value.is_absolute() else (base / value)
    if not path.exists():
        raise ValueError(f"file not found: {path}")
    return path.resolve()
