"""Structures (target, cord, organs) as voxel masks on a CT grid, from the phantom, a label
map or a DICOM RT Structure Set, and their sampling onto the dose grid.

Every mask is a bool array ``[k, j, i]`` on the CT grid it was made for; its
``ct_from_ijk`` (4x4) maps voxel indices (i, j, k) to CT mm (DICOM LPS).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from ..anatomy._tissues import TISSUE_LABELS
from ..anatomy.volume import Volume
from ..errors import InputError
from ..geometry import apply_transform
from ._grid import DoseGrid
from ._rtstruct import read_rtstruct_masks

if TYPE_CHECKING:  # pragma: no cover
    from ..anatomy.phantom import Phantom
    from ..scene import Scene

__all__ = ["Structure", "StructureSet", "load_structures", "phantom_structures",
           "structure_fraction_on_grid", "structure_mask_on_grid", "structures_bbox_ct",
           "structures_from_labelmap", "structures_from_rtstruct"]


@dataclass(frozen=True, eq=False)
class Structure:
    """One structure: a voxel mask on a CT grid (read-only).

    Parameters
    ----------
    name : str
    mask : ndarray of bool, shape (nk, nj, ni)
        Voxels inside the structure, indexed ``[k, j, i]``.
    ct_from_ijk : array-like, shape (4, 4)
        Voxel index (i, j, k) → CT mm (LPS) of the mask's grid.
    """

    name: str
    mask: NDArray[np.bool_]
    ct_from_ijk: NDArray[np.float64]

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.ndim != 3 or mask.dtype != np.bool_:
            raise InputError(f"structure {self.name!r}: mask must be a 3-D bool array (got "
                             f"{mask.dtype} with shape {mask.shape})")
        a = np.array(self.ct_from_ijk, dtype=np.float64)
        if a.shape != (4, 4) or not np.all(np.isfinite(a)) or abs(np.linalg.det(a[:3, :3])) < 1e-12:
            raise InputError(f"structure {self.name!r}: ct_from_ijk must be a finite, "
                             f"invertible 4x4 matrix (got shape {a.shape})")
        mask = mask.view()
        mask.flags.writeable = False
        a.flags.writeable = False
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "ct_from_ijk", a)

    @property
    def voxel_cc(self) -> float:
        """Volume of one voxel of the mask's grid (cm³)."""
        return float(abs(np.linalg.det(self.ct_from_ijk[:3, :3]))) / 1000.0

    @property
    def volume_cc(self) -> float:
        """Structure volume: voxel count × voxel volume (cm³)."""
        return float(np.count_nonzero(self.mask)) * self.voxel_cc

    def points_ct(self) -> NDArray[np.float64]:
        """Centres of the structure's voxels in CT mm, shape (n, 3)."""
        k, j, i = np.nonzero(self.mask)
        return apply_transform(self.ct_from_ijk, np.stack([i, j, k], axis=1).astype(np.float64))


