"""Checks on CT files that SimpleITK does not make, and quiet reads.

SimpleITK reads a NIfTI whose data is cut short (it fills the rest with zeros), turns NaN
and infinite NIfTI voxels into 0, accepts infinite or absurd geometry, and lets its C++
libraries (ITK, VNL, GDCM, NIfTI, MetaImage) print warnings on the process's stderr. This
module checks a file's header against the data that is really there before SimpleITK reads
it, checks the image it returns (geometry and values), and runs reads with fd 2 silenced.
Every problem is an :class:`~cyberknife_sim.errors.InputError` of one line naming the file.

Limits chosen here (documented in :func:`~cyberknife_sim.anatomy.read_ct`):

* HU within :data:`HU_RANGE` (−32768 … 40000): below −1000 everything is air for the
  attenuation model, so scanner padding (−2048, −3024, −32768) is accepted; the upper bound
  leaves room for extended-scale metal (≈ 31000) and refuses values that are not HU.
* Voxel size within :data:`SPACING_RANGE_MM` (0.001 … 100 mm), origin finite and within
  :data:`MAX_ORIGIN_MM` of the frame origin, direction cosines orthonormal (1e-4).
* At most :data:`MAX_VOXELS` voxels.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import struct
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

__all__ = ["HU_RANGE", "MAX_ORIGIN_MM", "MAX_VOXELS", "SPACING_RANGE_MM", "check_ct_file",
           "check_image_geometry", "check_hu_values", "native_stderr_quiet", "one_line"]

HU_RANGE = (-32768.0, 40000.0)
"""Accepted voxel values after rescale (HU)."""
SPACING_RANGE_MM = (1e-3, 100.0)
"""Accepted voxel size along each axis (mm)."""
MAX_ORIGIN_MM = 1e5
"""Largest accepted |coordinate| of the first voxel (mm; 100 m)."""
MAX_VOXELS = 1_000_000_000
"""Most voxels a CT may have."""

_CHUNK = 1 << 22  # bytes read at a time when scanning data (a multiple of every item size)
_LOCK = threading.RLock()

# NIfTI datatype code → numpy type (byte order added from the header)
_NIFTI_TYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 32: "c8", 64: "f8", 128: "V3",
                256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8", 1536: "f16",
                1792: "c16", 2048: "c32", 2304: "V4"}
_META_TYPES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
               "MET_UINT": 4, "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8,
               "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}
_META_FLOAT_KEYS = ("Offset", "Origin", "Position", "ElementSpacing", "ElementSize",
                    "TransformMatrix", "Rotation", "Orientation")


# ----------------------------------------------------------------------------- messages


def one_line(exc: BaseException, native: str = "") -> str:
    """The most useful single line of a (multi-line) SimpleITK/ITK exception.

    Parameters
    ----------
    exc : exception
        What SimpleITK raised.
    native : str
        What the C++ libraries printed on stderr during the call (may be empty); its first
        line is preferred when the exception only says "cannot be read".
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = ""
    for ln in reversed(lines):
        if "Description:" in ln:
            text = ln.split("Description:", 1)[1].strip()
            break
    if not text:
        itk = [ln for ln in lines if "ITK ERROR:" in ln]
        text = itk[0].split("ITK ERROR:", 1)[1] if itk else (lines[-1] if lines else "")
        text = re.sub(r"^\s*\w+\(0x[0-9a-fA-F]+\):\s*", "", text)
    hint = next((ln.strip() for ln in native.splitlines() if ln.strip()), "")
    if hint and (not text or "cannot be read" in text or "not recognized" in text):
        text = f"{text.rstrip('. ')}; {hint}" if text else hint
    text = " ".join(text.split())
    return (text[:237] + "...") if len(text) > 240 else (text or exc.__class__.__name__)


