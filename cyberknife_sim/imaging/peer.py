"""An established peer for comparison: plastimatch's DRR (``plastimatch drr``) on our geometry.

Used by the benchmarks (``benchmarks/bench_peer_plastimatch.py``) to put our renderer's time
and images side by side with a widely used open-source implementation. plastimatch is an
optional dependency (``pip install "cyberknife_sim[peer]"``); :func:`find_plastimatch` returns
None when it is missing and :func:`plastimatch_drr` raises :class:`PeerNotInstalled`.

How one of our views is given to plastimatch (calibrated on a uniform box, see the tests):

* The volume is written as MHA holding μ (1/mm, float32) in the CT frame, its voxels flipped
  and transposed so that every axis runs along +x, +y, +z (plastimatch ignores direction
  cosines: a CT read from a RAS NIfTI, whose i and j run along −x and −y, gave a 96 % wrong
  image before), and rendered with ``-P none`` (no HU conversion). An oblique CT is
  refused.
* plastimatch takes the source at ``isocenter + sad·nrm`` and the detector plane at
  ``sid`` from the source along ``−nrm``; ``vup`` points from the detector center to the top
  row; columns increase along ``vup × nrm``. Our view (room frame) is moved into the CT frame
  with ``ct_from_room``: ``nrm = −central axis``, ``vup = −row direction``, the isocenter is
  the point on the central axis at ``sad`` (the source's distance to the room origin's foot
  point on the axis), ``sid = source_to_detector_mm``. The default image center is the
  detector center ``((rows−1)/2, (cols−1)/2)``, as ours.
* plastimatch integrates path length in cm (measured: a 40 mm chord of μ = 0.02/mm gives
  0.08), so its output is multiplied by :data:`PLASTIMATCH_MM_PER_UNIT` = 10.
* Only square detectors are passed (plastimatch 1.10 swaps the row/column order of ``-r`` in
  its raw output for non-square ones); other shapes raise ValueError.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..anatomy import Volume
from ..errors import CksimError
from ..geometry import check_transform, invert
from ._geometry import ViewGeometry

__all__ = ["PLASTIMATCH_MM_PER_UNIT", "PeerDrr", "PeerNotInstalled", "axis_aligned_mu",
           "find_plastimatch",
           "plastimatch_drr", "plastimatch_version", "write_mu_mha"]

PLASTIMATCH_MM_PER_UNIT = 10.0
"""plastimatch's DRR value × this = ∫μ dl with μ in 1/mm (its path lengths are in cm)."""

NOT_INSTALLED = ("plastimatch not installed (optional peer for the DRR comparison: "
                 "pip install plastimatch, or pip install 'cyberknife_sim[peer]')")


class PeerNotInstalled(CksimError):
    """The optional peer tool is not on PATH (nor beside the running interpreter)."""


@dataclass(frozen=True)
class PeerDrr:
    """One plastimatch DRR read back.

    Attributes
    ----------
    image : ndarray, shape (rows, cols), float32
        ∫μ dl (dimensionless), row 0 at the top, same pixel grid as our view.
    wall_s : float
        Wall time of the ``plastimatch drr`` process (s): start-up, reading the volume,
        rendering, writing.
    compute_s : float or None
        plastimatch's own ``Total time`` report (s), if it printed one.
    command : list of str
        The command line that was run.
    """

    image: NDArray[np.float32]
    wall_s: float
    compute_s: float | None
    command: list[str]


def find_plastimatch() -> str | None:
    """Path of the ``plastimatch`` executable (PATH, then beside ``sys.executable``), or None."""
    import sys

    found = shutil.which("plastimatch")
    if found:
        return found
    beside = Path(sys.executable).parent / "plastimatch"
    return str(beside) if beside.exists() else None


def plastimatch_version(exe: str | None = None) -> str:
    """``plastimatch --version`` (e.g. ``"1.10.0"``); raises PeerNotInstalled when missing."""
    exe = exe or find_plastimatch()
    if exe is None:
        raise PeerNotInstalled(NOT_INSTALLED)
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)", out.stdout + out.stderr)
    return m.group(1) if m else "unknown"


