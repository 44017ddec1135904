"""CT readers and writers (SimpleITK): DICOM series folders, NIfTI, MetaImage, NRRD.

All readers return a :class:`Volume` in DICOM LPS millimetres. ITK already converts NIfTI's
RAS world coordinates to LPS (it negates the first two rows of the sform/qform), so the
same anatomical point gets the same CT coordinate from every format. Every failure is an
:class:`~cyberknife_sim.errors.InputError` whose one-line message names the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from ..errors import InputError
from ._ctfile import (
    check_ct_file,
    check_hu_values,
    check_image_geometry,
    native_stderr_quiet,
    one_line,
)
from .volume import Volume

__all__ = ["FILE_SUFFIXES", "read_ct", "write_volume"]

FILE_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd")
"""File types :func:`read_ct` accepts besides a DICOM folder."""
_WRITE_SUFFIXES = (".nii", ".nii.gz", ".mha")
_SPACING_RTOL = 0.01   # relative tolerance on slice spacing uniformity
_SPACING_ATOL = 0.02   # mm


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _first_line(exc: Exception, native: list[str] | None = None) -> str:
    return one_line(exc, native[0] if native else "")


def _ct_from_ijk(image: sitk.Image) -> NDArray[np.float64]:
    d = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    a = np.eye(4)
    a[:3, :3] = d @ np.diag(image.GetSpacing())
    a[:3, 3] = image.GetOrigin()
    return a


def _to_volume(image: sitk.Image, path: Path) -> Volume:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: expected a 3-D scalar image, got a {image.GetDimension()}-D "
                         f"image with {image.GetNumberOfComponentsPerPixel()} component(s) "
                         f"and size {list(image.GetSize())}")
    if min(image.GetSize()) < 2:
        raise InputError(f"{path}: expected a 3-D volume with at least 2 voxels per axis, got "
                         f"size {list(image.GetSize())}")
    check_image_geometry(image, path)
    arr = sitk.GetArrayFromImage(image)
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{path}: complex voxel values; expected a CT in HU")
    check_hu_values(arr, path)
    if np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    elif arr.dtype != np.int16:
        if arr.min() >= -32768 and arr.max() <= 32767:
            arr = arr.astype(np.int16)
        else:
            arr = arr.astype(np.float32)
    return Volume(arr, _ct_from_ijk(image), name=str(path))


def read_ct(path: str | Path) -> Volume:
    """Read a CT in HU from a DICOM series folder or a .nii/.nii.gz/.mha/.mhd/.nrrd file.

    Parameters
    ----------
    path : str or Path
        A file, or a folder holding exactly one DICOM series.

    Returns
    -------
    Volume
        HU voxels ``[k, j, i]`` (int16 when the values fit, else float32) and
        ``ct_from_ijk`` in DICOM LPS mm.

    Raises
    ------
    InputError
        Missing or unreadable file, unsupported type, not a 3-D scalar image, an empty
        folder, several series, missing/duplicate/unevenly spaced slices, a corrupt slice;
        a file whose data is cut short (NIfTI, MetaImage) or damaged (gzip); NaN or
        infinite voxels; values outside −32768..40000 HU; a voxel size outside
        0.001..100 mm, a non-finite origin or non-orthonormal direction cosines (limits in
        :mod:`cyberknife_sim.anatomy._ctfile`). The C++ libraries' own warnings are kept
        off stderr.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: CT file or folder not found")
    if path.is_dir():
        return _read_dicom_series(path)
    suffix = _suffix(path)
    if suffix not in FILE_SUFFIXES:
        raise InputError(f"{path}: unsupported CT file type {suffix or '(none)'!r}; use a DICOM "
                         f"folder or one of {', '.join(FILE_SUFFIXES)}")
    check_ct_file(path, suffix)
    try:
        with native_stderr_quiet() as native:
            image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot read image ({_first_line(exc, native)})") from None
    return _to_volume(image, path)


def _slice_info(file: str) -> tuple[np.ndarray, np.ndarray]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(file)
    with native_stderr_quiet():
        reader.ReadImageInformation()
    try:
        pos = np.array([float(t) for t in reader.GetMetaData("0020|0032").split("\\")])
        ori = np.array([float(t) for t in reader.GetMetaData("0020|0037").split("\\")])
    except (RuntimeError, ValueError):
        raise ValueError("no ImagePositionPatient/ImageOrientationPatient") from None
    if pos.shape != (3,) or ori.shape != (6,):
        raise ValueError("malformed ImagePositionPatient/ImageOrientationPatient")
    return pos, ori


