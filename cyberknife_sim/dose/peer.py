"""An established peer for the dose engine: pyRadPlan's photon pencil-beam engine (SVDPB).

Used by ``tests/test_dose_peer.py`` and ``scripts/dose_peer_compare.py`` to put our cone
engine's relative depth dose and lateral profiles side by side with pyRadPlan (the Python
port of matRad, DKFZ; its photon engine is the singular-value-decomposed pencil beam of
Bortfeld, Schlegel & Rhein, Med Phys 1993;20:311). pyRadPlan is an optional dependency
(``pip install "cyberknife_sim[peer]"``); :func:`find_pyradplan` returns False when it is
missing and the dose functions raise :class:`PeerNotInstalled`.

How the two engines are given the same field (see ``docs/dose_peer.md``):

* Water phantom (HU 0, 10 mm of air above it), one beam at gantry 0 (pyRadPlan's beam runs
  along +y of its LPS world), isocentre on the axis at ``iso_depth_mm`` below the surface.
* Same source distance: pyRadPlan's ``Generic`` machine has SAD 1000 mm, but its SVD kernels
  are tabulated for SSD 500–1000 mm and its beams carry their own SAD, so the beam is given
  SAD 800 mm (ours) after the steering file is generated. Both engines therefore see the same
  SSD (``800 - iso_depth_mm``) and the same inverse square: the relative depth doses compare
  directly, without a PDD ↔ TPR conversion.
* Same field: pyRadPlan's field-based mode takes the aperture as a mask in the isocentre
  plane (0.5 mm pixels), so a circular cone of diameter D at 800 mm is a disc of diameter D;
  ``shape="square"`` gives a square of side D (use ``equal_area_side_mm`` to match areas).
* Compatibility shim: pyRadPlan 0.5.0's wrap field serializers call ``handler(v, info)``,
  which pydantic-core 2.50 (pydantic 2.14, installed here) rejects (``'index_key' is expected
  to be an integer``), so every dose calculation fails; :func:`_fix_pyradplan_serializers`
  rewraps them to call ``handler(v)`` (what they meant) and rebuilds the models. Nothing else
  is changed.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import warnings

import numpy as np
from numpy.typing import NDArray

from ..errors import CksimError, InputError

__all__ = ["NOT_INSTALLED", "PeerNotInstalled", "compare_water", "equal_area_side_mm",
           "find_pyradplan", "our_water_dose", "profile_metrics", "pyradplan_version",
           "pyradplan_water_dose"]

NOT_INSTALLED = ("pyRadPlan not installed (optional peer for the dose comparison: "
                 "pip install pyRadPlan, or pip install 'cyberknife_sim[peer]')")

PEER_SAD_MM = 800.0
"""Source-axis distance given to pyRadPlan's beam (mm): ours (DESIGN.md, CyberKnife 800 mm)."""

FIELD_MASK_RESOLUTION_MM = 0.5
"""Pixel of the aperture mask in the isocentre plane (mm); pyRadPlan's default convolution
resolution (``int_conv_resolution``) is also 0.5 mm."""

AIR_ABOVE_MM = 10.0
"""Air (HU −1000) above the water surface in both phantoms (mm), so the surface is found."""


class PeerNotInstalled(CksimError, ImportError):
    """The optional peer package (pyRadPlan) cannot be imported."""


def find_pyradplan() -> bool:
    """True when pyRadPlan can be imported (without importing it: that takes seconds)."""
    return importlib.util.find_spec("pyRadPlan") is not None