def axis_aligned_mu(volume: Volume, *, mu_water_per_mm: float
                    ) -> tuple[NDArray[np.float32], NDArray[np.float64], NDArray[np.float64]]:
    """μ of ``volume`` re-ordered so that its array axes run along +x, +y, +z of the CT frame.

    plastimatch's DRR ignores an MHA's direction cosines, so a CT whose axes run negative
    (the usual NIfTI/RAS CT read into LPS: i along −x, j along −y) or are permuted must be
    flipped and transposed first; the voxels keep their CT positions.

    Parameters
    ----------
    volume : Volume
        The CT; its ``ct_from_ijk`` axes must each be parallel to a CT frame axis.
    mu_water_per_mm : float
        μ of water (1/mm).

    Returns
    -------
    mu : ndarray, shape (nz, ny, nx), float32
        μ (1/mm) indexed ``[z, y, x]``.
    spacing_mm : ndarray, shape (3,)
        Voxel size along x, y, z (mm).
    origin_ct : ndarray, shape (3,)
        CT position (mm) of ``mu[0, 0, 0]``, the voxel with the smallest x, y and z.

    Raises
    ------
    CksimError
        For an oblique CT (an axis not along x, y or z): it would need resampling.
    """
    a = volume.ct_from_ijk
    spacing = volume.spacing_mm
    direction = a[:3, :3] / spacing          # column n: CT direction of voxel axis n (i, j, k)
    ct_axis = np.argmax(np.abs(direction), axis=0)
    sign = np.sign(direction[ct_axis, np.arange(3)])
    if (sorted(ct_axis.tolist()) != [0, 1, 2]
            or not np.allclose(np.abs(direction[ct_axis, np.arange(3)]), 1.0, atol=1e-6)):
        raise CksimError(f"volume {volume.name}: plastimatch's DRR needs a CT whose axes run "
                         "along the CT frame axes (got direction cosines "
                         f"{np.round(direction, 4).tolist()}); resample it first")
    mu = volume.mu_per_mm(mu_water_per_mm)   # [k, j, i]: voxel axis n is array axis 2 - n
    flips = tuple(2 - n for n in range(3) if sign[n] < 0)
    if flips:
        mu = np.flip(mu, axis=flips)
    voxel_axis_of = np.argsort(ct_axis)      # CT axis c is voxel axis voxel_axis_of[c]
    mu = np.ascontiguousarray(np.transpose(mu, [2 - voxel_axis_of[c] for c in (2, 1, 0)]))
    corners = volume.corners_ct()
    return mu, spacing[voxel_axis_of], corners.min(axis=0)


def write_mu_mha(volume: Volume, path: str | Path, *, mu_water_per_mm: float) -> Path:
    """Write μ (1/mm, float32) of ``volume`` as MHA in its CT frame; returns the path.

    The voxels are flipped and transposed so that every axis runs along +x, +y, +z
    (identity direction; see :func:`axis_aligned_mu`), which is what plastimatch reads.
    """
    import SimpleITK as sitk

    path = Path(path)
    mu, spacing, origin = axis_aligned_mu(volume, mu_water_per_mm=mu_water_per_mm)
    img = sitk.GetImageFromArray(mu)  # [z, y, x] → (x, y, z)
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(x) for x in origin])
    sitk.WriteImage(img, str(path))
    return path


def _fmt(v: ArrayLike) -> str:
    return " ".join(f"{float(x):.9g}" for x in np.ravel(v))


