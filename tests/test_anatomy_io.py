"""CT readers/writers: real NIfTI and DICOM, LPS geometry, round trips, broken inputs."""

from __future__ import annotations

import gzip
import shutil
import struct

import numpy as np
import pytest
import SimpleITK as sitk

from cyberknife_sim.anatomy import Volume, read_ct, write_volume
from cyberknife_sim.errors import InputError

pytestmark = pytest.mark.shared_data


def _nifti_sform(path) -> np.ndarray:
    """The RAS sform (4x4) read straight from a NIfTI-1 header (independent of ITK)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read(348)
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    srow = np.array(struct.unpack(endian + "12f", raw[280:328]), dtype=np.float64).reshape(3, 4)
    assert struct.unpack(endian + "h", raw[254:256])[0] > 0, "test file must carry an sform"
    return np.vstack([srow, [0, 0, 0, 1]])


def _write_nifti(path, data: np.ndarray, ras_from_ijk: np.ndarray) -> None:
    """A minimal NIfTI-1 (.nii.gz) with only an sform, written by hand (data [k, j, i])."""
    nk, nj, ni = data.shape
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    struct.pack_into("<8h", hdr, 40, 3, ni, nj, nk, 1, 1, 1, 1)
    struct.pack_into("<hh", hdr, 70, 4, 16)  # datatype int16, bitpix
    sp = np.linalg.norm(ras_from_ijk[:3, :3], axis=0)
    struct.pack_into("<8f", hdr, 76, 1.0, *sp, 1, 1, 1, 1)
    struct.pack_into("<f", hdr, 108, 352.0)  # vox_offset
    struct.pack_into("<ff", hdr, 112, 1.0, 0.0)  # scl_slope, scl_inter
    struct.pack_into("<hh", hdr, 252, 0, 2)  # qform_code 0, sform_code 2 (aligned)
    struct.pack_into("<12f", hdr, 280, *ras_from_ijk[:3].ravel())
    hdr[344:348] = b"n+1\0"
    body = bytes(hdr) + b"\0" * 4 + np.ascontiguousarray(data, dtype="<i2").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(body)


@pytest.fixture(scope="module")
def nifti_path(shared_data):
    return shared_data / "ct" / "example_ct.nii.gz"


@pytest.fixture(scope="module")
def dicom_dir(shared_data):
    return shared_data / "ct" / "example_ct_dicom"


def test_real_nifti_shape_spacing_hu_and_lps(nifti_path):
    v = read_ct(nifti_path)
    assert v.shape == (112, 101, 122)
    np.testing.assert_allclose(v.spacing_mm, [3.0, 3.0, 3.0])
    assert v.hu.min() < -900 and v.hu.max() > 1000
    assert -1100 < np.median(v.hu[:, :3, :]) < -900  # air at the anterior edge
    lps_from_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    np.testing.assert_allclose(v.ct_from_ijk, lps_from_ras @ _nifti_sform(nifti_path),
                               atol=1e-4)


def test_nifti_to_mha_round_trip_keeps_lps_points(nifti_path, tmp_path):
    v = read_ct(nifti_path)
    for name in ("rt.mha", "rt.nii.gz", "rt.nii"):
        w = read_ct(write_volume(v, tmp_path / name))
        np.testing.assert_array_equal(w.hu, v.hu)
        np.testing.assert_allclose(w.ct_from_ijk, v.ct_from_ijk, atol=1e-4)
        p = np.array([60.0, 50.0, 40.0])
        np.testing.assert_allclose(w.ijk_to_ct(p), v.ijk_to_ct(p), atol=1e-3)


def test_synthetic_nifti_known_ras_affine(tmp_path):
    # i runs anterior (RAS +y), j runs toward the patient's right (RAS -x), k superior
    ras = np.array([[0.0, -2.0, 0.0, 10.0],
                    [1.5, 0.0, 0.0, -20.0],
                    [0.0, 0.0, 3.0, 30.0],
                    [0.0, 0.0, 0.0, 1.0]])
    data = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)  # [k, j, i]
    path = tmp_path / "syn.nii.gz"
    _write_nifti(path, data, ras)
    v = read_ct(path)
    assert v.shape == (6, 5, 4)
    np.testing.assert_array_equal(v.hu, data)
    # voxel (i, j, k) = (3, 4, 5): RAS (10 - 8, -20 + 4.5, 30 + 15) -> LPS (-2, 15.5, 45)
    np.testing.assert_allclose(v.ijk_to_ct([3, 4, 5]), [-2.0, 15.5, 45.0], atol=1e-4)
    np.testing.assert_allclose(v.ct_to_ijk([-2.0, 15.5, 45.0]), [3, 4, 5], atol=1e-4)


def test_dicom_series(dicom_dir, tmp_path):
    v = read_ct(dicom_dir)
    assert v.shape == (20, 512, 512)
    np.testing.assert_allclose(v.spacing_mm, [0.9765625, 0.9765625, 2.0])
    assert v.hu.min() == -1024  # stored 0 + RescaleIntercept -1024: rescale applied
    assert v.hu.max() > 1000
    np.testing.assert_allclose(v.ct_from_ijk[:3, 3], [-249.51171875, -437.51171875, -804.5])
    np.testing.assert_allclose(v.ct_from_ijk[:3, :3], np.diag([0.9765625, 0.9765625, 2.0]))
    # file names in reverse order do not change the result (sorted by position)
    files = sorted(dicom_dir.iterdir())
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for n, f in enumerate(reversed(files)):
        shutil.copy(f, shuffled / f"s{n:03d}.dcm")
    w = read_ct(shuffled)
    np.testing.assert_array_equal(w.hu, v.hu)
    np.testing.assert_allclose(w.ct_from_ijk, v.ct_from_ijk)
    # and it agrees with ITK's own series reader
    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(dicom_dir)))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(r.Execute()), v.hu)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return sorted(dst.iterdir())


def _one_line_error(path, match):
    with pytest.raises(InputError) as err:
        read_ct(path)
    msg = str(err.value)
    assert "\n" not in msg and match in msg, msg
    return msg


def test_broken_inputs_give_one_clear_error(dicom_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert str(empty) in _one_line_error(empty, "empty")

    corrupt_dir = tmp_path / "corrupt"
    files = _copy(dicom_dir, corrupt_dir)
    files[7].write_bytes(b"\x00garbage" * 100)
    assert files[7].name in _one_line_error(corrupt_dir, "not a readable slice")

    trunc_dir = tmp_path / "truncated"
    files = _copy(dicom_dir, trunc_dir)
    data = files[5].read_bytes()
    files[5].write_bytes(data[: len(data) // 2])
    _one_line_error(trunc_dir, str(trunc_dir.name))

    gap_dir = tmp_path / "gap"
    files = _copy(dicom_dir, gap_dir)
    positions = {f: read_ct_position(f) for f in files}
    middle = sorted(files, key=lambda f: positions[f])[10]
    middle.unlink()
    _one_line_error(gap_dir, "gap")

    two_d = tmp_path / "slice.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.int16)), str(two_d))
    _one_line_error(two_d, "3-D")

    text = tmp_path / "notes.nii.gz"
    text.write_text("this is not an image")
    _one_line_error(text, "cannot read image")

    _one_line_error(tmp_path / "missing.nii.gz", "not found")
    other = tmp_path / "ct.txt"
    other.write_text("x")
    _one_line_error(other, "unsupported")


def read_ct_position(file) -> float:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(file))
    reader.ReadImageInformation()
    return float(reader.GetMetaData("0020|0032").split("\\")[2])


def test_write_rejects_other_suffix(tmp_path):
    v = Volume(np.zeros((3, 3, 3), np.int16), np.eye(4))
    with pytest.raises(InputError, match="cannot write"):
        write_volume(v, tmp_path / "x.png")


def _set_series_uid(file, uid: bytes) -> None:
    """Give an (anonymized, empty-UID) slice a SeriesInstanceUID by editing its bytes.

    The files are explicit-VR little endian with an empty (0020,000E) UI element; a UI value
    has a 2-byte length, and dataset elements carry no enclosing length, so inserting the value
    keeps the file valid.
    """
    data = file.read_bytes()
    empty = b"\x20\x00\x0e\x00UI\x00\x00"
    assert data.count(empty) == 1, "expected one empty SeriesInstanceUID element"
    if len(uid) % 2:
        uid += b"\x00"
    file.write_bytes(data.replace(empty, b"\x20\x00\x0e\x00UI" + struct.pack("<H", len(uid))
                                  + uid))


def test_mixed_series_folder_is_refused(dicom_dir, tmp_path):
    mixed = tmp_path / "mixed"
    files = _copy(dicom_dir, mixed)
    for f in files[::2]:
        _set_series_uid(f, b"1.2.826.0.1.3680043.99.1")
    for f in files[1::2]:
        _set_series_uid(f, b"1.2.826.0.1.3680043.99.2")
    assert len(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(mixed))) == 2
    _one_line_error(mixed, "2 DICOM series")
    # one series alone (a folder of only its slices) reads, with every other slice: 4 mm steps
    solo = tmp_path / "solo"
    solo.mkdir()
    for f in files[::2]:
        shutil.copy(f, solo / f.name)
    assert read_ct(solo).shape[0] == len(files[::2])