class StructureSet(Mapping[str, Structure]):
    """Structures by name, with the target and the cord named.

    Look-up is by exact name, else case-insensitive (when that is unambiguous); an unknown
    name raises InputError listing the known ones.

    Parameters
    ----------
    structures : iterable of Structure
        Names must be unique.
    target_name, cord_name : str
        Which structures are the target (PTV) and the spinal cord.
    source : str
        Where the structures came from (for error messages).
    """

    def __init__(self, structures: Iterable[Structure], *, target_name: str, cord_name: str,
                 source: str = "structures"):
        self.source = source
        self._by_name: dict[str, Structure] = {}
        for s in structures:
            if s.name in self._by_name:
                raise InputError(f"{source}: structure {s.name!r} given twice")
            self._by_name[s.name] = s
        self.target_name = self._key(target_name)
        self.cord_name = self._key(cord_name)
        for role, name in (("target", self.target_name), ("cord", self.cord_name)):
            if not self._by_name[name].mask.any():
                raise InputError(f"{source}: the {role} structure {name!r} is empty on the CT "
                                 "grid")

    def _key(self, name: str) -> str:
        if name in self._by_name:
            return name
        hits = [k for k in self._by_name if k.casefold() == str(name).casefold()]
        if len(hits) == 1:
            return hits[0]
        known = ", ".join(sorted(self._by_name)) or "(none)"
        if hits:
            raise InputError(f"{self.source}: structure name {name!r} is ambiguous (matches "
                             f"{', '.join(hits)})")
        raise InputError(f"{self.source}: no structure named {name!r} (known: {known})")

    def __getitem__(self, name: str) -> Structure:
        return self._by_name[self._key(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return (f"StructureSet({', '.join(self._by_name)}; target={self.target_name!r}, "
                f"cord={self.cord_name!r})")

    @property
    def target(self) -> Structure:
        """The target structure (PTV)."""
        return self._by_name[self.target_name]

    @property
    def cord(self) -> Structure:
        """The spinal-cord structure."""
        return self._by_name[self.cord_name]


def _same_grid(shape_a, a: NDArray, shape_b, b: NDArray) -> bool:
    return tuple(shape_a) == tuple(shape_b) and np.allclose(a, b, atol=1e-4)


def _labels_on(labels: NDArray, src_ct_from_ijk: NDArray, ct: Volume) -> NDArray:
    """A label volume resampled nearest-neighbour onto ``ct``'s grid (0 outside)."""
    src = np.asarray(src_ct_from_ijk, dtype=np.float64)
    if _same_grid(labels.shape, src, ct.shape, ct.ct_from_ijk):
        return np.asarray(labels)
    src_from_dst = np.linalg.inv(src) @ ct.ct_from_ijk  # (i, j, k) order
    perm = np.eye(4)[[2, 1, 0, 3]]
    m = perm @ src_from_dst @ perm  # (k, j, i) order for ndimage
    return ndimage.affine_transform(np.asarray(labels), m[:3, :3], offset=m[:3, 3],
                                    output_shape=ct.shape, order=0, mode="constant", cval=0,
                                    prefilter=False)


def _sphere_mask(shape: tuple[int, int, int], ct_from_ijk: NDArray, center_ct: NDArray,
                 radius_mm: float) -> NDArray[np.bool_]:
    """Voxels of a grid whose centres lie within ``radius_mm`` of ``center_ct`` (CT mm)."""
    mask = np.zeros(shape, dtype=bool)
    ijk_from_ct = np.linalg.inv(ct_from_ijk)
    corners = center_ct + radius_mm * np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])
                                                ).reshape(3, -1).T
    ijk = apply_transform(ijk_from_ct, corners)
    n = np.array(shape[::-1])
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int), 0, n)
    hi = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 1, 0, n)
    if np.any(hi <= lo):
        return mask
    kk, jj, ii = np.meshgrid(*(np.arange(lo[a], hi[a]) for a in (2, 1, 0)), indexing="ij")
    pts = apply_transform(ct_from_ijk, np.stack([ii, jj, kk], axis=-1).reshape(-1, 3)
                          .astype(np.float64))
    inside = np.sum((pts - center_ct) ** 2, axis=1) <= radius_mm ** 2
    mask[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] = inside.reshape(kk.shape)
    return mask


def phantom_structures(phantom: Phantom, *, target_radius_mm: float,
                       target_center_ct_mm: ArrayLike | None = None, on: Volume | None = None,
                       target_name: str = "target", cord_name: str = "cord") -> StructureSet:
    """The procedural phantom's structures.

    Parameters
    ----------
    phantom : Phantom
        From :func:`~cyberknife_sim.anatomy.phantom.make_phantom`.
    target_radius_mm : float
        Radius of the target (PTV) sphere (mm).
    target_center_ct_mm : array-like, shape (3,), optional
        Its centre in CT mm; default the lesion centre (``phantom.truth``).
    on : Volume, optional
        The CT grid to give the masks on (e.g. an acquired planning CT); the phantom's labels
        are resampled nearest-neighbour onto it. Default: the painted phantom's grid.
    target_name, cord_name : str
        Which of the structures below are the target and the cord.

    Returns
    -------
    StructureSet
        ``target`` (the voxels whose centres lie within ``target_radius_mm`` of the centre,
        inside the body), ``lesion`` (label ``lesion``), ``cord`` (label ``cord``), ``canal``
        (cord + CSF) and ``body`` (every non-air label).
    """
    if not (np.isfinite(target_radius_mm) and target_radius_mm > 0):
        raise InputError(f"target_radius_mm must be positive (got {target_radius_mm})")
    center = np.asarray(phantom.truth.target_center_ct_mm if target_center_ct_mm is None
                        else target_center_ct_mm, dtype=np.float64)
    if center.shape != (3,) or not np.all(np.isfinite(center)):
        raise InputError(f"target_center_ct_mm must be 3 finite numbers (got {center.tolist()})")
    grid = on if on is not None else phantom.volume
    labels = _labels_on(phantom.labels, phantom.volume.ct_from_ijk, grid)
    a = grid.ct_from_ijk
    body = labels != TISSUE_LABELS["air"]
    cord = labels == TISSUE_LABELS["cord"]
    target = _sphere_mask(grid.shape, a, center, float(target_radius_mm)) & body
    structures = [
        Structure("target", target, a),
        Structure("lesion", labels == TISSUE_LABELS["lesion"], a),
        Structure("cord", cord, a),
        Structure("canal", cord | (labels == TISSUE_LABELS["csf"]), a),
        Structure("body", body, a),
    ]
    return StructureSet(structures, target_name=target_name, cord_name=cord_name,
                        source=f"phantom {phantom.truth.preset or '(custom)'} structures")