def pyradplan_version() -> str:
    """pyRadPlan's installed version (e.g. ``"0.5.0"``); raises PeerNotInstalled when missing."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyRadPlan")
    except PackageNotFoundError as exc:
        raise PeerNotInstalled(NOT_INSTALLED) from exc


def equal_area_side_mm(diameter_mm: float) -> float:
    """Side (mm) of the square whose area equals a disc of ``diameter_mm``: D·√π/2."""
    return float(diameter_mm) * np.sqrt(np.pi) / 2.0


@functools.lru_cache(maxsize=1)
def _fix_pyradplan_serializers() -> tuple[str, ...]:
    """Rewrap pyRadPlan's wrap-mode field serializers to call ``handler(v)``; see module doc.

    Returns the ``Class.serializer`` names patched (empty when nothing needed it).
    """
    from pyRadPlan.core import PyRadPlanBaseModel

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    classes = list(dict.fromkeys(subclasses(PyRadPlanBaseModel)))
    patched = []
    for cls in classes:
        for name, dec in cls.__pydantic_decorators__.field_serializers.items():
            if dec.info.mode != "wrap" or getattr(dec.func, "_cksim_fixed", False):
                continue

            def fixed(self, v, handler, info, _orig=dec.func):
                return _orig(self, v, lambda value, *_ignored: handler(value), info)

            fixed._cksim_fixed = True  # type: ignore[attr-defined]
            dec.func = fixed
            patched.append(f"{cls.__name__}.{name}")
    for _ in range(2):  # containers embed their members' schemas: rebuild after the members
        for cls in classes:
            cls.model_rebuild(force=True)
    return tuple(patched)


def _import_pyradplan():
    if not find_pyradplan():
        raise PeerNotInstalled(NOT_INSTALLED)
    import pyRadPlan  # noqa: F401  (several seconds: numba, SimpleITK, pydantic models)

    _fix_pyradplan_serializers()
    return pyRadPlan


def _field_mask(field_mm: float, shape: str) -> NDArray[np.float64]:
    """Aperture in the isocentre plane, odd-sized, 0.5 mm pixels centred on the axis.

    Each pixel holds the fraction of its area inside the aperture (exact for the square,
    16 × 16 sub-samples for the disc): a binary mask of pixel centres would widen a 20 mm
    square to 20.5 mm (measured).
    """
    r = FIELD_MASK_RESOLUTION_MM
    half = int(np.ceil(field_mm / (2 * r))) + 2
    m = 2 * half + 1
    if shape == "square":
        c = r * np.arange(-half, half + 1)
        cover = np.clip(np.minimum(c + r / 2, field_mm / 2) - np.maximum(c - r / 2, -field_mm / 2),
                        0.0, None) / r
        return np.outer(cover, cover)
    n_sub = 16
    g = r * (np.arange(-half * n_sub, (half + 1) * n_sub) + 0.5) / n_sub - r / 2
    x, z = np.meshgrid(g, g, indexing="ij")
    inside = x**2 + z**2 <= (field_mm / 2.0) ** 2
    return inside.reshape(m, n_sub, m, n_sub).mean(axis=(1, 3))


def _check_args(field_mm: float, shape: str, spacing_mm: float, depths_mm, iso_depth_mm: float,
                max_depth_mm: float) -> NDArray[np.float64]:
    if not np.isfinite(field_mm) or not 4.0 <= field_mm <= 100.0:
        raise InputError(f"pyradplan_water_dose: field_mm must be in [4, 100] mm "
                         f"(got {field_mm})")
    if shape not in ("circle", "square"):
        raise InputError(f"pyradplan_water_dose: shape must be 'circle' or 'square' "
                         f"(got {shape!r})")
    if not 0.25 <= spacing_mm <= 3.0:
        raise InputError(f"pyradplan_water_dose: spacing_mm must be in [0.25, 3] mm "
                         f"(got {spacing_mm})")
    depths = np.atleast_1d(np.asarray(depths_mm, dtype=np.float64))
    if depths.size == 0 or np.any(depths <= 0) or np.any(depths >= max_depth_mm):
        raise InputError(f"pyradplan_water_dose: depths_mm must lie in (0, max_depth_mm="
                         f"{max_depth_mm}) (got {depths.tolist()})")
    if not 0.0 <= iso_depth_mm < max_depth_mm:
        raise InputError(f"pyradplan_water_dose: iso_depth_mm must lie in [0, {max_depth_mm}) "
                         f"(got {iso_depth_mm})")
    return depths


def pyradplan_water_dose(field_mm: float, *, shape: str = "circle", spacing_mm: float = 0.5,
                         depths_mm=(50.0, 100.0), iso_depth_mm: float = 50.0,
                         max_depth_mm: float = 230.0, norm_depth_mm: float = 15.0,
                         source_fwhm_mm: float | None = None) -> dict:
    """pyRadPlan's SVD pencil-beam dose in water for one field at SAD 800 mm.

    Parameters
    ----------
    field_mm : float
        Field diameter (``shape="circle"``) or side (``"square"``) at the isocentre (mm).
    shape : {"circle", "square"}
        Aperture shape.
    spacing_mm : float
        Dose (and CT) voxel size (mm); lateral profiles are read on this grid.
    depths_mm : sequence of float
        Depths below the water surface of the lateral profiles (mm).
    iso_depth_mm : float
        Depth of the isocentre (mm); SSD = 800 − ``iso_depth_mm``.
    max_depth_mm : float
        Depth of water below the surface (mm).
    norm_depth_mm : float
        Depth at which the depth dose is normalised to 1 (mm); 15 mm is CyberKnife's
        calibration depth (d_max of 6 MV).
    source_fwhm_mm : float, optional
        Override of the machine's Gaussian source penumbra (FWHM at the isocentre, mm;
        pyRadPlan's ``force_penumbra``); None keeps the Generic machine's 5 mm.

    Returns
    -------
    dict
        ``depth_mm`` (n,) voxel-centre depths on the central axis; ``pdd`` (n,) dose
        relative to ``norm_depth_mm``; ``profile_depth_mm`` (m,); ``x_mm`` (p,) lateral
        positions (isocentre-plane axis x); ``profiles`` (m, p) dose relative to the central
        axis at each depth; ``dose_cax_gy`` (n,) the raw axis dose (pyRadPlan's units per
        unit beamlet weight); ``machine``, ``sad_mm``, ``ssd_mm``, ``source_fwhm_mm``,
        ``version``.

    Raises
    ------
    PeerNotInstalled
        When pyRadPlan cannot be imported.
    InputError
        For a field, spacing or depth out of range.
    """
    depths = _check_args(field_mm, shape, spacing_mm, depths_mm, iso_depth_mm, max_depth_mm)
    prp = _import_pyradplan()
    import SimpleITK as sitk
    from pyRadPlan.cst import create_voi
    from pyRadPlan.ct import create_ct

    h = float(spacing_mm)
    half_lat = 0.75 * field_mm + 20.0 * (1.0 + max(depths) / PEER_SAD_MM)
    nx = 2 * int(np.ceil(half_lat / h)) + 1          # odd: a voxel centre on the axis
    nz = 5                                           # a thin slab: the pencil beam model
    n_air = int(round(AIR_ABOVE_MM / h))             # ignores lateral extent (no scatter
    ny = n_air + int(np.ceil(max_depth_mm / h))      # deficit), so z only needs the axis
    hu = np.zeros((nz, ny, nx))                      # pyRadPlan cube: [z, y, x]
    hu[:, :n_air, :] = -1000.0
    surface_y = -float(iso_depth_mm)                 # isocentre at the world origin
    origin = (-(nx // 2) * h, surface_y - n_air * h + 0.5 * h, -(nz // 2) * h)
    ct = create_ct({"cube_hu": hu, "origin": origin, "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1),
                    "resolution": {"x": h, "y": h, "z": h}})
    mask = np.ones(hu.shape, dtype=np.uint8)
    cst = prp.StructureSet(vois=[create_voi(voi_type="TARGET", name="water", ct_image=ct,
                                            mask=mask),
                                 create_voi(voi_type="OAR", name="body", ct_image=ct,
                                            mask=mask)], ct_image=ct)
    pln = prp.PhotonPlan(machine="Generic")
    pln.prop_stf = {"gantry_angles": np.zeros(1), "couch_angles": np.zeros(1),
                    "generator": "photonSingleBixel", "field_based": True,
                    "field_shape": _field_mask(field_mm, shape),
                    "resolution": FIELD_MASK_RESOLUTION_MM,
                    "iso_center": np.zeros((1, 3))}
    dose_calc = {"engine": "SVDPB", "dose_grid": {"resolution": {"x": h, "y": h, "z": h}}}
    if source_fwhm_mm is not None:
        dose_calc["force_penumbra"] = float(source_fwhm_mm)
    pln.prop_dose_calc = dose_calc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("pyRadPlan").setLevel(logging.ERROR)
        stf = prp.generate_stf(ct, cst, pln)
        beam = stf.beams[0]
        machine = beam.machine
        beam.sad = PEER_SAD_MM
        beam.source_point_bev = np.array([0.0, -PEER_SAD_MM, 0.0])
        beam.source_point = np.array([0.0, -PEER_SAD_MM, 0.0])  # gantry 0: BEV = world
        beam.rays[0].beamlets[0].weight = 1.0
        dij = prp.calc_dose_forward(ct, cst, stf, pln)
    dose = sitk.GetArrayFromImage(dij["physical_dose"]).astype(np.float64)  # [z, y, x]
    img = dij["physical_dose"]
    y0, dy = img.GetOrigin()[1], img.GetSpacing()[1]
    x0, dx = img.GetOrigin()[0], img.GetSpacing()[0]
    cax = dose[nz // 2, :, nx // 2]
    depth = y0 + dy * np.arange(dose.shape[1]) - surface_y
    x_mm = x0 + dx * np.arange(dose.shape[2])
    water = depth > 0
    depth, cax = depth[water], cax[water]
    pdd = cax / np.interp(norm_depth_mm, depth, cax)
    rows = [np.interp(d, depth, np.arange(depth.size)) + np.count_nonzero(~water)
            for d in depths]
    profiles = []
    for r in rows:  # linear interpolation between the two voxel rows around the depth
        lo = int(np.floor(r))
        w = r - lo
        p = (1 - w) * dose[nz // 2, lo, :] + w * dose[nz // 2, min(lo + 1, ny - 1), :]
        profiles.append(p / p[nx // 2])
    return {"depth_mm": depth, "pdd": pdd, "dose_cax_gy": cax, "profile_depth_mm": depths,
            "x_mm": x_mm, "profiles": np.array(profiles), "machine": f"photons_{machine}",
            "sad_mm": PEER_SAD_MM, "ssd_mm": PEER_SAD_MM - iso_depth_mm,
            "source_fwhm_mm": source_fwhm_mm, "version": pyradplan_version()}


def profile_metrics(x_mm, rel) -> tuple[float, float]:
    """FWHM and mean 80–20 % penumbra (mm) of a lateral profile normalised to 1 on the axis.

    Parameters
    ----------
    x_mm : array-like, shape (p,)
        Increasing lateral positions (mm), the axis inside.
    rel : array-like, shape (p,)
        Dose relative to the central axis.

    Returns
    -------
    fwhm_mm, penumbra_mm : float
        Distance between the two 50 % crossings; mean over both sides of the distance between
        the 80 % and 20 % crossings (linear interpolation, outermost crossing each side).
    """
    x = np.asarray(x_mm, dtype=np.float64)
    r = np.asarray(rel, dtype=np.float64)
    ic = int(np.argmin(np.abs(x)))

    def crossing(level: float, side: int) -> float:
        idx = np.arange(ic, x.size) if side > 0 else np.arange(ic, -1, -1)
        below = np.nonzero(r[idx] < level)[0]
        if below.size == 0:
            raise InputError(f"profile_metrics: the profile never falls below {level:.0%}")
        b = idx[below[0]]
        a = b - side
        return float(np.interp(level, [r[b], r[a]], [x[b], x[a]]))

    fwhm = crossing(0.5, +1) - crossing(0.5, -1)
    pen = 0.5 * ((crossing(0.2, +1) - crossing(0.8, +1))
                 + (crossing(0.8, -1) - crossing(0.2, -1)))
    return fwhm, pen


def our_water_dose(cone_mm: float, *, depth_mm, x_mm, profile_depths_mm=(50.0, 100.0),
                   iso_depth_mm: float = 50.0, max_depth_mm: float = 230.0,
                   norm_depth_mm: float = 15.0, spacing_mm: float = 1.0) -> dict:
    """Our cone engine in the same water geometry as :func:`pyradplan_water_dose`.

    Source 800 mm above the isocentre, isocentre ``iso_depth_mm`` below the surface (SSD
    ``800 - iso_depth_mm``), beam along +y; the engine is evaluated at points, so the
    depth dose and the profiles are sampled exactly where asked.

    Parameters
    ----------
    cone_mm : float
        Cone diameter at SAD 800 mm.
    depth_mm : array-like, shape (n,)
        Central-axis depths (mm).
    x_mm : array-like, shape (p,)
        Lateral positions of the profiles (mm, along CT x), the axis at 0.
    profile_depths_mm : sequence of float
        Depths of the profiles (mm).
    iso_depth_mm, max_depth_mm, norm_depth_mm : float
        As in :func:`pyradplan_water_dose`.
    spacing_mm : float
        CT voxel size of the water phantom (mm).

    Returns
    -------
    dict
        ``depth_mm``, ``pdd`` (relative to ``norm_depth_mm``), ``dose_cax_gy_per_mu``,
        ``profile_depth_mm``, ``x_mm``, ``profiles`` (relative to the axis), ``ssd_mm``.
    """
    from ..anatomy.volume import Volume
    from ._engine import DoseEngine

    depth = np.asarray(depth_mm, dtype=np.float64)
    x = np.asarray(x_mm, dtype=np.float64)
    pdepth = np.atleast_1d(np.asarray(profile_depths_mm, dtype=np.float64))
    h = float(spacing_mm)
    half_lat = max(np.abs(x).max(), 0.75 * cone_mm) + 10.0
    ni = 2 * int(np.ceil(half_lat / h)) + 1
    n_air = int(round(AIR_ABOVE_MM / h))
    nj = n_air + int(np.ceil(max_depth_mm / h))
    hu = np.zeros((ni, nj, ni), dtype=np.int16)     # [k, j, i]: x = i, y = j (depth), z = k
    hu[:, :n_air, :] = -1000
    ct_from_ijk = np.diag([h, h, h, 1.0])
    ct_from_ijk[:3, 3] = (-(ni // 2) * h, -iso_depth_mm - n_air * h + 0.5 * h, -(ni // 2) * h)
    engine = DoseEngine(Volume(hu, ct_from_ijk, name="water"), sad_mm=PEER_SAD_MM,
                        cutoff_mm=float(np.abs(x).max()))
    src = np.array([0.0, -PEER_SAD_MM, 0.0])
    aim = np.zeros(3)
    y_of = depth - iso_depth_mm
    cax_pts = np.stack([np.zeros_like(depth), y_of, np.zeros_like(depth)], axis=1)
    prof_pts = np.array([[xi, d - iso_depth_mm, 0.0] for d in pdepth for xi in x])
    norm_pt = np.array([[0.0, norm_depth_mm - iso_depth_mm, 0.0]])
    dose = engine.dose_per_mu(src, aim, cone_mm, np.vstack([cax_pts, prof_pts, norm_pt]))
    cax = dose[:depth.size]
    prof = dose[depth.size:-1].reshape(pdepth.size, x.size)
    axis_at = engine.dose_per_mu(src, aim, cone_mm,
                                 np.stack([np.zeros_like(pdepth), pdepth - iso_depth_mm,
                                           np.zeros_like(pdepth)], axis=1))
    return {"depth_mm": depth, "pdd": cax / dose[-1], "dose_cax_gy_per_mu": cax,
            "profile_depth_mm": pdepth, "x_mm": x, "profiles": prof / axis_at[:, None],
            "ssd_mm": PEER_SAD_MM - iso_depth_mm}


def compare_water(cone_mm: float, *, shape: str = "circle", spacing_mm: float = 0.5,
                  depths_mm=(50.0, 100.0), iso_depth_mm: float = 50.0,
                  max_depth_mm: float = 230.0, norm_depth_mm: float = 15.0,
                  beyond_mm: float = 20.0, source_fwhm_mm: float | None = None) -> dict:
    """Our cone engine vs pyRadPlan's SVD pencil beam in water: depth dose and profiles.

    Parameters
    ----------
    cone_mm : float
        Our cone diameter at SAD 800 mm; pyRadPlan gets a disc of the same diameter
        (``shape="circle"``) or the square of equal area (``"square"``).
    spacing_mm : float
        pyRadPlan's dose voxel (mm); ours is sampled at pyRadPlan's depths and positions.
    depths_mm, iso_depth_mm, max_depth_mm, norm_depth_mm, source_fwhm_mm
        As in :func:`pyradplan_water_dose`.
    beyond_mm : float
        The depth-dose difference is taken over depths ≥ this (mm: beyond the build-up) and
        ≤ ``max_depth_mm - 10`` (away from the phantom's end).

    Returns
    -------
    dict
        ``peer`` and ``ours`` (the two result dicts); ``pdd_diff_max_pct`` (signed, ours −
        peer, the largest magnitude), ``pdd_diff_rms_pct`` (percentage points of the
        normalised depth dose); ``dmax_mm`` {ours, peer}; ``profiles``: one row per depth
        with ``depth_mm``, ``fwhm_mm`` and ``penumbra_mm`` (80–20 %) of each engine;
        ``tpr20_10`` {ours, peer}: TPR(200)/TPR(100) from each depth dose,
        ``PDD(200)/PDD(100) · ((SSD+200)/(SSD+100))²`` (the inverse square taken out; the
        small change of phantom scatter with the field's size at depth is ignored).
    """
    field = cone_mm if shape == "circle" else equal_area_side_mm(cone_mm)
    peer = pyradplan_water_dose(field, shape=shape, spacing_mm=spacing_mm, depths_mm=depths_mm,
                                iso_depth_mm=iso_depth_mm, max_depth_mm=max_depth_mm,
                                norm_depth_mm=norm_depth_mm, source_fwhm_mm=source_fwhm_mm)
    ours = our_water_dose(cone_mm, depth_mm=peer["depth_mm"], x_mm=peer["x_mm"],
                          profile_depths_mm=peer["profile_depth_mm"],
                          iso_depth_mm=iso_depth_mm, max_depth_mm=max_depth_mm,
                          norm_depth_mm=norm_depth_mm)
    sel = (peer["depth_mm"] >= beyond_mm) & (peer["depth_mm"] <= max_depth_mm - 10.0)
    diff = 100.0 * (ours["pdd"][sel] - peer["pdd"][sel])
    rows = []
    for k, d in enumerate(peer["profile_depth_mm"]):
        f_o, p_o = profile_metrics(ours["x_mm"], ours["profiles"][k])
        f_p, p_p = profile_metrics(peer["x_mm"], peer["profiles"][k])
        rows.append({"depth_mm": float(d), "fwhm_mm": {"ours": f_o, "peer": f_p},
                     "penumbra_mm": {"ours": p_o, "peer": p_p}})
    def tpr20_10(res: dict) -> float:
        p20, p10 = np.interp([200.0, 100.0], res["depth_mm"], res["pdd"])
        return float(p20 / p10 * ((res["ssd_mm"] + 200.0) / (res["ssd_mm"] + 100.0)) ** 2)

    return {"cone_mm": float(cone_mm), "shape": shape, "peer_field_mm": float(field),
            "tpr20_10": {"ours": tpr20_10(ours), "peer": tpr20_10(peer)},
            "peer": peer, "ours": ours,
            "pdd_diff_max_pct": float(diff[np.argmax(np.abs(diff))]),
            "pdd_diff_rms_pct": float(np.sqrt(np.mean(diff**2))),
            "dmax_mm": {"ours": float(ours["depth_mm"][np.argmax(ours["pdd"])]),
                        "peer": float(peer["depth_mm"][np.argmax(peer["pdd"])])},
            "profiles": rows}
