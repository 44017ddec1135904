"""Tube spectra from spekpy (tungsten anode, reflection target), with the heel effect.

spekpy's ``Spek(kvp, th)`` models the bremsstrahlung and characteristic emission of a
tungsten anode of angle ``th`` (SpekPy v2 "casim" physics, Poludniowski et al., Med. Phys.
48 (2021) 3630). Its ``x`` coordinate is the displacement along the anode–cathode axis (cm,
at distance ``z``); negative ``x`` is toward the anode: the escape path through the target
grows (``alpp = π/2 − th − atan(x/z)`` in ``SpekTools``), so the beam is weaker and harder
there (the heel effect). Added filtration is traversed obliquely off axis (``obli=True``).

Spectra here are per steradian: spekpy's fluence (photons/cm²/keV per bin) times
``x² + y² + z²`` (cm²), so that the panel's own inverse-square and obliquity factors can be
applied from the view geometry. Spectra are computed at a few angles along the anode–cathode
axis (``tan α`` nodes, α positive toward the cathode) at ``y = 0``; the small extra
filter obliquity in the orthogonal direction (path × 1.002 at 3.3°) is neglected.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from ..._npz_cache import NpzCache, source_hash

__all__ = ["FINE_BIN_KEV", "TubeSpectrum", "rebin_weights", "spekpy_hvl_mm_al", "tube_spectrum"]

FINE_BIN_KEV = 0.5
"""Bin width spekpy is asked for (keV); coarser bins are built from it."""

_Z_CM = 100.0  # distance at which spekpy is evaluated (the result is scaled to per sr)


@dataclass(frozen=True, eq=False)
class TubeSpectrum:
    """Photon output of the tube at a few angles along the anode–cathode axis.

    Attributes
    ----------
    energies_kev : ndarray, shape (n_e,)
        Mid-bin energies (keV), bins of :data:`FINE_BIN_KEV`.
    photons_per_sr_per_mas : ndarray, shape (n_nodes, n_e)
        Photons per steradian per mAs in each energy bin, at each node.
    tan_alpha : ndarray, shape (n_nodes,)
        Tangent of the angle from the central axis along the anode–cathode axis at each node
        (positive toward the cathode, increasing).
    """

    energies_kev: NDArray[np.float64]
    photons_per_sr_per_mas: NDArray[np.float64]
    tan_alpha: NDArray[np.float64]


# spekpy's spectra on disk too: each new process (a CLI run, a sweep worker) would otherwise
# pay ~1 s of spekpy per view
_DISK = NpzCache("spectra", switch_env="CKSIM_SPECTRUM_CACHE")


@lru_cache(maxsize=32)
def _spekpy_nodes(kvp: float, anode_angle_deg: float, al_mm: float, cu_mm: float,
                  tan_alpha: tuple[float, ...]) -> tuple[NDArray, NDArray]:
    from importlib import metadata

    key = NpzCache.key({"spekpy": metadata.version("spekpy"), "kvp": kvp,
                        "anode_angle_deg": anode_angle_deg, "al_mm": al_mm, "cu_mm": cu_mm,
                        "tan_alpha": list(tan_alpha), "fine_bin_kev": FINE_BIN_KEV,
                        "z_cm": _Z_CM, "src": source_hash(["imaging/xrayphysics/_spectrum.py"])})
    return _DISK.get_or_build(
        key, lambda: _spekpy_compute(kvp, anode_angle_deg, al_mm, cu_mm, tan_alpha),
        lambda v: {"k": v[0], "phi": v[1]}, lambda a: (a["k"], a["phi"]))


def _spekpy_compute(kvp: float, anode_angle_deg: float, al_mm: float, cu_mm: float,
                    tan_alpha: tuple[float, ...]) -> tuple[NDArray, NDArray]:
    import spekpy  # slow import (~0.5 s); only when a spectrum is needed

    spek = spekpy.Spek(kvp=kvp, th=anode_angle_deg, dk=FINE_BIN_KEV)
    if al_mm > 0:
        spek.filter("Al", al_mm)
    if cu_mm > 0:
        spek.filter("Cu", cu_mm)
    rows = []
    k = None
    for t in tan_alpha:
        x_cm = _Z_CM * t
        k, flu = spek.get_spectrum(x=x_cm, y=0.0, z=_Z_CM, flu=True, diff=False)
        rows.append(np.asarray(flu, dtype=np.float64) * (x_cm ** 2 + _Z_CM ** 2))
    return np.asarray(k, dtype=np.float64), np.vstack(rows)


def tube_spectrum(*, kvp: float, anode_angle_deg: float, filtration_al_mm: float,
                  filtration_cu_mm: float, tan_alpha: tuple[float, ...]) -> TubeSpectrum:
    """spekpy spectra at the given angles (cached on the arguments; spekpy takes ~1 s).

    Parameters
    ----------
    kvp : float
        Tube voltage (kV).
    anode_angle_deg : float
        Anode (target) angle (deg).
    filtration_al_mm, filtration_cu_mm : float
        Total filtration (inherent + added) in mm of aluminium and of copper.
    tan_alpha : tuple of float
        Node angles along the anode–cathode axis as ``tan α`` (positive toward the cathode).

    Returns
    -------
    TubeSpectrum
    """
    nodes = tuple(round(float(t), 6) for t in tan_alpha)
    if list(nodes) != sorted(nodes) or len(set(nodes)) != len(nodes):
        raise ValueError(f"tan_alpha must be strictly increasing (got {nodes})")
    k, phi = _spekpy_nodes(float(kvp), float(anode_angle_deg), float(filtration_al_mm),
                           float(filtration_cu_mm), nodes)
    return TubeSpectrum(k.copy(), phi.copy(), np.asarray(nodes, dtype=np.float64))


def spekpy_hvl_mm_al(*, kvp: float, anode_angle_deg: float, filtration_al_mm: float,
                     filtration_cu_mm: float = 0.0) -> tuple[float, float]:
    """spekpy's own first and second air-kerma HVLs in aluminium (mm), on the central axis.

    spekpy computes these with its own attenuation data (PENELOPE for the default physics),
    independent of this package's xraydb coefficients.
    """
    import spekpy

    spek = spekpy.Spek(kvp=kvp, th=anode_angle_deg, dk=FINE_BIN_KEV)
    if filtration_al_mm > 0:
        spek.filter("Al", filtration_al_mm)
    if filtration_cu_mm > 0:
        spek.filter("Cu", filtration_cu_mm)
    return float(spek.get_hvl1()), float(spek.get_hvl2())


def rebin_weights(energies_kev: NDArray[np.float64], weights: NDArray[np.float64],
                  bin_kev: float) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Group fine bins into coarse bins of ``bin_kev`` (a multiple of :data:`FINE_BIN_KEV`).

    Parameters
    ----------
    energies_kev : ndarray, shape (n_e,)
        Fine mid-bin energies (keV).
    weights : ndarray, shape (n_e,)
        Weight of each fine bin used to place each coarse bin's representative energy
        (e.g. detected energy ``Φ η E`` on the central axis).
    bin_kev : float
        Coarse bin width (keV).

    Returns
    -------
    energies_kev : ndarray, shape (n_bins,)
        Weighted mean energy of each non-empty coarse bin (keV).
    index : ndarray, shape (n_e,), int64
        Coarse bin of each fine bin (``-1`` for fine bins of zero weight in an empty bin).
    """
    group = int(round(bin_kev / FINE_BIN_KEV))
    if group < 1 or abs(group * FINE_BIN_KEV - bin_kev) > 1e-9:
        raise ValueError(f"bin_kev must be a multiple of {FINE_BIN_KEV} keV (got {bin_kev})")
    raw = np.floor((energies_kev - energies_kev[0]) / (group * FINE_BIN_KEV) + 1e-9).astype(
        np.int64)
    w = np.maximum(weights, 0.0)
    total = np.bincount(raw, weights=w)
    mean_e = np.bincount(raw, weights=w * energies_kev) / np.where(total > 0, total, 1.0)
    keep = total > total.sum() * 1e-9
    new_index = np.cumsum(keep) - 1
    index = np.where(keep[raw], new_index[raw], -1)
    return mean_e[keep], index