def _read_labelmap(path: Path) -> tuple[NDArray, NDArray[np.float64]]:
    import SimpleITK as sitk

    if not path.is_file():
        raise InputError(f"{path}: label map file not found")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise InputError(f"{path}: cannot read the label map ({line})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: a label map must be a 3-D scalar image (got "
                         f"{image.GetDimension()}-D, {image.GetNumberOfComponentsPerPixel()} "
                         "component(s))")
    a = np.eye(4)
    a[:3, :3] = (np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
                 @ np.diag(image.GetSpacing()))
    a[:3, 3] = image.GetOrigin()
    arr = sitk.GetArrayFromImage(image)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.rint(arr)):
            raise InputError(f"{path}: a label map must hold whole-number labels")
        arr = arr.astype(np.int64)
    return arr, a


def structures_from_labelmap(path: str | Path, labels: Mapping[str, int], ct: Volume, *,
                             target: str, cord: str) -> StructureSet:
    """Structures from a label map (NIfTI, MetaImage, NRRD; e.g. a TotalSegmentator output).

    Parameters
    ----------
    path : str or Path
        The label map, read with SimpleITK (its own origin, spacing and direction, LPS mm).
    labels : mapping of str to int
        Structure name → label value.
    ct : Volume
        The planning CT; when the label map's grid differs, it is resampled onto the CT's grid
        nearest-neighbour in physical space (0 outside the label map).
    target, cord : str
        Names (keys of ``labels``) of the target and the cord.

    Raises
    ------
    InputError
        An unreadable file, a label value absent from the file, a structure that falls
        outside the CT, an unknown target or cord name.
    """
    path = Path(path)
    arr, a = _read_labelmap(path)
    present = set(np.unique(arr).tolist())
    missing = [f"{n} (label {v})" for n, v in labels.items() if v not in present]
    if missing:
        raise InputError(f"{path}: label map has no voxel of {', '.join(missing)}")
    on_ct = _labels_on(arr, a, ct)
    structures = []
    for name, value in labels.items():
        mask = on_ct == value
        if not mask.any():
            raise InputError(f"{path}: structure {name} (label {value}) lies outside the CT "
                             f"{ct.name}")
        structures.append(Structure(name, mask, ct.ct_from_ijk))
    return StructureSet(structures, target_name=target, cord_name=cord, source=str(path))


def structures_from_rtstruct(path: str | Path, ct: Volume, *, target: str,
                             cord: str) -> StructureSet:
    """Structures from a DICOM RT Structure Set, rasterised on the CT's slices.

    Each ROI's CLOSED_PLANAR contours (LPS mm) are filled on the CT slice nearest their plane
    by the even-odd rule (a contour inside another is a hole); a voxel is inside when its
    centre is (see :func:`~cyberknife_sim.dose._rtstruct.read_rtstruct_masks`). ROIs without
    closed contours are left out. Names are the ROI names; ``target`` and ``cord`` match
    case-insensitively.

    Parameters
    ----------
    path : str or Path
        The RTSTRUCT file (read with pydicom).
    ct : Volume
        The planning CT whose grid the masks are made on.
    target, cord : str
        ROI names of the target and the cord.
    """
    path = Path(path)
    masks = read_rtstruct_masks(path, ct)
    return StructureSet([Structure(n, m, ct.ct_from_ijk) for n, m in masks.items()],
                        target_name=target, cord_name=cord, source=str(path))


