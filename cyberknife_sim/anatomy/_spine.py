"""The spine of the phantom: vertebra layout, vertebrae, discs, spinal canal and cord."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ._canvas import Canvas
from ._levels import LEVELS, LevelDims, level_dims, level_index
from ._shapes import capsule, local_coords
from ._tissues import TISSUE_HU, TISSUE_LABELS

__all__ = ["VertebraPose", "canal_path", "layout_spine", "paint_canal", "paint_discs",
           "paint_vertebra", "vertebra_bounds_ct"]

_L = TISSUE_LABELS


@dataclass(frozen=True)
class VertebraPose:
    """One vertebra: its dimensions, body center (CT mm) and local axes.

    ``ct_from_local`` (3x3) holds the local X (left), Y (posterior), Z (superior) axes as
    columns; ``painted`` is False for the virtual neighbours used only to place ribs and
    end discs.
    """

    dims: LevelDims
    center: NDArray[np.float64]
    ct_from_local: NDArray[np.float64]
    painted: bool

    @property
    def label(self) -> str:
        """Vertebra label (e.g. ``"T10"``)."""
        return self.dims.label

    def to_ct(self, local_mm) -> NDArray[np.float64]:
        """Local-frame point(s) (mm) → CT mm."""
        return self.center + np.asarray(local_mm, dtype=np.float64) @ self.ct_from_local.T

    @property
    def canal_offset(self) -> float:
        """Local Y of the canal center (mm)."""
        return 0.38 * self.dims.depth + self.dims.canal_d / 2


def _scaled(d: LevelDims, s: float) -> LevelDims:
    return LevelDims(d.label, d.thoracic, d.width * s, d.depth * s, d.height * s,
                     d.disc_below, d.canal_w, d.canal_d, d.spinous_len * s, d.spinous_deg,
                     d.spinous_rz, d.tp_reach * s, d.tp_radius)


def layout_spine(labels: tuple[str, ...], *, y_top_mm: float, kyphosis_mm: float,
                 variability: float, rng: np.random.Generator,
                 extra_above: int = 3, extra_below: int = 1) -> list[VertebraPose]:
    """Place the vertebrae ``labels`` (cranial first) plus virtual neighbours.

    Body centers stack along z with the disc heights of :func:`level_dims`; the sagittal
    curve is a parabola with its apex at the top vertebra whose caudal end lies
    ``kyphosis_mm`` anterior (−y). The middle of the painted segment is at z = 0. Small
    seeded variations (size ±2 %, lateral ±0.8 mm, axial rotation ±1.5°) scaled by
    ``variability`` make each seed a different patient.
    """
    first = max(1, level_index(labels[0]) - extra_above)
    last = min(len(LEVELS), level_index(labels[-1]) + extra_below)
    names = LEVELS[first - 1:last]
    n = len(names)
    scale = 1.0 + 0.02 * variability * rng.standard_normal(n)
    dx = 0.8 * variability * rng.standard_normal(n)
    rot = np.radians(1.5 * variability * rng.standard_normal(n))
    dims = [_scaled(level_dims(nm), float(s)) for nm, s in zip(names, scale, strict=True)]
    z = np.zeros(n)
    for i in range(n - 2, -1, -1):  # stack upward from the most caudal one
        z[i] = z[i + 1] + dims[i + 1].height / 2 + dims[i].disc_below + dims[i].height / 2
    painted = np.array([nm in labels for nm in names])
    z -= 0.5 * (z[painted].max() + z[painted].min())
    z_top, z_bot = z[painted].max(), z[painted].min()
    span = max(z_top - z_bot, 1.0)
    u = (z_top - z) / span
    y = y_top_mm - kyphosis_mm * u * np.abs(u)
    slope = 2.0 * kyphosis_mm * np.abs(u) / span  # dy/dz
    poses = []
    for i in range(n):
        nrm = np.hypot(1.0, slope[i])
        ax = np.array([1.0, 0.0, 0.0])
        ay = np.array([0.0, 1.0, -slope[i]]) / nrm
        az = np.array([0.0, slope[i], 1.0]) / nrm
        c, s = np.cos(rot[i]), np.sin(rot[i])
        r = np.stack([c * ax + s * ay, -s * ax + c * ay, az], axis=1)
        poses.append(VertebraPose(dims[i], np.array([dx[i], y[i], z[i]]), r, bool(painted[i])))
    return poses


def _trabecular_texture(shape, rng: np.random.Generator, spacing_mm) -> NDArray[np.float32]:
    """Random trabecular pattern (HU) with mean ~225 and a 1-3 mm mottled structure."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    sig_fine = [0.6 / s for s in spacing_mm[::-1]]
    sig_coarse = [2.0 / s for s in spacing_mm[::-1]]
    band = ndimage.gaussian_filter(noise, sig_fine) - ndimage.gaussian_filter(noise, sig_coarse)
    band /= max(float(band.std()), 1e-6)
    strut = 1.0 / (1.0 + np.exp(-4.0 * (band - 0.35)))
    return (130.0 + 240.0 * strut).astype(np.float32)


