"""Procedural thoracolumbar spine phantom with ground truth.

``make_phantom("default", seed=0)`` paints, with vectorized numpy/scipy only, a supine
head-first trunk in DICOM LPS (+x left, +y posterior, +z superior): body contour, fat,
soft tissue, lungs above a two-domed diaphragm, liver, ribs, sternum, intervertebral discs,
vertebrae (cortical shell, random trabecular core, pedicles, laminae, spinous, transverse
and articular processes), spinal canal with cord, and a lytic or blastic metastasis in one
vertebral body. The same preset and seed give a bit-identical volume.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._canvas import Canvas
from ._levels import level_index
from ._params import PhantomParams, load_preset
from ._spine import VertebraPose, layout_spine, paint_canal, paint_discs, paint_vertebra
from ._thorax import paint_body, paint_ribs, paint_sternum, paint_viscera
from ._tissues import TISSUE_HU, TISSUE_LABELS
from .volume import Volume

__all__ = ["Phantom", "PhantomLayout", "PhantomTruth", "lesion_center_ct_mm", "load_truth",
           "make_phantom", "paint_lesion", "paint_trunk", "phantom_layout", "sternum_y_mm"]


def _ro(a: Any, dtype=np.float64) -> NDArray:
    arr = np.array(a, dtype=dtype)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class PhantomTruth:
    """Ground truth of a phantom, all positions in CT mm (LPS).

    Attributes
    ----------
    target_center_ct_mm : ndarray, shape (3,)
        Lesion (target) center.
    target_radius_mm : float
        Lesion radius (mm); the lesion is the sphere of this radius clipped to the
        vertebral body's cancellous bone.
    lesion_type, lesion_level : str
        ``"lytic"``/``"blastic"`` and the vertebra label holding the lesion.
    vertebra_labels : tuple of str
        Painted vertebrae, cranial first.
    body_centers_ct_mm : ndarray, shape (n, 3)
        Vertebral body centers, in the order of ``vertebra_labels``.
    cord_centerline_ct_mm : ndarray, shape (m, 3)
        Cord center on each CT slice where the cord exists (cranial end first).
    canal_centerline_ct_mm : ndarray, shape (p, 3)
        Spinal canal center on every CT slice.
    canal_half_axes_mm, cord_half_axes_mm : ndarray, shape (p, 2) / (m, 2)
        Half width (x) and half depth (y) of the canal / cord ellipse on those slices.
    preset, seed : str, int
        What made the phantom.
    """

    target_center_ct_mm: NDArray[np.float64]
    target_radius_mm: float
    lesion_type: str
    lesion_level: str
    vertebra_labels: tuple[str, ...]
    body_centers_ct_mm: NDArray[np.float64]
    cord_centerline_ct_mm: NDArray[np.float64]
    cord_half_axes_mm: NDArray[np.float64]
    canal_centerline_ct_mm: NDArray[np.float64]
    canal_half_axes_mm: NDArray[np.float64]
    preset: str = ""
    seed: int = 0
    tissue_labels: dict[str, int] = field(default_factory=lambda: dict(TISSUE_LABELS))

    def body_center(self, label: str) -> NDArray[np.float64]:
        """Body center (CT mm) of vertebra ``label``; ValueError listing the labels if absent."""
        if label not in self.vertebra_labels:
            raise ValueError(f"vertebra {label!r} is not in this phantom; it has "
                             f"{', '.join(self.vertebra_labels)}")
        return self.body_centers_ct_mm[self.vertebra_labels.index(label)]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (lists of floats, mm)."""
        def r(a):
            return np.round(np.asarray(a, dtype=np.float64), 4).tolist()
        return {
            "frame": "CT (DICOM LPS), mm",
            "preset": self.preset,
            "seed": self.seed,
            "target": {"center_ct_mm": r(self.target_center_ct_mm),
                       "radius_mm": float(self.target_radius_mm),
                       "lesion_type": self.lesion_type, "level": self.lesion_level},
            "vertebrae": [{"label": lab, "body_center_ct_mm": r(c)}
                          for lab, c in zip(self.vertebra_labels, self.body_centers_ct_mm,
                                            strict=True)],
            "cord": {"centerline_ct_mm": r(self.cord_centerline_ct_mm),
                     "half_axes_mm": r(self.cord_half_axes_mm)},
            "canal": {"centerline_ct_mm": r(self.canal_centerline_ct_mm),
                      "half_axes_mm": r(self.canal_half_axes_mm)},
            "tissue_labels": dict(self.tissue_labels),
        }

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhantomTruth:
        """Inverse of :meth:`to_dict`."""
        return cls(
            target_center_ct_mm=_ro(d["target"]["center_ct_mm"]),
            target_radius_mm=float(d["target"]["radius_mm"]),
            lesion_type=str(d["target"]["lesion_type"]),
            lesion_level=str(d["target"]["level"]),
            vertebra_labels=tuple(v["label"] for v in d["vertebrae"]),
            body_centers_ct_mm=_ro([v["body_center_ct_mm"] for v in d["vertebrae"]]),
            cord_centerline_ct_mm=_ro(d["cord"]["centerline_ct_mm"]).reshape(-1, 3),
            cord_half_axes_mm=_ro(d["cord"]["half_axes_mm"]).reshape(-1, 2),
            canal_centerline_ct_mm=_ro(d["canal"]["centerline_ct_mm"]).reshape(-1, 3),
            canal_half_axes_mm=_ro(d["canal"]["half_axes_mm"]).reshape(-1, 2),
            preset=str(d.get("preset", "")),
            seed=int(d.get("seed", 0)),
            tissue_labels={k: int(v) for k, v in d.get("tissue_labels", TISSUE_LABELS).items()},
        )


