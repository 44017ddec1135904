"""Common base for scene sections: frozen, strictly typed, unknown keys rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

__all__ = ["AS_TUPLE", "ScenePath", "Section", "Vec3", "bounded_vec3", "items",
           "resolve_scene_file", "resolve_scene_path"]


class Section(BaseModel):
    """A frozen scene section; every field is typed, documented and range-checked.

    Unknown keys are errors (``extra="forbid"``). Types are strict: a number is not read
    from a string (``'12.5'``) or a boolean (``true``), a boolean is only ``true``/``false``
    (not ``1`` or ``'yes'``), a string is not read from bytes (``!!binary``); an integer is
    accepted where a float is expected. Every float is finite (no ``.nan``/``.inf``).
    YAML lists are read as tuples (:data:`AS_TUPLE`) and strings as paths
    (:data:`ScenePath`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, strict=True,
                              allow_inf_nan=False)


class _Items:
    """Read a YAML list as a tuple and check its length before the items are validated (so a
    bad item is not also reported as a missing one)."""

    def __init__(self, min_items: int = 0, max_items: int | None = None):
        self.min_items, self.max_items = min_items, max_items

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            value = tuple(value)
        if not isinstance(value, tuple):
            return value  # the strict tuple check reports it
        n, lo, hi = len(value), self.min_items, self.max_items
        if n < lo:
            raise ValueError(f"should have at least {lo} item{'s' * (lo != 1)}, not {n}")
        if hi is not None and n > hi:
            raise ValueError(f"should have at most {hi} item{'s' * (hi != 1)}, not {n}")
        return value


def items(min_items: int = 0, max_items: int | None = None) -> BeforeValidator:
    """Put in ``Annotated[tuple[...], items(...)]``: accept a list (YAML) as well as a tuple,
    with ``min_items`` to ``max_items`` entries."""
    return BeforeValidator(_Items(min_items, max_items))


AS_TUPLE = items()
"""Put in ``Annotated[tuple[...], AS_TUPLE]``: accept a list (YAML) as well as a tuple."""


def _as_path(value: Any) -> Any:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str):
        raise ValueError("a path must be a string")
    if not value.strip():
        raise ValueError("path is empty")
    if "\x00" in value:
        raise ValueError("path contains a NUL character")
    return Path(value)


ScenePath = Annotated[Path, BeforeValidator(_as_path)]
"""A file path written as a non-empty string in the scene."""

Vec3 = Annotated[tuple[float, float, float], items(3, 3),
                 Field(description="three numbers [x, y, z]")]
"""A 3-vector of finite numbers in the room or CT frame (mm unless the key says otherwise)."""


def bounded_vec3(*, ge: float | None = None, gt: float | None = None,
                 le: float | None = None) -> Any:
    """A :data:`Vec3` type whose every component obeys the given bounds.

    Parameters
    ----------
    ge, gt, le : float, optional
        Lower (inclusive or exclusive) and upper (inclusive) bound of each component.
    """
    item = Annotated[float, Field(ge=ge, gt=gt, le=le)]
    return Annotated[tuple[item, item, item], items(3, 3),
                     Field(description="three numbers [x, y, z]")]


def _resolve(value: Path, info: ValidationInfo) -> tuple[Path, Path]:
    base = Path((info.context or {}).get("scene_dir", "."))
    path = value if value.is_absolute() else (base / value)
    try:
        exists = path.exists()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise ValueError(f"unusable path: {path} ({getattr(exc, 'strerror', None) or exc})"
                         ) from None
    if not exists:
        raise ValueError(f"file not found: {path}")
    return path.resolve(), base.resolve()


def resolve_scene_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """Resolve a path relative to the scene file's folder; require an existing regular file."""
    if value is None:
        return None
    path, _ = _resolve(value, info)
    if path.is_dir():
        raise ValueError(f"is a folder, not a file: {path}")
    if not path.is_file():
        raise ValueError(f"not a regular file (a device, FIFO or socket): {path}")
    return path


def resolve_scene_path(value: Path | None, info: ValidationInfo) -> Path | None:
    """Resolve a path relative to the scene file's folder; require an existing regular file
    or a folder (a DICOM series) that holds files and is not the scene's own folder."""
    if value is None:
        return None
    path, scene_dir = _resolve(value, info)
    if not path.is_dir():
        return resolve_scene_file(path, info)
    if path == scene_dir:
        raise ValueError(f"is the scene file's own folder, not a DICOM series folder: {path}")
    try:
        has_files = any(p.is_file() and not p.name.startswith(".") for p in path.iterdir())
    except OSError as exc:
        raise ValueError(f"cannot list folder {path} ({exc.strerror or exc})") from None
    if not has_files:
        raise ValueError(f"folder holds no files (expected a DICOM series): {path}")
    return path