def _spinous_axis(v: VertebraPose):
    d = v.dims
    yc = v.canal_offset
    th = np.radians(d.spinous_deg)
    sp_a = np.array([0.0, yc + d.canal_d / 2 + 4.0, 0.12 * d.height - 2.0])
    sp_b = sp_a + d.spinous_len * np.array([0.0, np.cos(th), -np.sin(th)])
    return sp_a, sp_b


def vertebra_bounds_ct(v: VertebraPose) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Axis-aligned box (CT mm, low and high corners) holding everything
    :func:`paint_vertebra` may paint for ``v``."""
    d = v.dims
    yc = v.canal_offset
    _, sp_b = _spinous_axis(v)
    reach = d.tp_reach + 8.0
    lo_l = np.array([-reach, -d.depth / 2 - 3.0, min(-d.height / 2, sp_b[2]) - 12.0])
    hi_l = np.array([reach, max(sp_b[1], yc) + 10.0, d.height / 2 + 10.0])
    corners = np.array([[a, b, c] for a in (lo_l[0], hi_l[0]) for b in (lo_l[1], hi_l[1])
                        for c in (lo_l[2], hi_l[2])])
    corners_ct = v.to_ct(corners)
    return corners_ct.min(axis=0), corners_ct.max(axis=0)


def paint_vertebra(cv: Canvas, v: VertebraPose, rng: np.random.Generator, *,
                   cortical_mm: float) -> None:
    """Paint one vertebra (body, pedicles, laminae, spinous/transverse/articular
    processes) with a cortical shell and a trabecular core, leaving the canal empty."""
    d = v.dims
    yc = v.canal_offset
    sp_a, sp_b = _spinous_axis(v)
    lo_ct, hi_ct = vertebra_bounds_ct(v)
    hit = cv.box(lo_ct, hi_ct)
    if hit is None:
        return
    (sk, sj, si), (x, y, z) = hit
    lx, ly, lz = local_coords(x, y, z, v.center, v.ct_from_local)

    # vertebral body: elliptic cylinder, waisted, flat posterior wall, concave endplates
    rho2 = (lx / (d.width / 2)) ** 2 + (ly / (d.depth / 2)) ** 2
    waist = 1.0 - 0.06 * (1.0 - (2.0 * lz / d.height) ** 2)
    body = (rho2 <= waist**2) & (ly <= 0.38 * d.depth) & \
        (np.abs(lz) <= d.height / 2 - 0.8 * np.clip(1.0 - rho2, 0.0, 1.0))
    canal = (lx / (d.canal_w / 2)) ** 2 + ((ly - yc) / (d.canal_d / 2)) ** 2 <= 1.0
    zp = 0.12 * d.height
    pw = 7.0 if d.thoracic else 9.0
    ph = 0.55 * d.height
    xp = d.canal_w / 2 + pw / 2 - 0.5
    ped = ((((np.abs(lx) - xp) / (pw / 2)) ** 2 + ((lz - zp) / (ph / 2)) ** 2 <= 1.0)
           & (ly >= 0.2 * d.depth) & (ly <= yc + 1.0))
    lam_t = 5.5
    outer = (lx / (d.canal_w / 2 + lam_t)) ** 2 + ((ly - yc) / (d.canal_d / 2 + lam_t)) ** 2
    zl = zp - 1.5 - 0.35 * (ly - yc)
    lamina = (outer <= 1.0) & (ly >= yc - 1.0) & (np.abs(lz - zl) <= 0.32 * d.height)
    spin = capsule(lx, ly, lz, sp_a, sp_b, (3.2, 5.0, d.spinous_rz))
    tp_y = 9.0 if d.thoracic else -4.0
    parts = body | ped | lamina | spin
    for side in (-1.0, 1.0):
        parts |= capsule(lx, ly, lz, (side * (d.canal_w / 2 + 3.0), yc, zp + 1.0),
                         (side * d.tp_reach, yc + tp_y, zp + 3.0), (d.tp_radius,) * 3)
        parts |= capsule(lx, ly, lz, (side * (d.canal_w / 2 + 2.5), yc + 2.0, zp),
                         (side * (d.canal_w / 2 + 3.0), yc + 4.0, d.height / 2 + 5.0),
                         (4.0, 4.0, 4.0))
        parts |= capsule(lx, ly, lz, (side * (d.canal_w / 2 + 0.5), yc + d.canal_d / 2 + 1.0,
                                      zp - 6.0),
                         (side * (d.canal_w / 2 + 1.0), yc + d.canal_d / 2 + 3.0,
                          -d.height / 2 - 4.0), (4.0, 4.0, 4.0))
    bone = parts & ~canal
    spacing = cv.spacing_mm
    depth_mm = ndimage.distance_transform_edt(
        np.pad(bone, 1), sampling=spacing[::-1])[1:-1, 1:-1, 1:-1]
    core = depth_mm > cortical_mm
    shell = bone & ~core
    hu = cv.hu[sk, sj, si]
    lab = cv.labels[sk, sj, si]
    hu[shell] = TISSUE_HU["cortical_bone"]
    lab[shell] = _L["cortical_bone"]
    hu[core] = _trabecular_texture(hu.shape, rng, spacing)[core]
    lab[core] = _L["cancellous_bone"]


def paint_discs(cv: Canvas, poses: list[VertebraPose]) -> None:
    """Intervertebral discs between consecutive vertebrae (annulus 95 HU, nucleus 70 HU)."""
    for up, lo in zip(poses[:-1], poses[1:], strict=True):
        if not (up.painted or lo.painted):
            continue
        top = lo.to_ct([0.0, 0.0, lo.dims.height / 2])
        bot = up.to_ct([0.0, 0.0, -up.dims.height / 2])
        center = 0.5 * (top + bot)
        axis = bot - top
        height = float(np.linalg.norm(axis)) + 1.6
        r = 0.5 * (up.ct_from_local + lo.ct_from_local)
        u, _, vt = np.linalg.svd(r)
        r = u @ vt
        w = 0.5 * (up.dims.width + lo.dims.width) * 0.98
        dp = 0.5 * (up.dims.depth + lo.dims.depth) * 0.98
        ext = np.array([w / 2 + 2, dp / 2 + 2, height / 2 + 2])
        corners = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1)
                            for c in (-1, 1)]) * ext
        cc = center + corners @ r.T
        hit = cv.box(cc.min(axis=0), cc.max(axis=0))
        if hit is None:
            continue
        (sk, sj, si), (x, y, z) = hit
        lx, ly, lz = local_coords(x, y, z, center, r)
        rho2 = (lx / (w / 2)) ** 2 + (ly / (dp / 2)) ** 2
        disc = (rho2 <= 1.0) & (ly <= 0.38 * dp) & (np.abs(lz) <= height / 2)
        hu = cv.hu[sk, sj, si]
        lab = cv.labels[sk, sj, si]
        hu[disc] = np.where(rho2 < 0.3, 70.0, 95.0)[disc]
        lab[disc] = _L["disc"]


def canal_path(poses: list[VertebraPose], z_mm: NDArray) -> dict[str, NDArray]:
    """Canal center ``(x, y)`` and full width/depth (mm) at each slice height ``z_mm``,
    interpolated between the vertebrae's canal centers (CT mm)."""
    pts = np.array([p.to_ct([0.0, p.canal_offset, 0.0]) for p in poses])
    order = np.argsort(pts[:, 2])
    zz = pts[order, 2]
    return {
        "x": np.interp(z_mm, zz, pts[order, 0]),
        "y": np.interp(z_mm, zz, pts[order, 1]),
        "w": np.interp(z_mm, zz, np.array([poses[i].dims.canal_w for i in order])),
        "d": np.interp(z_mm, zz, np.array([poses[i].dims.canal_d for i in order])),
    }


