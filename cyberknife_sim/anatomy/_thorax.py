"""Trunk of the phantom: body contour, fat, lungs, diaphragm, liver, ribs and sternum."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ._canvas import Canvas
from ._shapes import superellipse
from ._spine import VertebraPose
from ._tissues import TISSUE_HU, TISSUE_LABELS

__all__ = ["cage_center_y_mm", "diaphragm_z_mm", "heart_q", "paint_body", "paint_ribs",
           "paint_sternum", "paint_viscera", "rib_radius"]

_L = TISSUE_LABELS
_P = 2.4  # superellipse exponent of the body contour (a boxy ellipse, flat back)

# Rib centerline in polar coordinates about a point 50 mm anterior of the vertebral body
# center: angle from the posterior midline (deg) -> radius (mm) for the default body size.
_RIB_PHI = np.array([20.0, 26.0, 35.0, 57.0, 90.0, 118.0, 140.0, 160.0])
_RIB_R = np.array([58.0, 87.0, 104.0, 119.0, 130.0, 118.0, 92.0, 70.0])
_RIB_PHI_END = {"T1": 150.0, "T2": 150.0, "T3": 148.0, "T4": 146.0, "T5": 144.0,
                "T6": 142.0, "T7": 140.0, "T8": 136.0, "T9": 130.0, "T10": 122.0,
                "T11": 105.0, "T12": 80.0}
_RIB_DROP_MM = 45.0      # how far the anterior end lies below the head
_RIB_THICK_MM = 7.0      # radial thickness
_RIB_HEIGHT_MM = 10.0    # cranio-caudal height
_CAGE_OFFSET_MM = 50.0   # polar center: this far anterior of the body center


def _polar(cv: Canvas, cy: float):
    x = cv.x[None, :].astype(np.float64)
    y = cv.y[:, None].astype(np.float64)
    r = np.hypot(x, y - cy)
    phi = np.degrees(np.arctan2(np.abs(x), y - cy))
    return r, phi


def _body_scale(body_a: float, body_b: float) -> float:
    return min(body_a / 160.0, body_b / 112.0)


def paint_body(cv: Canvas, *, half_width_mm: float, half_depth_mm: float,
               fat_mm: float) -> NDArray[np.bool_]:
    """Body contour (soft tissue) with a subcutaneous fat layer; returns the 2-D body mask."""
    x = cv.x[None, :]
    y = cv.y[:, None]
    body = superellipse(x, y, half_width_mm, half_depth_mm, _P) <= 1.0
    inner = superellipse(x, y, half_width_mm - fat_mm, half_depth_mm - fat_mm, _P) <= 1.0
    cv.hu[:, body] = TISSUE_HU["fat"]
    cv.labels[:, body] = _L["fat"]
    cv.hu[:, inner] = TISSUE_HU["soft_tissue"]
    cv.labels[:, inner] = _L["soft_tissue"]
    return body


def rib_radius(phi_deg, scale: float) -> NDArray:
    """Rib centerline radius (mm) at angle ``phi_deg`` from the posterior midline."""
    return scale * np.interp(phi_deg, _RIB_PHI, _RIB_R)


def heart_q(x, y, *, y_body_mm: float, scale: float) -> NDArray:
    """Normalized squared radius of the heart's cross-section (inside where <= 1) at CT mm
    ``x``, ``y``; ``y_body_mm`` is the y of the reference vertebral body center."""
    return ((x - 15.0 * scale) / (62.0 * scale)) ** 2 + \
        ((y - (y_body_mm - 105.0 * scale)) / (55.0 * scale)) ** 2


def diaphragm_z_mm(x, y, *, cy_mm: float, z_dome_mm: float, scale: float) -> NDArray:
    """Height (CT mm) of the diaphragm at CT mm ``x``, ``y``: one dome per side, the right
    (x < 0) 8 mm higher, 45 mm lower at the rim; ``cy_mm`` is the rib cage's polar center y
    (:func:`cage_center_y_mm`)."""
    rho2 = ((np.abs(x) - 65.0 * scale) / (100.0 * scale)) ** 2 + ((y - cy_mm) / (95.0 * scale)) ** 2
    return z_dome_mm + np.where(x < 0, 8.0, 0.0) - 45.0 * np.minimum(rho2, 1.0)


def cage_center_y_mm(v: VertebraPose, scale: float) -> float:
    """y (CT mm) of the rib cage's polar center for vertebra ``v`` (50 mm anterior of its
    body, scaled)."""
    return float(v.center[1]) - _CAGE_OFFSET_MM * scale


def paint_viscera(cv: Canvas, ref: VertebraPose, *, z_dome_mm: float, z_liver_end_mm: float,
                  scale: float) -> None:
    """Lungs above a two-domed diaphragm inside the rib cage (with a posterior-dependent
    density gradient), the mediastinum/heart left as soft tissue, and the liver below the
    right dome."""
    cy = float(ref.center[1]) - _CAGE_OFFSET_MM * scale
    r, phi = _polar(cv, cy)
    x = cv.x[None, :].astype(np.float64)
    y = cv.y[:, None].astype(np.float64)
    yb = float(ref.center[1])
    inside = (r < rib_radius(phi, scale) - _RIB_THICK_MM / 2 - 1.5) & (phi > 24.0) & (phi < 150)
    spine = (np.abs(x) < ref.dims.width / 2 + 10.0) & (y > yb - ref.dims.depth / 2 - 12.0)
    heart = heart_q(x, y, y_body_mm=yb, scale=scale) <= 1.0
    mediastinum = (np.abs(x) < 22.0 * scale) & (y < yb)
    lung2d = inside & ~spine & ~heart & ~mediastinum
    # diaphragm: one dome per side, the right (x < 0) 8 mm higher; 45 mm lower at the rim
    z_d = diaphragm_z_mm(x, y, cy_mm=cy, z_dome_mm=z_dome_mm, scale=scale)
    above = cv.z[:, None, None] > z_d[None].astype(np.float32)
    lung = lung2d[None] & above
    grad = np.clip((y - yb + 60.0) / 150.0, -1.0, 1.0) * 30.0  # denser posteriorly
    lung_hu = np.broadcast_to((TISSUE_HU["lung"] + grad).astype(np.float32), lung.shape)
    cv.hu[lung] = lung_hu[lung]
    cv.labels[lung] = _L["lung"]
    liver2d = ((x + 55.0 * scale) / (95.0 * scale)) ** 2 + \
        ((y - cy + 15.0) / (80.0 * scale)) ** 2 <= 1.0
    liver2d &= inside | (r < rib_radius(phi, scale))
    liver2d &= ~spine
    liver = liver2d[None] & ~above & (cv.z[:, None, None] > z_liver_end_mm)
    cv.hu[liver] = TISSUE_HU["liver"]
    cv.labels[liver] = _L["liver"]


def paint_ribs(cv: Canvas, poses: list[VertebraPose], *, scale: float) -> None:
    """One pair of ribs per thoracic vertebra (painted or virtual): a flat tube that leaves
    the side of the body, sweeps back around the transverse process, runs round the chest
    and drops ~45 mm toward its anterior end; cortical rim with a marrow core."""
    ht, hh = _RIB_THICK_MM / 2, _RIB_HEIGHT_MM / 2
    for v in poses:
        if not v.dims.thoracic:
            continue
        cy = float(v.center[1]) - _CAGE_OFFSET_MM * scale
        r, phi = _polar(cv, cy)
        phi_end = _RIB_PHI_END[v.label]
        rr = rib_radius(phi, scale)
        drr = (rib_radius(phi + 0.5, scale) - rib_radius(phi - 0.5, scale)) / np.radians(1.0)
        cos_a = 1.0 / np.sqrt(1.0 + (drr / np.maximum(r, 1.0)) ** 2)
        perp = (r - rr) * cos_a
        cand = (np.abs(perp) < ht) & (phi >= _RIB_PHI[0]) & (phi <= phi_end) & (r > 0.5 * rr)
        jj, ii = np.nonzero(cand)
        if jj.size == 0:
            continue
        frac = np.clip((phi[jj, ii] - _RIB_PHI[0]) / (140.0 - _RIB_PHI[0]), 0.0, 1.0)
        z_head = float(v.center[2]) + 0.3 * v.dims.height
        zr = z_head - _RIB_DROP_MM * frac**1.5
        k0 = int(np.searchsorted(cv.z, zr.min() - hh, side="left"))
        k1 = int(np.searchsorted(cv.z, zr.max() + hh, side="right"))
        if k1 <= k0:
            continue
        zz = cv.z[k0:k1, None].astype(np.float64)
        q = (perp[jj, ii] / ht)[None] ** 2 + ((zz - zr[None]) / hh) ** 2
        inside = q <= 1.0
        kk, pp = np.nonzero(inside)
        k_idx, j_idx, i_idx = kk + k0, jj[pp], ii[pp]
        cortical = q[kk, pp] > 0.4
        cv.hu[k_idx, j_idx, i_idx] = np.where(cortical, TISSUE_HU["cortical_bone"],
                                              TISSUE_HU["rib_marrow"])
        cv.labels[k_idx, j_idx, i_idx] = np.where(cortical, _L["cortical_bone"],
                                                  _L["rib_marrow"]).astype(np.uint8)


def paint_sternum(cv: Canvas, *, y_mm: float, z_low_mm: float, scale: float) -> None:
    """Sternum: a flat anterior midline bone (30 x 12 mm) above ``z_low_mm`` (the xiphoid)."""
    x = cv.x[None, :]
    y = cv.y[:, None]
    q = (x / (15.0 * scale)) ** 2 + ((y - y_mm) / 6.0) ** 2
    k0 = int(np.searchsorted(cv.z, z_low_mm, side="left"))
    if k0 >= cv.z.size:
        return
    bone = q <= 1.0
    cort = bone & (q > 0.45)
    cv.hu[k0:, bone] = TISSUE_HU["rib_marrow"]
    cv.labels[k0:, bone] = _L["rib_marrow"]
    cv.hu[k0:, cort] = TISSUE_HU["cortical_bone"]
    cv.labels[k0:, cort] = _L["cortical_bone"]