def load_structures(scene: Scene, ct: Volume, *,
                    target_ct_mm: ArrayLike | None = None) -> StructureSet:
    """The scene's structures (``patient.structures``) on the planning CT ``ct``.

    Parameters
    ----------
    scene : Scene
    ct : Volume
        The planning CT (the painted phantom or an acquired one, or the CT file).
    target_ct_mm : array-like, shape (3,), optional
        Centre of the phantom's target sphere (CT mm), e.g. ``Patient.target_ct_mm``; default
        the scene's target, else the phantom's lesion centre. Unused with a ``file``.
    """
    ss = scene.patient.structures
    if ss.file is not None:
        if ss.is_labelmap:
            return structures_from_labelmap(ss.file, ss.label_map, ct, target=ss.target,
                                            cord=ss.cord)
        return structures_from_rtstruct(ss.file, ct, target=ss.target, cord=ss.cord)
    if not scene.patient.uses_phantom:
        raise InputError("patient.structures.file: a CT file needs its structures (a label "
                         "map or an RTSTRUCT) for the dose")
    from ..anatomy.phantom import make_phantom

    phantom = make_phantom(scene.patient.phantom or "default", seed=int(scene.simulation.seed))
    center = (target_ct_mm if target_ct_mm is not None
              else scene.patient.target_lps_mm(ct.ct_from_ijk))
    return phantom_structures(phantom, target_radius_mm=float(scene.patient.target_radius_mm),
                              target_center_ct_mm=center, on=ct, target_name=ss.target,
                              cord_name=ss.cord)


def _sample(structure: Structure, points_ct: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Nearest-voxel look-up of the mask at CT points (False outside its grid)."""
    ijk = np.rint(apply_transform(np.linalg.inv(structure.ct_from_ijk), points_ct)).astype(
        np.int64)
    n = np.array(structure.mask.shape[::-1])
    ok = np.all((ijk >= 0) & (ijk < n), axis=1)
    out = np.zeros(len(points_ct), dtype=bool)
    i, j, k = ijk[ok].T
    out[ok] = structure.mask[k, j, i]
    return out


def structure_fraction_on_grid(structure: Structure, grid: DoseGrid, *,
                               supersample: int = 3) -> NDArray[np.float32]:
    """Fraction of each dose voxel inside the structure, shape ``grid.shape``.

    Each dose voxel (a cube of ``grid.spacing_mm`` about its dose point) is sampled at
    ``supersample``³ evenly spaced sub-points; each looks up the nearest CT voxel of the mask.
    """
    if not isinstance(supersample, int | np.integer) or not 1 <= supersample <= 8:
        raise InputError(f"supersample must be an integer 1..8 (got {supersample!r})")
    pts = grid.points_ct()
    offs = ((np.arange(supersample) + 0.5) / supersample - 0.5) * grid.spacing_mm
    count = np.zeros(len(pts), dtype=np.int32)
    for dz in offs:
        for dy in offs:
            for dx in offs:
                count += _sample(structure, pts + np.array([dx, dy, dz]))
    return (count / np.float32(supersample ** 3)).astype(np.float32).reshape(grid.shape)


def structure_mask_on_grid(structure: Structure, grid: DoseGrid, *,
                           supersample: int = 1) -> NDArray[np.bool_]:
    """The structure on the dose grid, bool ``[k, j, i]`` of ``grid.shape``.

    ``supersample=1`` (default): a dose point is inside when the CT voxel nearest to it is
    (point sampling). ``supersample=n > 1``: inside when at least half of the dose voxel is
    (:func:`structure_fraction_on_grid` ≥ 0.5).
    """
    if supersample == 1:
        return _sample(structure, grid.points_ct()).reshape(grid.shape)
    return structure_fraction_on_grid(structure, grid, supersample=supersample) >= 0.5


def structures_bbox_ct(structure_set: StructureSet, names: Iterable[str], *,
                       margin_mm: float = 0.0) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Axis-aligned box (CT mm) holding the voxel centres of the named structures, grown by
    ``margin_mm`` on every side: ``(lo, hi)``, each shape (3,). For
    :meth:`DoseGrid.around`."""
    los, his = [], []
    for name in names:
        s = structure_set[name]
        idx = np.nonzero(s.mask)
        if not idx[0].size:
            raise InputError(f"{structure_set.source}: structure {s.name!r} is empty")
        lo_kji = [int(v.min()) for v in idx]
        hi_kji = [int(v.max()) for v in idx]
        corners = np.array([[i, j, k] for k in (lo_kji[0], hi_kji[0])
                            for j in (lo_kji[1], hi_kji[1]) for i in (lo_kji[2], hi_kji[2])],
                           dtype=np.float64)
        c = apply_transform(s.ct_from_ijk, corners)
        los.append(c.min(axis=0))
        his.append(c.max(axis=0))
    if not los:
        raise InputError("structures_bbox_ct: no structure names given")
    return np.min(los, axis=0) - margin_mm, np.max(his, axis=0) + margin_mm
