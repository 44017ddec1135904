"""Structures section: where the target and the cord come from (phantom, label map, RTSTRUCT)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from ._base import ScenePath, Section, resolve_scene_file

__all__ = ["LABELMAP_SUFFIXES", "RTSTRUCT_SUFFIXES", "StructuresSettings"]

LABELMAP_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd")
"""File types read as a label map (SimpleITK)."""
RTSTRUCT_SUFFIXES = (".dcm",)
"""File types read as a DICOM RT Structure Set (pydicom)."""

_Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-][A-Za-z0-9 _.()+-]*$", max_length=64)]
_Label = Annotated[int, Field(ge=1, le=65535)]


def _pairs(value: Any) -> Any:
    """Read a YAML mapping ``{name: label}`` (or a list of ``[name, label]`` pairs) as a tuple
    of pairs (hashable, and named by the scene docs)."""
    if isinstance(value, dict):
        return tuple((k, v) for k, v in value.items())
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


class StructuresSettings(Section):
    """The structures (target, cord, other organs) on the planning CT for the dose."""

    file: ScenePath | None = Field(
        None, description="a label map (.nii, .nii.gz, .mha, .mhd, .nrrd; e.g. a "
        "TotalSegmentator output) or a DICOM RT Structure Set (.dcm), relative to the scene "
        "file; null: the phantom's built-in structures (target, lesion, cord, canal, body)")
    labels: Annotated[tuple[tuple[_Name, _Label], ...], BeforeValidator(_pairs)] = Field(
        (), description="for a label map: structure name → label value, written as a mapping "
        "(e.g. {target: 1, cord: 2}); must name the target and the cord; empty otherwise")
    target: _Name = Field("target", description="name of the target structure (the PTV); "
                          "matched case-insensitively in an RTSTRUCT")
    cord: _Name = Field("cord", description="name of the spinal cord structure")

    @field_validator("file")
    @classmethod
    def _resolve_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        path = resolve_scene_file(value, info)
        if path is None:
            return None
        name = path.name.lower()
        if not name.endswith(LABELMAP_SUFFIXES + RTSTRUCT_SUFFIXES):
            raise ValueError(f"unsupported structures file type: {path.name} (a label map "
                             f"{', '.join(LABELMAP_SUFFIXES)} or an RTSTRUCT "
                             f"{', '.join(RTSTRUCT_SUFFIXES)})")
        return path

    @field_validator("labels")
    @classmethod
    def _unique(cls, value: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
        names = [n for n, _ in value]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"structure names given twice: {', '.join(dup)}")
        return value

    @model_validator(mode="after")
    def _labels_fit_file(self) -> StructuresSettings:
        if self.is_labelmap:
            names = {n for n, _ in self.labels}
            missing = [k for k in (self.target, self.cord) if k not in names]
            if not self.labels:
                raise ValueError("`labels` (name: label value) is required for a label map "
                                 "`file`")
            if missing:
                raise ValueError(f"`labels` must name the target and the cord (missing: "
                                 f"{', '.join(missing)})")
        elif self.labels:
            raise ValueError("`labels` is only used with a label map `file` (an RTSTRUCT "
                             "names its structures; the phantom has its own)")
        return self

    @property
    def is_labelmap(self) -> bool:
        """True when ``file`` is a label map (not an RTSTRUCT, not the phantom)."""
        return self.file is not None and self.file.name.lower().endswith(LABELMAP_SUFFIXES)

    @property
    def label_map(self) -> dict[str, int]:
        """``labels`` as a dict name → label value."""
        return dict(self.labels)
