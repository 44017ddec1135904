"""Phantom parameters and the YAML presets in ``cyberknife_sim/data/phantoms``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import InputError
from ._levels import level_dims, level_index, level_range

__all__ = ["PhantomParams", "list_presets", "load_preset", "preset_dir"]

Positive = Annotated[float, Field(gt=0.0)]


class PhantomParams(BaseModel):
    """Everything that defines a procedural spine phantom (frozen; seed is separate).

    The patient lies supine, head first: CT axes follow DICOM LPS (+x patient left,
    +y posterior, +z superior). Lengths in mm, HU for intensities.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = Field("", description="free text")
    top_level: str = Field("T8", description="most cranial vertebra (T1..L5)")
    bottom_level: str = Field("L1", description="most caudal vertebra (T1..L5)")
    voxel_size_mm: tuple[Positive, Positive, Positive] = Field(
        (1.0, 1.0, 1.5), description="voxel size along x, y, z (mm), each 0.3-4")
    fov_mm: tuple[Positive, Positive] = Field(
        (340.0, 260.0), description="in-plane field of view along x (left-right) and y "
        "(antero-posterior) (mm), 100-600")
    margin_z_mm: float = Field(15.0, ge=0.0, le=200.0,
                               description="extra length above and below the end vertebrae (mm)")
    body_half_width_mm: float = Field(160.0, ge=60.0, le=290.0,
                                      description="half width of the body contour (mm)")
    body_half_depth_mm: float = Field(112.0, ge=80.0, le=250.0,
                                      description="half depth (antero-posterior) of the body "
                                      "contour (mm)")
    fat_thickness_mm: float = Field(12.0, ge=0.0, le=60.0,
                                    description="subcutaneous fat thickness (mm)")
    cortical_thickness_mm: float = Field(1.6, ge=0.5, le=4.0,
                                         description="cortical shell thickness of vertebrae (mm)")
    kyphosis_mm: float = Field(12.0, ge=-40.0, le=40.0,
                               description="anterior shift of the caudal end vertebra relative "
                               "to the cranial one from the sagittal curve (mm)")
    variability: float = Field(1.0, ge=0.0, le=3.0,
                               description="scale of the seeded per-vertebra shape/pose "
                               "variation (0: none)")
    lesion_type: Literal["lytic", "blastic"] = Field(
        "lytic", description="metastasis type: lytic (~30 HU) or blastic (~800 HU)")
    lesion_level: str = Field("T10", description="vertebra whose body holds the lesion")
    lesion_radius_mm: float = Field(7.0, ge=2.0, le=20.0, description="lesion radius (mm)")
    lesion_offset_mm: tuple[float, float, float] = Field(
        (2.0, -2.0, 0.0), description="lesion center minus vertebral body center, CT mm (LPS)")
    noise_hu: float = Field(8.0, ge=0.0, le=100.0,
                            description="standard deviation of CT noise inside the body (HU)")

    @model_validator(mode="after")
    def _check(self) -> PhantomParams:
        labels = level_range(self.top_level, self.bottom_level)
        if len(labels) < 1:
            raise ValueError("no vertebra levels")
        for v in self.voxel_size_mm:
            if not 0.3 <= v <= 4.0:
                raise ValueError(f"voxel_size_mm values must lie in 0.3..4 (got {v})")
        for f in self.fov_mm:
            if not 100.0 <= f <= 600.0:
                raise ValueError(f"fov_mm values must lie in 100..600 (got {f})")
        level_index(self.lesion_level)
        if self.lesion_level not in labels:
            raise ValueError(f"lesion_level {self.lesion_level} is not among the phantom's "
                             f"levels {labels[0]}..{labels[-1]}")
        d = level_dims(self.lesion_level)
        ox, oy, oz = (abs(v) for v in self.lesion_offset_mm)
        r, ct = self.lesion_radius_mm, self.cortical_thickness_mm
        a, b, c = d.width / 2 - ct, d.depth / 2 - ct, d.height / 2 - ct
        fits = (((ox + r) / a) ** 2 + ((oy + r) / b) ** 2 <= 1.0 and oz + r <= c
                and self.lesion_offset_mm[1] + r <= 0.38 * d.depth - ct)
        if not fits:
            raise ValueError(f"lesion (radius {r} mm, offset {list(self.lesion_offset_mm)} mm) "
                             f"does not fit inside the {self.lesion_level} vertebral body "
                             f"(inner half sizes about {a:.1f} x {b:.1f} x {c:.1f} mm)")
        if 2 * self.body_half_width_mm > self.fov_mm[0] or \
                2 * self.body_half_depth_mm > self.fov_mm[1]:
            raise ValueError("the body contour is larger than fov_mm")
        return self

    @property
    def levels(self) -> tuple[str, ...]:
        """Vertebra labels, cranial first."""
        return level_range(self.top_level, self.bottom_level)


def preset_dir() -> Path:
    """Folder of the packaged phantom presets (``cyberknife_sim/data/phantoms``)."""
    return Path(str(resources.files("cyberknife_sim") / "data" / "phantoms"))


def list_presets() -> list[str]:
    """Names of the packaged presets (YAML file stems), sorted."""
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def load_preset(name_or_path: str | Path) -> PhantomParams:
    """Read a preset by name (from :func:`preset_dir`) or from a YAML file path.

    Raises
    ------
    InputError
        Unknown preset (the message lists the known ones), unreadable YAML or invalid keys
        (one line naming the file, key and value).
    """
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text)
    else:
        path = preset_dir() / f"{text}.yaml"
        if not path.is_file():
            raise InputError(f"unknown phantom preset {text!r}; available: "
                             f"{', '.join(list_presets()) or '(none)'}")
    if not path.is_file():
        raise InputError(f"{path}: phantom preset file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a phantom preset must be a mapping of keys")
    try:
        return PhantomParams.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"{loc}: {msg}")
        raise InputError(f"{path}: " + "; ".join(problems)) from None
