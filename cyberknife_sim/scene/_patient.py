"""Patient section: which CT (a built-in phantom preset or a file), the target, OARs."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from ._base import Section, Vec3, resolve_scene_path

__all__ = ["PatientSettings"]


class PatientSettings(Section):
    """The planning CT and the structures on it."""

    phantom: str | None = Field(
        "default", pattern=r"^[A-Za-z0-9_-]+$",
        description="name of a phantom preset in phantoms/ (null when `ct` is given)")
    ct: Path | None = Field(
        None, description="CT file or DICOM folder (.nii, .nii.gz, .mha, .mhd, .nrrd, folder); "
        "relative to the scene file")
    target_ct_mm: Vec3 | None = Field(
        None, description="target center in CT mm (LPS); null: the phantom's lesion center")
    target_radius_mm: float = Field(10.0, gt=0.0, le=100.0,
                                    description="target (lesion) radius used by the plan (mm)")
    organs_at_risk: tuple[str, ...] = Field(("cord",), description="OAR names to report")

    _resolve_ct = field_validator("ct")(resolve_scene_path)

    @field_validator("phantom")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from ..anatomy._params import list_presets  # the packaged presets/*.yaml

        known = list_presets()
        if value not in known:
            raise ValueError(f"unknown phantom preset (known: {', '.join(known)})")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> PatientSettings:
        if self.ct is not None and self.phantom not in (None, "default"):
            raise ValueError("give either `phantom` or `ct`, not both")
        if self.ct is not None and self.target_ct_mm is None:
            raise ValueError("`target_ct_mm` is required when `ct` is a file")
        return self

    @property
    def uses_phantom(self) -> bool:
        """True when the CT is generated from a phantom preset."""
        return self.ct is None