def plastimatch_command(view: ViewGeometry, room_from_ct: ArrayLike, volume_path: str | Path,
                        out_prefix: str | Path, *, exe: str = "plastimatch",
                        algorithm: str = "exact") -> list[str]:
    """The ``plastimatch drr`` command line rendering ``view`` of the CT at ``room_from_ct``.

    Parameters
    ----------
    view : ViewGeometry
        Our detector (room frame); must be square (rows == cols).
    room_from_ct : array-like, shape (4, 4)
        Pose of the CT in the room (mm).
    volume_path : path
        μ volume written by :func:`write_mu_mha`.
    out_prefix : path
        plastimatch's ``-O`` prefix (it appends ``0000.raw``).
    exe : str
        The executable.
    algorithm : {"exact", "uniform"}
        plastimatch's ray tracer (Siddon's exact voxel chords, or uniform steps).
    """
    if algorithm not in ("exact", "uniform"):
        raise ValueError(f"algorithm must be one of exact, uniform (got {algorithm!r})")
    rows, cols = view.shape
    if rows != cols:
        raise ValueError(f"view {view.name}: plastimatch comparison needs a square detector "
                         f"(got {rows} x {cols})")
    ct_from_room = invert(check_transform(room_from_ct, name="room_from_ct"))
    rot, off = ct_from_room[:3, :3], ct_from_room[:3, 3]
    axis = view.central_axis_room
    src = view.source_room
    sad = float(-(src @ axis))  # distance from the source to the room origin's foot point
    if sad <= 0:
        sad = 0.5 * view.source_to_detector_mm
    iso_ct = rot @ (src + sad * axis) + off
    nrm_ct = rot @ (-axis)
    vup_ct = rot @ (-view.row_direction_room)
    col_ct = rot @ view.col_direction_room
    if np.linalg.norm(np.cross(vup_ct, nrm_ct) - col_ct) > 1e-6:
        raise ValueError(f"view {view.name}: plastimatch needs columns along vup x nrm "
                         "(a mirrored detector cannot be passed)")
    size_mm = view.pixel_spacing_mm * rows
    return [exe, "drr", "-O", str(out_prefix), "-t", "raw", "-r", f"{rows} {cols}",
            "-z", f"{size_mm:.9g} {size_mm:.9g}", "--sad", f"{sad:.9g}",
            "--sid", f"{view.source_to_detector_mm:.9g}", "-o", _fmt(iso_ct),
            "-n", _fmt(nrm_ct), "--vup", _fmt(vup_ct), "-P", "none", "-i", algorithm,
            str(volume_path)]


def plastimatch_drr(view: ViewGeometry, room_from_ct: ArrayLike, volume_path: str | Path, *,
                    algorithm: str = "exact", workdir: str | Path | None = None,
                    exe: str | None = None) -> PeerDrr:
    """Render one view with ``plastimatch drr`` and read it back as ∫μ dl.

    Parameters
    ----------
    view : ViewGeometry
        Our detector (room frame), square.
    room_from_ct : array-like, shape (4, 4)
        Pose of the CT in the room (mm).
    volume_path : path
        μ volume (1/mm) from :func:`write_mu_mha`.
    algorithm : {"exact", "uniform"}
        plastimatch's ray tracer.
    workdir : path, optional
        Where plastimatch writes its output (a temporary folder by default).
    exe : str, optional
        The executable (found with :func:`find_plastimatch` by default).

    Returns
    -------
    PeerDrr
        The image on our pixel grid (row 0 at the top) and the times.

    Raises
    ------
    PeerNotInstalled
        When plastimatch cannot be found.
    CksimError
        When plastimatch fails or writes no image.
    """
    exe = exe or find_plastimatch()
    if exe is None:
        raise PeerNotInstalled(NOT_INSTALLED)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        prefix = Path(tmp) / "drr"
        cmd = plastimatch_command(view, room_from_ct, volume_path, prefix, exe=exe,
                                  algorithm=algorithm)
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        raw = Path(f"{prefix}0000.raw")
        if out.returncode != 0 or not raw.exists():
            tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
            raise CksimError(f"plastimatch drr failed (exit {out.returncode}): {tail[0]}")
        rows, cols = view.shape
        img = np.fromfile(raw, dtype=np.float32)
        if img.size != rows * cols:
            raise CksimError(f"plastimatch wrote {img.size} pixels, expected {rows * cols}")
    m = re.search(r"Total time:\s*([0-9.eE+-]+)", out.stdout)
    image = (img.reshape(rows, cols) * np.float32(PLASTIMATCH_MM_PER_UNIT)).astype(np.float32)
    return PeerDrr(image=image, wall_s=wall, compute_s=float(m.group(1)) if m else None,
                   command=cmd)
