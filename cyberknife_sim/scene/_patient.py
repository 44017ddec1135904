"""Patient section: which CT (a built-in phantom preset or a file), the target, OARs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from ._base import ScenePath, Section, bounded_vec3, items, resolve_scene_path
from ._structures import StructuresSettings
from ._truth import TruthSettings

__all__ = ["PatientSettings", "PlanningCtSettings"]

_CtPoint = bounded_vec3(ge=-100000.0, le=100000.0)
"""A point in CT mm (LPS), each component within ±100 m."""
_Voxel = bounded_vec3(ge=-0.5, le=100000.0)
"""A voxel index (i, j, k), 0-based, fractions allowed."""
_OarName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9 _-]*$", max_length=64)]


class PlanningCtSettings(Section):
    """The planning CT of a phantom patient as a simulated acquisition of the truth patient
    (``room.imaging.live_images: realistic``): the fine 4D phantom at one breathing phase,
    binned to the CT grid with partial volume and CT noise. Ignored for a CT file (that file
    is the planning CT) and in the ``ideal`` ablation (the painted phantom is)."""

    phase: Literal["exhale", "inhale", "average"] = Field(
        "exhale", description="breathing phase the CT is taken at: exhale, inhale (an average "
        "inhale, breath level 1) or average (free breathing: the mean over one breath)")
    slice_thickness_mm: float = Field(1.5, ge=0.625, le=3.0,
                                      description="slice thickness and spacing (mm)")
    pixel_mm: float = Field(1.0, ge=0.5, le=1.5, description="in-plane pixel size (mm)")
    noise_hu: float = Field(10.0, ge=0.0, le=100.0,
                            description="CT noise standard deviation (HU) at 1.5 mm slices; "
                            "other thicknesses get noise_hu * sqrt(1.5 / slice) (fixed dose)")


class PatientSettings(Section):
    """The planning CT and the structures on it."""

    phantom: str | None = Field(
        "default", pattern=r"^[A-Za-z0-9_-]+$", max_length=64,
        description="name of a phantom preset in phantoms/ (null when `ct` is given)")
    ct: ScenePath | None = Field(
        None, description="CT file (.nii, .nii.gz, .mha, .mhd, .nrrd) or a folder holding one "
        "DICOM series (not the scene's own folder); relative to the scene file")
    ct_phases: Annotated[tuple[ScenePath, ...], items(0, 20)] = Field(
        (), description="a 4D CT as the truth patient: one CT file per breathing phase "
        "(same grid and frame as `ct`, the planning CT); empty: the truth is `ct` with the "
        "synthetic breathing deformation (realistic live images)")
    ct_phase_levels: Annotated[tuple[Annotated[float, Field(ge=0.0, le=3.0)], ...],
                               items(0, 20)] = Field(
        (), description="breath level of each file in `ct_phases` (0 exhale, 1 an average "
        "inhale), one per file")
    target_ct_mm: _CtPoint | None = Field(
        None, description="target center in CT mm (DICOM LPS); null: the phantom's lesion "
        "center. Give at most one of target_ct_mm, target_ras_mm, target_voxel")
    target_ras_mm: _CtPoint | None = Field(
        None, description="target center in RAS mm, as 3D Slicer shows it: (R, A, S) = "
        "(-x, -y, z) of LPS")
    target_voxel: _Voxel | None = Field(
        None, description="target center as a 0-based voxel index (i, j, k) = (column, row, "
        "slice) of the CT as read (fractions allowed), mapped through the CT's own affine")
    target_radius_mm: float = Field(10.0, gt=0.0, le=100.0,
                                    description="target (lesion) radius used by the plan (mm)")
    organs_at_risk: Annotated[tuple[_OarName, ...], items(0, 50)] = Field(
        ("cord",), description="OAR names to report (letters, digits, space, _ and -)")
    planning_ct: PlanningCtSettings = Field(
        default_factory=PlanningCtSettings,
        description="the phantom's planning CT acquisition (realistic live images)")
    truth: TruthSettings = Field(
        default_factory=TruthSettings,
        description="the 4D truth patient the live images see (realistic live images)")
    structures: StructuresSettings = Field(
        default_factory=StructuresSettings,
        description="the target and cord structures for the dose (phantom, label map or "
        "RTSTRUCT)")

    @field_validator("ct")
    @classmethod
    def _resolve_ct(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        path = resolve_scene_path(value, info)
        if path is None or path.is_dir():
            return path
        from ..anatomy.io import FILE_SUFFIXES  # the readable CT file types

        name = path.name.lower()
        if not name.endswith(FILE_SUFFIXES):
            raise ValueError(f"unsupported CT file type: {path.name} (use a DICOM folder or one "
                             f"of {', '.join(FILE_SUFFIXES)})")
        return path

    @field_validator("ct_phases")
    @classmethod
    def _resolve_phases(cls, value: tuple[Path, ...], info: ValidationInfo) -> tuple[Path, ...]:
        return tuple(cls._resolve_ct(v, info) for v in value)

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
        given = [k for k in ("target_ct_mm", "target_ras_mm", "target_voxel")
                 if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one target, not {' and '.join(given)}")
        if self.ct_phases and self.ct is None:
            raise ValueError("`ct_phases` needs `ct` (the planning CT)")
        if len(self.ct_phases) != len(self.ct_phase_levels):
            raise ValueError(f"give one `ct_phase_levels` entry per `ct_phases` file (got "
                             f"{len(self.ct_phase_levels)} for {len(self.ct_phases)})")
        if self.ct_phases and len(self.ct_phases) < 2:
            raise ValueError("`ct_phases` needs at least two phase files")
        if self.ct is not None and not given:
            raise ValueError("a target is required when `ct` is a file: `target_ct_mm` (LPS "
                             "mm), `target_ras_mm` (RAS mm, as 3D Slicer shows) or "
                             "`target_voxel` (i, j, k)")
        return self

    def target_lps_mm(self, ct_from_ijk: np.ndarray) -> np.ndarray | None:
        """The target in CT mm (LPS) from whichever form the scene gives, or None (the
        phantom's lesion center).

        Parameters
        ----------
        ct_from_ijk : ndarray, shape (4, 4)
            The CT's voxel-index → LPS mm affine (for ``target_voxel``).
        """
        if self.target_ct_mm is not None:
            return np.array(self.target_ct_mm, dtype=np.float64)
        if self.target_ras_mm is not None:
            r, a, s = self.target_ras_mm
            return np.array([-r, -a, s], dtype=np.float64)
        if self.target_voxel is not None:
            ijk1 = np.append(np.asarray(self.target_voxel, dtype=np.float64), 1.0)
            return (np.asarray(ct_from_ijk, dtype=np.float64) @ ijk1)[:3]
        return None

    @property
    def uses_phantom(self) -> bool:
        """True when the CT is generated from a phantom preset."""
        return self.ct is None
