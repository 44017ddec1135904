"""Dose files: NIfTI (SimpleITK) and DICOM RT Dose (pydicom), each with a reader.

Both store the dose on its :class:`DoseGrid` in the CT frame (DICOM LPS mm): NIfTI through
SimpleITK, which converts LPS to the file's RAS affine so that 3D Slicer places it over the CT;
RT Dose as a multi-frame 32-bit unsigned image with ``DoseGridScaling`` (Gy per stored unit),
identity ``ImageOrientationPatient`` and a relative ``GridFrameOffsetVector``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError
from ._grid import DoseGrid

__all__ = ["read_dose_nifti", "read_rtdose", "write_dose_nifti", "write_rtdose"]

RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
_U32_MAX = 2**32 - 1


def _check_dose(dose_gy: ArrayLike, grid: DoseGrid, *, non_negative: bool = False):
    dose = np.asarray(dose_gy)
    if dose.ndim != 3:
        raise InputError(f"dose file: dose must be a 3-D [k, j, i] array (got {dose.ndim}-D)")
    if dose.shape != grid.shape:
        raise InputError(f"dose file: dose shape {dose.shape} differs from the grid {grid.shape}")
    dose = dose.astype(np.float64)
    if not np.all(np.isfinite(dose)):
        raise InputError("dose file: dose holds non-finite values")
    if non_negative and dose.min() < 0:
        raise InputError(f"dose file: RT Dose stores unsigned values (min {dose.min():g} Gy)")
    return dose


def _check_out(path) -> Path:
    p = Path(path)
    if not p.parent.is_dir():
        raise InputError(f"dose file: folder {p.parent} does not exist (writing {p})")
    return p


def _grid_from(origin, spacing, shape, where: str) -> DoseGrid:
    sp = np.asarray(spacing, dtype=np.float64)
    if not np.allclose(sp, sp[0], rtol=1e-6, atol=0):
        raise InputError(f"{where}: spacing {tuple(sp)} mm is not isotropic (DoseGrid needs it)")
    return DoseGrid(tuple(int(n) for n in shape), origin, float(sp[0]))


def write_dose_nifti(path: str | Path, dose_gy: ArrayLike, grid: DoseGrid) -> Path:
    """Write a dose as NIfTI (float32 Gy) on ``grid``'s geometry.

    Parameters
    ----------
    path : str or Path
        ``*.nii`` or ``*.nii.gz``.
    dose_gy : array-like, shape grid.shape ``[k, j, i]``
        Dose (Gy).
    grid : DoseGrid
        Origin (LPS mm of voxel (0, 0, 0)), spacing; direction is the identity in LPS.

    Returns
    -------
    Path
    """
    import SimpleITK as sitk

    p = _check_out(path)
    dose = _check_dose(dose_gy, grid)
    img = sitk.GetImageFromArray(dose.astype(np.float32))
    img.SetOrigin(tuple(float(v) for v in grid.origin_ct_mm))
    img.SetSpacing((grid.spacing_mm,) * 3)
    img.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    try:
        sitk.WriteImage(img, str(p), True)
    except RuntimeError as err:
        raise InputError(f"dose file: cannot write {p}: {str(err).splitlines()[0]}") from err
    return p


def read_dose_nifti(path: str | Path) -> tuple[NDArray[np.float32], DoseGrid]:
    """Read a dose NIfTI written by :func:`write_dose_nifti`.

    Returns
    -------
    dose_gy : ndarray, shape (nk, nj, ni), float32
    grid : DoseGrid
        Origin as stored (NIfTI keeps float32 affines, so about 1e-5 mm).

    Raises
    ------
    InputError
        Missing or unreadable file, not 3-D, rotated or anisotropic grid.
    """
    import SimpleITK as sitk

    p = Path(path)
    if not p.is_file():
        raise InputError(f"dose file: {p} does not exist")
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as err:
        raise InputError(f"dose file: cannot read {p}: {str(err).splitlines()[0]}") from err
    if img.GetDimension() != 3:
        raise InputError(f"dose file: {p} is {img.GetDimension()}-D, need 3-D")
    if not np.allclose(img.GetDirection(), np.eye(3).ravel(), atol=1e-6):
        raise InputError(f"dose file: {p} is rotated (direction {img.GetDirection()})")
    dose = sitk.GetArrayFromImage(img).astype(np.float32)
    return dose, _grid_from(img.GetOrigin(), img.GetSpacing(), dose.shape, f"dose file {p}")


def _ds(v: float) -> str:
    """A DICOM decimal string (≤ 16 characters) for ``v``."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(v))


