"""Dose files: NIfTI and RT Dose round trips, voxel positions, validity and bad input."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom import config

from cyberknife_sim.dose import DoseGrid
from cyberknife_sim.dose._io import (
    RT_DOSE_STORAGE,
    read_dose_nifti,
    read_rtdose,
    write_dose_nifti,
    write_rtdose,
)
from cyberknife_sim.errors import InputError

GRID = DoseGrid((4, 5, 6), (-10.5, 3.25, 100.0), 1.5)
DOSE = np.random.default_rng(0).random(GRID.shape) * 16.0


def test_nifti_round_trip_is_bit_exact_in_float32(tmp_path):
    p = write_dose_nifti(tmp_path / "dose.nii.gz", DOSE, GRID)
    dose, grid = read_dose_nifti(p)
    assert dose.dtype == np.float32
    assert np.array_equal(dose, DOSE.astype(np.float32))
    assert grid.shape == GRID.shape and grid.spacing_mm == GRID.spacing_mm
    assert np.allclose(grid.origin_ct_mm, GRID.origin_ct_mm, atol=1e-5)  # float32 affine


def test_nifti_affine_is_ras_of_the_lps_grid(tmp_path):
    # what 3D Slicer reads: RAS = diag(-1, -1, 1) LPS
    import nibabel as nib

    p = write_dose_nifti(tmp_path / "dose.nii", DOSE, GRID)
    aff = nib.load(p).affine
    expect = np.diag([-1.0, -1.0, 1.0, 1.0]) @ GRID.ct_from_ijk
    assert np.allclose(aff, expect, atol=1e-5)


def test_rtdose_round_trip_within_half_a_scaling_step(tmp_path):
    p = write_rtdose(tmp_path / "dose.dcm", DOSE, GRID)
    dose, grid = read_rtdose(p)
    ds = pydicom.dcmread(p)
    step = float(ds.DoseGridScaling)
    assert step <= DOSE.max() / (2**32 - 2) * (1 + 1e-9)
    assert np.max(np.abs(dose - DOSE)) <= 0.5 * step * (1 + 1e-6)
    # voxel positions: IPP + column/row spacing + frame offsets are the grid points exactly
    assert grid.shape == GRID.shape
    assert np.array_equal(grid.points_ct(), GRID.points_ct())
    ipp = np.asarray(ds.ImagePositionPatient, float)
    z = ipp[2] + np.asarray(ds.GridFrameOffsetVector, float)
    assert np.array_equal(z, GRID.axes_ct()[2])


def test_rtdose_has_the_iod_attributes_and_is_deterministic(tmp_path):
    old = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.RAISE  # pydicom's value checks raise
    try:
        a = write_rtdose(tmp_path / "a.dcm", DOSE, GRID)
        b = write_rtdose(tmp_path / "b.dcm", DOSE, GRID)
    finally:
        config.settings.writing_validation_mode = old
    assert a.read_bytes() == b.read_bytes()
    ds = pydicom.dcmread(a)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == RT_DOSE_STORAGE == ds.file_meta.MediaStorageSOPClassUID
    assert ds.Modality == "RTDOSE" and ds.DoseUnits == "GY" and ds.DoseType == "PHYSICAL"
    assert ds.DoseSummationType == "PLAN" and len(ds.ReferencedRTPlanSequence) == 1
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert ds.BitsAllocated == 32 and ds.PixelRepresentation == 0
    assert ds.FrameIncrementPointer == pydicom.tag.Tag(0x3004, 0x000C)
    assert ds.pixel_array.shape == GRID.shape
    for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID,
                ds.FrameOfReferenceUID):
        assert uid.is_valid and len(uid) <= 64


def test_rtdose_takes_patient_and_frame_of_reference_from_the_ct(tmp_path):
    ct = pydicom.Dataset()
    ct.PatientName, ct.PatientID = "DOE^JANE", "P42"
    ct.StudyInstanceUID = "1.2.3.4.5"
    ct.FrameOfReferenceUID = "1.2.3.4.6"
    p = write_rtdose(tmp_path / "d.dcm", DOSE, GRID, reference=ct, summation_type="RECORD")
    ds = pydicom.dcmread(p)
    assert ds.PatientID == "P42" and ds.FrameOfReferenceUID == "1.2.3.4.6"
    assert ds.StudyInstanceUID == "1.2.3.4.5" and "ReferencedRTPlanSequence" not in ds


def test_bad_paths_and_shapes(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_dose_nifti(tmp_path / "nope" / "d.nii.gz", DOSE, GRID)
    with pytest.raises(InputError, match="does not exist"):
        write_rtdose(tmp_path / "nope" / "d.dcm", DOSE, GRID)
    with pytest.raises(InputError, match="does not exist"):
        read_rtdose(tmp_path / "missing.dcm")
    with pytest.raises(InputError, match="does not exist"):
        read_dose_nifti(tmp_path / "missing.nii.gz")
    with pytest.raises(InputError, match="3-D"):
        write_dose_nifti(tmp_path / "d.nii.gz", DOSE[0], GRID)
    with pytest.raises(InputError, match="3-D"):
        write_rtdose(tmp_path / "d.dcm", DOSE[0], GRID)
    with pytest.raises(InputError, match="unsigned"):
        write_rtdose(tmp_path / "d.dcm", -DOSE, GRID)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom")
    with pytest.raises(InputError, match="cannot read"):
        read_rtdose(junk)