def load_truth(path: str | Path) -> PhantomTruth:
    """Read a ground-truth JSON written by ``cksim phantom`` (InputError if unusable)."""
    from ..errors import InputError

    path = Path(path)
    try:
        return PhantomTruth.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a phantom ground-truth JSON ({exc})") from None


@dataclass(frozen=True, eq=False)
class Phantom:
    """A generated phantom: the CT, its tissue label map and the ground truth."""

    volume: Volume
    labels: NDArray[np.uint8]
    truth: PhantomTruth
    params: PhantomParams


def make_phantom(preset: str | PhantomParams = "default", *, seed: int = 0) -> Phantom:
    """Generate the procedural spine phantom.

    Parameters
    ----------
    preset : str or PhantomParams
        Preset name from ``phantoms/`` (:func:`~cyberknife_sim.anatomy.list_presets`), a
        YAML path, or parameters.
    seed : int
        Seed of all randomness (trabecular texture, noise, per-vertebra variation).

    Returns
    -------
    Phantom
        ``.volume`` (int16 HU, identity direction, LPS), ``.labels`` (uint8 tissue labels,
        :data:`TISSUE_LABELS`), ``.truth`` (CT mm). Results are cached per (preset, seed)
        and read-only.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
    if isinstance(preset, PhantomParams):
        return _make_cached(preset, int(seed), "custom")
    params = load_preset(preset)
    return _make_cached(params, int(seed), str(preset))


@functools.lru_cache(maxsize=2)
def _make_cached(params: PhantomParams, seed: int, name: str) -> Phantom:
    return _generate(params, seed, name)


@dataclass(frozen=True, eq=False)
class PhantomLayout:
    """Where a phantom's parts go (CT mm), independent of its voxel grid.

    Drawn first from the phantom's generator (:func:`phantom_layout`), so a canvas of any
    resolution painted from it shares the CT frame, the vertebra centers and the target of
    :func:`make_phantom`'s volume.
    """

    poses: list[VertebraPose]
    scale: float
    z_lo_mm: float
    z_hi_mm: float

    @property
    def painted(self) -> list[VertebraPose]:
        """The painted vertebrae, cranial first."""
        return [v for v in self.poses if v.painted]

    @property
    def ref(self) -> VertebraPose:
        """The middle painted vertebra (places the rib cage, lungs and liver)."""
        painted = self.painted
        return painted[len(painted) // 2]

    def z_of(self, label: str) -> float:
        """Body-center height (CT mm) of level ``label``, extrapolated beyond the layout."""
        poses = self.poses
        known = {v.label: v for v in poses}
        if label in known:
            return float(known[label].center[2])
        ends = [poses[0], poses[-1]]
        n = level_index(label)
        step = (ends[0].center[2] - ends[1].center[2]) / (level_index(ends[1].label) -
                                                          level_index(ends[0].label))
        return float(ends[0].center[2] - (n - level_index(ends[0].label)) * step)

    @property
    def z_dome_mm(self) -> float:
        """Height of the diaphragm's left dome top (CT mm; the right one is 8 mm higher)."""
        return self.z_of("T10") + 10.0

    @property
    def cord_end_z_mm(self) -> float:
        """Lower end of the cord (conus), CT mm."""
        return 0.5 * (self.z_of("L1") + self.z_of("L2"))


