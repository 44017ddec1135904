"""Damaged or absurd CT files are refused with one line naming the file and the problem
(never read as zeros, never a multi-line ITK message, never C++ noise on stderr)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cyberknife_sim.anatomy import read_ct
from cyberknife_sim.cli import main
from cyberknife_sim.errors import InputError

SHAPE = (10, 12, 14)  # [k, j, i]
SPACING = (1.0, 1.5, 2.0)


def _hu() -> np.ndarray:
    return np.random.default_rng(0).integers(-1000, 1000, SHAPE).astype(np.int16)


def _write(arr: np.ndarray, path: Path, *, spacing=SPACING, compress=False) -> Path:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path), useCompression=compress)
    return path


def _patched_nii(tmp: Path, name: str, fmt: str, offset: int, value) -> Path:
    raw = bytearray(_write(_hu(), tmp / "ok.nii").read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    (tmp / name).write_bytes(bytes(raw))
    return tmp / name


def _gzip_cut(tmp: Path) -> Path:
    gz = _write(_hu(), tmp / "ok.nii.gz", compress=True).read_bytes()
    (tmp / "cut.nii.gz").write_bytes(gz[: len(gz) // 2])
    return tmp / "cut.nii.gz"


def _gzip_of_half(tmp: Path) -> Path:
    raw = _write(_hu(), tmp / "ok.nii").read_bytes()
    (tmp / "half.nii.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    return tmp / "half.nii.gz"


def _header_only(tmp: Path) -> Path:
    raw = _write(_hu(), tmp / "ok.nii").read_bytes()
    (tmp / "hdr.nii").write_bytes(raw[:352])
    return tmp / "hdr.nii"


def _plain_cut(tmp: Path) -> Path:
    raw = _write(_hu(), tmp / "ok.nii").read_bytes()
    (tmp / "cut.nii").write_bytes(raw[: len(raw) // 2])
    return tmp / "cut.nii"


def _float_with(value: float, dtype=np.float32):
    def make(tmp: Path) -> Path:
        arr = _hu().astype(dtype)
        arr[1, 2, 3] = value
        return _write(arr, tmp / "f.nii")
    return make


def _mha_offset_inf(tmp: Path) -> Path:
    text = _write(_hu(), tmp / "ok.mha").read_bytes()
    assert b"Offset = 0 0 0" in text
    (tmp / "inf.mha").write_bytes(text.replace(b"Offset = 0 0 0", b"Offset = inf 0 0"))
    return tmp / "inf.mha"


def _mha_cut(compress: bool):
    def make(tmp: Path) -> Path:
        arr = np.random.default_rng(1).integers(-1000, 1000, (20, 20, 20)).astype(np.int16)
        data = _write(arr, tmp / "ok.mha", compress=compress).read_bytes()
        (tmp / "cut.mha").write_bytes(data[: len(data) * 2 // 3])
        return tmp / "cut.mha"
    return make


def _mhd_without_raw(tmp: Path) -> Path:
    _write(_hu(), tmp / "ok.mhd")
    (tmp / "ok.raw").unlink()
    return tmp / "ok.mhd"


# NIfTI-1 header offsets: datatype 70, pixdim[1] 80, vox_offset 108, srow_x 280
DAMAGED = {
    "gzip stream cut at half": (_gzip_cut, "gzip stream ends early"),
    "valid gzip of half a NIfTI": (_gzip_of_half, "cut short"),
    "header-only NIfTI": (_header_only, "cut short"),
    "uncompressed NIfTI cut at half": (_plain_cut, "cut short"),
    "vox_offset 1e9": (lambda t: _patched_nii(t, "o.nii", "<f", 108, 1e9), "vox_offset"),
    "NaN voxel": (_float_with(np.nan), "NaN or infinite"),
    "+inf voxel": (_float_with(np.inf), "NaN or infinite"),
    "float64 voxel 1e300": (_float_with(1e300, np.float64), "outside -32768..40000 HU"),
    "mha Offset inf": (_mha_offset_inf, "Offset"),
    "voxel size 1e30 mm": (lambda t: _write(_hu(), t / "big.nii", spacing=(1e30, 1, 1)),
                           "voxel size"),
    "voxel size 0": (lambda t: _patched_nii(t, "z.nii", "<f", 80, 0.0), "voxel size"),
    "voxel size NaN": (lambda t: _patched_nii(t, "n.nii", "<f", 80, np.nan), "voxel size"),
    "NaN sform": (lambda t: _patched_nii(t, "s.nii", "<f", 280, np.nan), "direction"),
    "datatype 999": (lambda t: _patched_nii(t, "d.nii", "<h", 70, 999), "datatype"),
    "truncated mha": (_mha_cut(False), "cut short"),
    "truncated compressed mha": (_mha_cut(True), "cannot read image"),
    "mhd without its raw": (_mhd_without_raw, "missing"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_ct_is_refused_in_one_line(case, tmp_path, capfd):
    make, words = DAMAGED[case]
    path = make(tmp_path)
    with pytest.raises(InputError) as err:
        read_ct(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and words in msg, msg
    assert capfd.readouterr().err == ""  # no ITK / VNL / MetaImage / NIfTI noise


def test_sound_files_still_read(tmp_path, capfd):
    hu = _hu()
    for name in ("a.nii", "a.nii.gz", "a.mha", "a.mhd"):
        vol = read_ct(_write(hu, tmp_path / name, compress=name.endswith("gz")))
        np.testing.assert_array_equal(vol.hu, hu)
        np.testing.assert_allclose(vol.spacing_mm, SPACING)
    padded = hu.copy()
    padded[0] = -3024  # scanner padding outside the field of view is accepted
    assert read_ct(_write(padded, tmp_path / "pad.nii")).hu.min() == -3024
    assert capfd.readouterr().err == ""


@pytest.mark.shared_data
def test_real_ct_reads(shared_data):
    vol = read_ct(shared_data / "ct" / "example_ct.nii.gz")
    assert vol.shape == (112, 101, 122) and vol.hu.min() < -1100  # below -1100: still read


@pytest.mark.parametrize("case", ["header-only NIfTI", "NaN sform", "truncated mha",
                                  "gzip stream cut at half"])
def test_cli_phantom_gives_one_line_and_exit_2(case, tmp_path, capfd):
    ct = DAMAGED[case][0](tmp_path)
    scene = tmp_path / "scene.yaml"
    scene.write_text(f"patient:\n  phantom: null\n  ct: {ct}\n  target_ct_mm: [5, 5, 5]\n")
    code = main(["phantom", "--scene", str(scene), "--out", str(tmp_path / "out.nii.gz")])
    err = capfd.readouterr().err
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cksim phantom: error:"), err
    assert str(ct) in lines[0]