@contextlib.contextmanager
def native_stderr_quiet() -> Iterator[list[str]]:
    """Silence C++ output on fd 2 (and ITK warnings) for the duration; yields a list that
    receives what was printed (one string) when the block ends."""
    captured: list[str] = []
    with _LOCK, tempfile.TemporaryFile() as sink:
        warn = sitk.ProcessObject_GetGlobalWarningDisplay()
        sitk.ProcessObject_SetGlobalWarningDisplay(False)
        with contextlib.suppress(AttributeError, ValueError, OSError):
            sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no fd 2 (embedded interpreter): nothing to silence
            saved = -1
        try:
            if saved >= 0:
                os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            if saved >= 0:
                os.dup2(saved, 2)
                os.close(saved)
            sitk.ProcessObject_SetGlobalWarningDisplay(warn)
            sink.seek(0)
            captured.append(sink.read(65536).decode("utf-8", "replace"))


# ----------------------------------------------------------------------------- data scans


def _scan(stream: BinaryIO, skip: int, nbytes: int, dtype: np.dtype | None,
          path: Path) -> int:
    """Skip ``skip`` bytes, then read up to ``nbytes``; return how many data bytes exist.

    When ``dtype`` is a float type, raise on the first NaN or infinite element.
    """
    left = skip
    while left > 0:
        got = len(stream.read(min(left, _CHUNK)))
        if got == 0:
            return 0
        left -= got
    have = 0
    while have < nbytes:
        buf = stream.read(min(nbytes - have, _CHUNK))
        if not buf:
            break
        if dtype is not None:
            usable = len(buf) - len(buf) % dtype.itemsize
            vals = np.frombuffer(buf[:usable], dtype=dtype)
            if not np.all(np.isfinite(vals)):
                idx = (have // dtype.itemsize) + int(np.flatnonzero(~np.isfinite(vals))[0])
                raise InputError(f"{path}: voxel {idx} (in file order) is NaN or infinite")
        have += len(buf)
    return have


def _scan_file(path: Path, gz: bool, skip: int, nbytes: int,
               dtype: np.dtype | None) -> int:
    """:func:`_scan` on a plain or gzip file; a cut or damaged gzip stream is an error."""
    if not gz and dtype is None:  # plain integer data: the size says it all
        return max(0, min(nbytes, path.stat().st_size - skip))
    try:
        with (gzip.open(path, "rb") if gz else path.open("rb")) as f:
            return _scan(f, skip, nbytes, dtype, path)
    except EOFError:
        raise InputError(f"{path}: the gzip stream ends early (file cut short)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(f"{path}: damaged gzip data ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _voxel_count(dims: list[int], path: Path, what: str) -> int:
    if not dims or any(d < 1 for d in dims):
        raise InputError(f"{path}: {what} {dims} has an axis of size < 1")
    n = 1
    for d in dims:
        n *= int(d)
    if n > MAX_VOXELS:
        raise InputError(f"{path}: {what} {dims} is {n:.3g} voxels, more than the "
                         f"{MAX_VOXELS:.0e} this reader accepts")
    return n


def _truncated(path: Path, n: int, dtype: str, need: int, offset: int, have: int) -> InputError:
    return InputError(f"{path}: file is cut short: the header promises {n} voxels of {dtype} "
                      f"({need} bytes from byte {offset}) but only {have} bytes of voxel data "
                      "are there")


# ----------------------------------------------------------------------------- NIfTI


def _nifti_fields(head: bytes, path: Path) -> dict:
    if len(head) < 348:
        raise InputError(f"{path}: cannot read image: too short for a NIfTI header "
                         f"({len(head)} bytes)")
    for e in "<>":
        size = struct.unpack_from(e + "i", head, 0)[0]
        if size in (348, 540):
            break
    else:
        raise InputError(f"{path}: cannot read image: not a NIfTI file (header size field "
                         f"{size}, expected 348 or 540)")
    if size == 348:
        return {"e": e, "magic": head[344:347], "dims": struct.unpack_from(e + "8h", head, 40),
                "datatype": struct.unpack_from(e + "h", head, 70)[0],
                "pixdim": struct.unpack_from(e + "8f", head, 76),
                "vox_offset": struct.unpack_from(e + "f", head, 108)[0],
                "scl": struct.unpack_from(e + "2f", head, 112), "min_offset": 352}
    if len(head) < 540:
        raise InputError(f"{path}: cannot read image: too short for a NIfTI-2 header "
                         f"({len(head)} bytes)")
    return {"e": e, "magic": head[4:7], "dims": struct.unpack_from(e + "8q", head, 16),
            "datatype": struct.unpack_from(e + "h", head, 12)[0],
            "pixdim": struct.unpack_from(e + "8d", head, 104),
            "vox_offset": float(struct.unpack_from(e + "q", head, 168)[0]),
            "scl": struct.unpack_from(e + "2d", head, 176), "min_offset": 544}


def _check_nifti_header(h: dict, path: Path) -> tuple[list[int], np.dtype, int]:
    if h["magic"] not in (b"n+1", b"n+2"):
        raise InputError(f"{path}: not a single-file NIfTI (magic {h['magic']!r}; a .hdr/.img "
                         "pair or an Analyze file cannot be read as .nii)")
    ndim = h["dims"][0]
    if not 1 <= ndim <= 7:
        raise InputError(f"{path}: NIfTI dim[0] = {ndim} is not a number of dimensions 1..7")
    dims = [int(d) for d in h["dims"][1:ndim + 1]]
    code = _NIFTI_TYPES.get(h["datatype"])
    if code is None:
        raise InputError(f"{path}: unsupported NIfTI datatype code {h['datatype']}")
    dtype = np.dtype(h["e"] + code if code[0] != "V" else code)
    pix = [float(p) for p in h["pixdim"][1:min(ndim, 3) + 1]]
    if not all(np.isfinite(p) and p != 0 for p in pix):
        raise InputError(f"{path}: voxel size (NIfTI pixdim) {pix} is zero or not finite")
    slope, inter = (float(s) for s in h["scl"])
    if not (np.isfinite(slope) and np.isfinite(inter)):
        raise InputError(f"{path}: NIfTI rescale scl_slope {slope:g}, scl_inter {inter:g} "
                         "is not finite")
    off = h["vox_offset"]
    if not np.isfinite(off) or off < 0:
        raise InputError(f"{path}: NIfTI vox_offset {off:g} is not a byte offset")
    return dims, dtype, max(int(off), h["min_offset"])


def _check_nifti(path: Path, gz: bool) -> None:
    try:
        with (gzip.open(path, "rb") if gz else path.open("rb")) as f:
            head = f.read(544)
    except EOFError:
        raise InputError(f"{path}: the gzip stream ends early (file cut short)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(f"{path}: cannot read image: not a gzip file or damaged gzip "
                         f"data ({exc})") from None
    dims, dtype, offset = _check_nifti_header(_nifti_fields(head, path), path)
    n = _voxel_count(dims, path, "NIfTI size")
    need = n * dtype.itemsize
    if not gz and offset > path.stat().st_size:
        raise InputError(f"{path}: NIfTI vox_offset {offset} points past the end of the file "
                         f"({path.stat().st_size} bytes)")
    floats = dtype if dtype.kind in "fc" and dtype.itemsize <= 8 else None
    have = _scan_file(path, gz, offset, need, floats)
    if have < need:
        raise _truncated(path, n, str(dtype), need, offset, have)


# ----------------------------------------------------------------------------- MetaImage


def _meta_header(path: Path) -> tuple[dict[str, str], int]:
    """Key → value of a MetaImage header, and the byte where LOCAL data starts."""
    with path.open("rb") as f:
        head = f.read(1 << 16)
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(head):
        end = head.find(b"\n", pos)
        end = len(head) if end < 0 else end
        line = head[pos:end].decode("latin-1").strip()
        pos = end + 1
        if "=" not in line:
            if line:
                raise InputError(f"{path}: cannot read image: not a MetaImage header line "
                                 f"{line[:40]!r}")
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        fields[key] = value
        if key == "ElementDataFile":
            return fields, pos
    raise InputError(f"{path}: cannot read image: MetaImage header has no ElementDataFile line")


def _meta_numbers(fields: dict[str, str], key: str, path: Path, kind: type = float) -> list:
    try:
        values = [kind(v) for v in fields[key].split()]
    except ValueError:
        raise InputError(f"{path}: MetaImage {key} = {fields[key][:40]!r} is not "
                         "numeric") from None
    if kind is float and not all(np.isfinite(values)):
        raise InputError(f"{path}: MetaImage {key} = {fields[key][:40]!r} is not finite")
    return values


def _check_metaimage(path: Path) -> None:
    fields, data_start = _meta_header(path)
    for key in _META_FLOAT_KEYS:
        if key in fields:
            _meta_numbers(fields, key, path)
    if "DimSize" not in fields or fields.get("ElementType") not in _META_TYPES:
        return  # let ITK say what is missing
    dims = _meta_numbers(fields, "DimSize", path, int)
    n = _voxel_count(dims, path, "MetaImage DimSize")
    channels = _meta_numbers(fields, "ElementNumberOfChannels", path, int)[0] \
        if "ElementNumberOfChannels" in fields else 1
    need = n * max(1, channels) * _META_TYPES[fields["ElementType"]]
    source = fields["ElementDataFile"]
    if source.upper() == "LIST" or "%" in source:
        return
    if source.upper() == "LOCAL":
        data_file, offset = path, data_start
    else:
        data_file = path.parent / source
        if not data_file.is_file():
            raise InputError(f"{path}: its data file {source!r} (ElementDataFile) is missing")
        offset = 0
    header_size = fields.get("HeaderSize", "0")
    header_size = int(header_size) if re.fullmatch(r"-?\d+", header_size) else 0
    if fields.get("CompressedData", "False").lower() == "true":
        return  # ITK checks the compressed size itself (one_line shortens its message)
    size = data_file.stat().st_size
    if header_size == -1:
        offset = max(0, size - need)
    elif header_size > 0:
        offset += header_size
    have = max(0, size - offset)
    if have < need:
        raise _truncated(data_file, n * max(1, channels), fields["ElementType"], need, offset,
                         have)


# ----------------------------------------------------------------------------- public


def check_ct_file(path: Path, suffix: str) -> None:
    """Check a CT file before SimpleITK reads it (NIfTI and MetaImage; others pass).

    Raises
    ------
    InputError
        Not a regular file, damaged or cut-short data, impossible header values.
    """
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    if suffix in (".nii", ".nii.gz"):
        with path.open("rb") as f:  # ITK also reads a plain NIfTI named .nii.gz
            gz = f.read(2) == b"\x1f\x8b"
        _check_nifti(path, gz=gz)
    elif suffix in (".mha", ".mhd"):
        _check_metaimage(path)


def check_image_geometry(image: sitk.Image, where: Path | str) -> None:
    """Refuse a non-finite or absurd voxel size, origin or direction (see module limits)."""
    spacing = np.array(image.GetSpacing(), dtype=np.float64)
    lo, hi = SPACING_RANGE_MM
    if not np.all(np.isfinite(spacing)) or np.any(spacing < lo) or np.any(spacing > hi):
        shown = ", ".join(f"{s:.6g}" for s in spacing)
        raise InputError(f"{where}: voxel size [{shown}] mm is outside "
                         f"{lo:g}..{hi:g} mm (or not finite)")
    origin = np.array(image.GetOrigin(), dtype=np.float64)
    if not np.all(np.isfinite(origin)) or np.any(np.abs(origin) > MAX_ORIGIN_MM):
        raise InputError(f"{where}: origin {origin.tolist()} mm is not finite or further "
                         f"than {MAX_ORIGIN_MM:g} mm from the frame origin")
    d = np.array(image.GetDirection(), dtype=np.float64)
    n = int(round(np.sqrt(d.size)))
    d = d.reshape(n, n)
    if not np.all(np.isfinite(d)) or not np.allclose(d.T @ d, np.eye(n), atol=1e-4):
        raise InputError(f"{where}: direction cosines {np.round(d, 4).tolist()} are not "
                         "finite and orthonormal")


def check_hu_values(arr: np.ndarray, where: Path | str) -> None:
    """Refuse NaN/infinite voxels and values outside :data:`HU_RANGE` (after rescale)."""
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            k, j, i = np.argwhere(bad)[0]
            raise InputError(f"{where}: voxel (i, j, k) = ({i}, {j}, {k}) is NaN or infinite")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < HU_RANGE[0] or hi > HU_RANGE[1]:
        raise InputError(f"{where}: voxel values {lo:g}..{hi:g} are outside "
                         f"{HU_RANGE[0]:g}..{HU_RANGE[1]:g} HU; not a CT in Hounsfield units")