def _read_dicom_series(folder: Path) -> Volume:
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.name != "DICOMDIR")
    if not files:
        raise InputError(f"{folder}: folder is empty (expected a DICOM series)")
    try:
        with native_stderr_quiet() as native:
            series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
            names = (list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))
                     if len(series) == 1 else [])
    except RuntimeError as exc:
        raise InputError(f"{folder}: cannot scan for DICOM ({_first_line(exc, native)})"
                         ) from None
    if not series:
        raise InputError(f"{folder}: no DICOM series found among {len(files)} file(s)")
    if len(series) > 1:
        raise InputError(f"{folder}: holds {len(series)} DICOM series "
                         f"({', '.join(s or '(no UID)' for s in series[:4])}); "
                         "give a folder with one series")
    in_series = {Path(n).resolve() for n in names}
    stray = [p for p in files if p.resolve() not in in_series]
    if stray:
        raise InputError(f"{stray[0]}: not a readable slice of the DICOM series in {folder} "
                         f"({len(stray)} such file(s)); corrupt or foreign file")
    if len(names) < 2:
        raise InputError(f"{folder}: a DICOM series needs at least 2 slices (found "
                         f"{len(names)})")
    positions, orients = [], []
    for n in names:
        try:
            pos, ori = _slice_info(n)
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"{n}: unreadable DICOM slice ({_first_line(exc)})") from None
        positions.append(pos)
        orients.append(ori)
    orients_a = np.array(orients)
    if not np.allclose(orients_a, orients_a[0], atol=1e-4):
        raise InputError(f"{folder}: slices have different orientations "
                         "(ImageOrientationPatient); mixed series")
    row, col = orients_a[0, :3], orients_a[0, 3:]
    normal = np.cross(row, col)
    along = np.array(positions) @ normal
    order = np.argsort(along)
    names = [names[i] for i in order]
    along = along[order]
    steps = np.diff(along)
    if np.any(steps < _SPACING_ATOL):
        i = int(np.argmin(steps))
        raise InputError(f"{folder}: two slices at the same position ({Path(names[i]).name}, "
                         f"{Path(names[i + 1]).name}); duplicate slice or mixed series")
    step = float(np.median(steps))
    bad = np.abs(steps - step) > max(_SPACING_ATOL, _SPACING_RTOL * step)
    if np.any(bad):
        i = int(np.argmax(bad))
        kind = "gap (missing slice?)" if steps[i] > step else "uneven slice spacing"
        raise InputError(f"{folder}: {kind} between {Path(names[i]).name} and "
                         f"{Path(names[i + 1]).name}: {steps[i]:.3f} mm where the series "
                         f"steps {step:.3f} mm")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    try:
        with native_stderr_quiet() as native:
            image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"{folder}: cannot read the DICOM series "
                         f"({_first_line(exc, native)})") from None
    vol = _to_volume(image, folder)
    # ITK derives the slice step from the first two positions; pin it to the median step
    a = vol.ct_from_ijk.copy()
    a[:3, 2] = normal * step
    a[:3, 3] = positions[order[0]]
    return Volume(vol.hu, a, name=str(folder))


def write_volume(volume: Volume, path: str | Path) -> Path:
    """Write a volume to .nii, .nii.gz or .mha with its geometry (opens in 3D Slicer at the
    same LPS place).

    The direction matrix must be orthonormal (true for every reader's output and the
    phantom). Returns the path written; raises InputError for another suffix or when the
    file cannot be written.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in _WRITE_SUFFIXES:
        raise InputError(f"{path}: cannot write {suffix or '(no suffix)'!r}; use one of "
                         f"{', '.join(_WRITE_SUFFIXES)}")
    spacing = volume.spacing_mm
    direction = volume.ct_from_ijk[:3, :3] / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-6):
        raise InputError(f"{path}: cannot write a volume with a sheared ct_from_ijk")
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.hu))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in volume.ct_from_ijk[:3, 3]])
    image.SetDirection([float(d) for d in direction.ravel()])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(path), useCompression=suffix in (".nii.gz", ".mha"))
    except (RuntimeError, OSError) as exc:
        raise InputError(f"{path}: cannot write ({_first_line(exc)})") from None
    return path