def _copy_reference(ds, reference) -> None:
    """Patient, study and frame of reference from a CT dataset or file, when given."""
    import pydicom

    if reference is None:
        return
    try:
        ref = reference if isinstance(reference, pydicom.Dataset) else pydicom.dcmread(
            str(reference), stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError) as err:
        raise InputError(f"RT Dose: cannot read the reference CT {reference}: {err}") from err
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
               "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
               "FrameOfReferenceUID", "PositionReferenceIndicator"):
        if kw in ref:
            setattr(ds, kw, ref.data_element(kw).value)


def write_rtdose(path: str | Path, dose_gy: ArrayLike, grid: DoseGrid, *,
                 reference=None, description: str = "cyberknife_sim dose",
                 summation_type: str = "PLAN", referenced_plan_uid: str | None = None,
                 uid_prefix: str = "1.2.826.0.1.3680043.8.498.") -> Path:
    """Write a dose as a DICOM RT Dose file (one multi-frame instance).

    Stored values are ``round(dose / DoseGridScaling)`` in 32-bit unsigned integers with
    ``DoseGridScaling = max(dose) / (2**32 - 2)`` rounded up to a 16-character decimal string, so
    the read-back dose is within ``DoseGridScaling / 2`` (about ``2.3e-10 × max``) of the input.
    UIDs come from ``pydicom.uid.generate_uid(uid_prefix, entropy)`` with the entropy hashed
    from the dose, the grid and the arguments, and no dates are written: the same inputs give the
    same file, byte for byte.

    Parameters
    ----------
    path : str or Path
        Output ``.dcm`` file.
    dose_gy : array-like, shape grid.shape ``[k, j, i]``
        Dose (Gy), non-negative.
    grid : DoseGrid
        Geometry in the CT frame (LPS mm); slice k sits at ``origin_z + k × spacing``.
    reference : pydicom.Dataset or path, optional
        A slice of the planning CT series: patient, study and ``FrameOfReferenceUID`` are copied
        so that viewers register the dose to that CT. Without it, new UIDs are made.
    description : str
        ``SeriesDescription``.
    summation_type : {"PLAN", "RECORD", "FRACTION", "MULTI_PLAN"}
        ``DoseSummationType``; ``RECORD`` suits a delivered dose.
    referenced_plan_uid : str, optional
        SOP Instance UID of the RT Plan the dose belongs to (``ReferencedRTPlanSequence`` is
        required for PLAN/FRACTION/MULTI_PLAN); made up, deterministically, if not given — no
        RT Plan file is written.
    uid_prefix : str
        Root of generated UIDs (default: pydicom's).

    Returns
    -------
    Path
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if summation_type not in ("PLAN", "RECORD", "FRACTION", "MULTI_PLAN"):
        raise InputError(f"RT Dose: summation_type must be PLAN, RECORD, FRACTION or MULTI_PLAN "
                         f"(got {summation_type!r})")
    p = _check_out(path)
    dose = _check_dose(dose_gy, grid, non_negative=True)
    h = hashlib.sha256(dose.tobytes())
    h.update(repr((grid.shape, grid.origin_ct_mm.tolist(), grid.spacing_mm, description,
                   summation_type, referenced_plan_uid)).encode())
    seed = h.hexdigest()

    def uid(role: str) -> str:
        return generate_uid(prefix=uid_prefix, entropy_srcs=[seed, role])

    ds = pydicom.Dataset()
    ds.SOPClassUID = RT_DOSE_STORAGE
    ds.SOPInstanceUID = uid("sop")
    ds.Modality = "RTDOSE"
    ds.Manufacturer = "cyberknife_sim"
    ds.SeriesInstanceUID = uid("series")
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SeriesDescription = description[:64]
    ds.PatientName, ds.PatientID = "CKSIM^PHANTOM", "CKSIM"
    ds.PatientBirthDate, ds.PatientSex = "", ""
    ds.StudyInstanceUID, ds.StudyID = uid("study"), "1"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "", "", "", ""
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = uid("frame"), ""
    _copy_reference(ds, reference)
    nk, nj, ni = grid.shape
    s = grid.spacing_mm
    ds.ImagePositionPatient = [_ds(v) for v in grid.origin_ct_mm]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [_ds(s), _ds(s)]  # row spacing (y), column spacing (x)
    ds.SliceThickness = _ds(s)
    ds.GridFrameOffsetVector = [_ds(k * s) for k in range(nk)]
    ds.NumberOfFrames = nk
    ds.FrameIncrementPointer = pydicom.tag.Tag(0x3004, 0x000C)
    ds.Rows, ds.Columns = nj, ni
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 32, 32, 31, 0
    ds.DoseUnits, ds.DoseType, ds.DoseSummationType = "GY", "PHYSICAL", summation_type
    ds.TissueHeterogeneityCorrection = ["IMAGE"]
    peak = float(dose.max())
    scaling = float(_ds(np.nextafter(peak / (_U32_MAX - 1), np.inf))) if peak > 0 else 1.0
    while peak / scaling > _U32_MAX - 0.5:  # the decimal string rounded down: step up
        scaling = float(_ds(scaling * (1 + 1e-12)))
    ds.DoseGridScaling = _ds(scaling)
    pixels = np.rint(dose / scaling).astype(np.uint32)
    ds.PixelData = pixels.tobytes()
    if summation_type != "RECORD":
        item = pydicom.Dataset()
        item.ReferencedSOPClassUID = RT_PLAN_STORAGE
        item.ReferencedSOPInstanceUID = referenced_plan_uid or uid("plan")
        ds.ReferencedRTPlanSequence = [item]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_DOSE_STORAGE
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    try:
        ds.save_as(p, enforce_file_format=True)
    except OSError as err:
        raise InputError(f"RT Dose: cannot write {p}: {err}") from err
    return p


def read_rtdose(path: str | Path) -> tuple[NDArray[np.float64], DoseGrid]:
    """Read an RT Dose file with an axis-aligned, isotropic grid.

    Returns
    -------
    dose_gy : ndarray, shape (nk, nj, ni), float64
        Stored values × ``DoseGridScaling``.
    grid : DoseGrid
        From ``ImagePositionPatient``, ``PixelSpacing`` and ``GridFrameOffsetVector``.

    Raises
    ------
    InputError
        Missing or unreadable file, not RT Dose, rotated, anisotropic or unevenly spaced grid.
    """
    import pydicom

    p = Path(path)
    if not p.is_file():
        raise InputError(f"RT Dose: {p} does not exist")
    try:
        ds = pydicom.dcmread(str(p))
    except (OSError, pydicom.errors.InvalidDicomError) as err:
        raise InputError(f"RT Dose: cannot read {p}: {err}") from err
    if ds.get("Modality") != "RTDOSE" or "PixelData" not in ds:
        raise InputError(f"RT Dose: {p} is not an RT Dose image (Modality {ds.get('Modality')})")
    iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    if not np.allclose(iop, [1, 0, 0, 0, 1, 0], atol=1e-6):
        raise InputError(f"RT Dose: {p} has orientation {iop.tolist()}, need [1,0,0,0,1,0]")
    nk = int(ds.get("NumberOfFrames", 1))
    px = ds.pixel_array.reshape(nk, int(ds.Rows), int(ds.Columns))
    dose = px.astype(np.float64) * float(ds.DoseGridScaling)
    offsets = np.asarray(ds.get("GridFrameOffsetVector", [0.0]), dtype=np.float64)
    dz = np.diff(offsets)
    row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
    dz_mm = float(dz[0]) if dz.size else col_mm
    if dz.size and not np.allclose(dz, dz_mm, rtol=1e-6, atol=0):
        raise InputError(f"RT Dose: {p} has uneven GridFrameOffsetVector steps")
    grid = _grid_from(np.asarray(ds.ImagePositionPatient, dtype=np.float64),
                      (col_mm, row_mm, dz_mm), dose.shape, f"RT Dose {p}")
    return dose, grid