def phantom_layout(p: PhantomParams, rng: np.random.Generator) -> PhantomLayout:
    """Lay out the spine of phantom ``p`` (the first draws from ``rng``).

    Parameters
    ----------
    p : PhantomParams
        The phantom.
    rng : numpy.random.Generator
        The phantom's generator, fresh from ``default_rng(seed)``.
    """
    scale = min(p.body_half_width_mm / 160.0, p.body_half_depth_mm / 112.0)
    y_top = p.body_half_depth_mm - 87.0 * scale
    poses = layout_spine(p.levels, y_top_mm=y_top, kyphosis_mm=p.kyphosis_mm,
                         variability=p.variability, rng=rng)
    painted = [v for v in poses if v.painted]
    z_hi = max(v.center[2] + v.dims.height / 2 for v in painted) + p.margin_z_mm + 6.0
    z_lo = min(v.center[2] - v.dims.height / 2 for v in painted) - p.margin_z_mm - 6.0
    return PhantomLayout(poses=poses, scale=scale, z_lo_mm=z_lo, z_hi_mm=z_hi)


def paint_trunk(cv: Canvas, p: PhantomParams, lay: PhantomLayout) -> NDArray[np.bool_]:
    """Paint body, fat, viscera, ribs and sternum of ``p`` on ``cv``; return the 2-D body
    mask."""
    body2d = paint_body(cv, half_width_mm=p.body_half_width_mm,
                        half_depth_mm=p.body_half_depth_mm, fat_mm=p.fat_thickness_mm)
    paint_viscera(cv, lay.ref, z_dome_mm=lay.z_dome_mm, z_liver_end_mm=lay.z_of("L2"),
                  scale=lay.scale)
    paint_ribs(cv, lay.poses, scale=lay.scale)
    paint_sternum(cv, y_mm=sternum_y_mm(p, lay), z_low_mm=lay.z_of("T9"), scale=lay.scale)
    return body2d


def sternum_y_mm(p: PhantomParams, lay: PhantomLayout) -> float:
    """Antero-posterior position of the sternum's center (CT mm)."""
    return -p.body_half_depth_mm + 17.0 * lay.scale