def paint_canal(cv: Canvas, poses: list[VertebraPose], *, cord_end_z_mm: float) -> dict:
    """Paint the spinal canal (CSF) and the cord (down to ``cord_end_z_mm``); return the
    per-slice canal path (see :func:`canal_path`) and the cord semi-axes (mm)."""
    path = canal_path(poses, cv.z.astype(np.float64))
    cx = path["x"][:, None, None]
    cy = path["y"][:, None, None]
    a = path["w"][:, None, None] / 2
    b = path["d"][:, None, None] / 2
    lo = (cx.min() - 20, cy.min() - 20, cv.z[0])
    hi = (cx.max() + 20, cy.max() + 20, cv.z[-1])
    hit = cv.box(lo, hi)
    assert hit is not None
    (sk, sj, si), (x, y, _) = hit
    rel_x, rel_y = x - cx, y - cy
    canal = (rel_x / a) ** 2 + (rel_y / b) ** 2 <= 1.0
    cord_a, cord_b = 0.60 * a, 0.56 * b
    cord = ((rel_x / cord_a) ** 2 + (rel_y / cord_b) ** 2 <= 1.0) & \
        (cv.z[:, None, None] >= cord_end_z_mm)
    hu = cv.hu[sk, sj, si]
    lab = cv.labels[sk, sj, si]
    hu[canal] = TISSUE_HU["csf"]
    lab[canal] = _L["csf"]
    hu[cord] = TISSUE_HU["cord"]
    lab[cord] = _L["cord"]
    path["cord_a"] = cord_a.ravel()
    path["cord_b"] = cord_b.ravel()
    return path