def paint_lesion(cv: Canvas, p: PhantomParams, target: NDArray[np.float64]) -> None:
    """Turn the cancellous bone within ``p.lesion_radius_mm`` of ``target`` (CT mm) into the
    lytic or blastic lesion."""
    hit = cv.box(target - p.lesion_radius_mm - 1, target + p.lesion_radius_mm + 1)
    assert hit is not None
    (sk, sj, si), (x, y, z) = hit
    sphere = ((x - target[0]) ** 2 + (y - target[1]) ** 2 + (z - target[2]) ** 2
              <= p.lesion_radius_mm**2)
    lab = cv.labels[sk, sj, si]
    hu = cv.hu[sk, sj, si]
    les = sphere & (lab == TISSUE_LABELS["cancellous_bone"])
    base = TISSUE_HU["lesion_lytic"] if p.lesion_type == "lytic" else TISSUE_HU["lesion_blastic"]
    hu[les] = base + 0.15 * (hu[les] - TISSUE_HU["cancellous_bone"])
    lab[les] = TISSUE_LABELS["lesion"]


def lesion_center_ct_mm(p: PhantomParams, lay: PhantomLayout) -> NDArray[np.float64]:
    """Lesion (target) center, CT mm."""
    lesion_v = next(v for v in lay.painted if v.label == p.lesion_level)
    return lesion_v.center + np.asarray(p.lesion_offset_mm, dtype=np.float64)


def _generate(p: PhantomParams, seed: int, name: str) -> Phantom:
    rng = np.random.default_rng(seed)
    lay = phantom_layout(p, rng)
    painted = lay.painted
    dx, dy, dz = p.voxel_size_mm
    ni = int(round(p.fov_mm[0] / dx))
    nj = int(round(p.fov_mm[1] / dy))
    nk = int(np.ceil((lay.z_hi_mm - lay.z_lo_mm) / dz)) + 1
    origin = (-(ni - 1) * dx / 2, -(nj - 1) * dy / 2, lay.z_lo_mm)
    cv = Canvas.create(origin, (dx, dy, dz), (ni, nj, nk), fill_hu=TISSUE_HU["air"])

    body2d = paint_trunk(cv, p, lay)
    paint_discs(cv, lay.poses)
    for v in painted:
        paint_vertebra(cv, v, rng, cortical_mm=p.cortical_thickness_mm)
    cord_end = lay.cord_end_z_mm
    path = paint_canal(cv, lay.poses, cord_end_z_mm=cord_end)

    target = lesion_center_ct_mm(p, lay)
    paint_lesion(cv, p, target)

    if p.noise_hu > 0:
        noise = rng.standard_normal(cv.hu.shape, dtype=np.float32)
        cv.hu[:, body2d] += np.float32(p.noise_hu) * noise[:, body2d]
    hu16 = np.clip(np.rint(cv.hu), -1024, 3071).astype(np.int16)

    ct_from_ijk = np.diag([dx, dy, dz, 1.0])
    ct_from_ijk[:3, 3] = [float(cv.x[0]), float(cv.y[0]), float(cv.z[0])]
    volume = Volume(hu16, ct_from_ijk, name=f"phantom:{name}:seed{seed}")
    zs = cv.z.astype(np.float64)
    canal = np.stack([path["x"], path["y"], zs], axis=1)
    has_cord = zs >= cord_end
    truth = PhantomTruth(
        target_center_ct_mm=_ro(target),
        target_radius_mm=float(p.lesion_radius_mm),
        lesion_type=p.lesion_type,
        lesion_level=p.lesion_level,
        vertebra_labels=tuple(v.label for v in painted),
        body_centers_ct_mm=_ro([v.center for v in painted]),
        cord_centerline_ct_mm=_ro(canal[has_cord][::-1]),
        cord_half_axes_mm=_ro(np.stack([path["cord_a"], path["cord_b"]], axis=1)[has_cord][::-1]),
        canal_centerline_ct_mm=_ro(canal[::-1]),
        canal_half_axes_mm=_ro(np.stack([path["w"] / 2, path["d"] / 2], axis=1)[::-1]),
        preset=name,
        seed=seed,
    )
    lab_ro = cv.labels
    lab_ro.flags.writeable = False
    return Phantom(volume=volume, labels=lab_ro, truth=truth, params=p)
