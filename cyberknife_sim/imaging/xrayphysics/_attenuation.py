"""Mass attenuation of the truth patient's materials and of the beam's filters, from xraydb.

Compositions (mass fractions) and densities are those of the NIST "Physical Reference Data,
X-Ray Mass Attenuation Coefficients, Table 2: Material constants and composition for
compounds and mixtures" (Hubbell & Seltzer, NISTIR 5632), which take the body tissues from
ICRU Report 44 (1989). Mixture rule: ``μ/ρ = Σ_i w_i (μ/ρ)_i`` with the elemental
coefficients of xraydb's Elam tables (``kind="total"``, coherent scattering included: a
photon scattered coherently leaves the narrow primary beam).

Air's mass energy-absorption coefficient (for air-kerma HVLs) is not in xraydb; it is built
as ``μ_en/ρ ≈ (μ/ρ)_photo + (μ/ρ)_incoh · ⟨T⟩/E`` with the Klein–Nishina mean energy
transfer fraction ``⟨T⟩/E`` (fluorescence and radiative losses neglected; good to ~2 % for
air at 20–150 keV, where they are tiny).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import xraydb
from numpy.typing import ArrayLike, NDArray

__all__ = ["COMPOSITIONS", "DENSITY_G_PER_CM3", "air_kerma_weight", "attenuation_table",
           "half_value_layers_mm",
           "mass_attenuation_cm2_per_g", "mass_energy_absorption_air_cm2_per_g"]

COMPOSITIONS: dict[str, dict[str, float]] = {
    # NIST Table 2, "Tissue, Soft (ICRU-44)"
    "soft_tissue": {"H": 0.102, "C": 0.143, "N": 0.034, "O": 0.708, "Na": 0.002, "P": 0.003,
                    "S": 0.003, "Cl": 0.002, "K": 0.003},
    # NIST Table 2, "Adipose Tissue (ICRU-44)"
    "adipose": {"H": 0.114, "C": 0.598, "N": 0.007, "O": 0.278, "Na": 0.001, "S": 0.001,
                "Cl": 0.001},
    # NIST Table 2, "Lung Tissue (ICRU-44)"
    "lung": {"H": 0.103, "C": 0.105, "N": 0.031, "O": 0.749, "Na": 0.002, "P": 0.002,
             "S": 0.003, "Cl": 0.003, "K": 0.002},
    # NIST Table 2, "Bone, Cortical (ICRU-44)"
    "cortical_bone": {"H": 0.034, "C": 0.155, "N": 0.042, "O": 0.435, "Na": 0.001,
                      "Mg": 0.002, "P": 0.103, "S": 0.003, "Ca": 0.225},
    # NIST Table 2, "Water, Liquid"
    "water": {"H": 0.111898, "O": 0.888102},
    # NIST Table 2, "Air, Dry (near sea level)"
    "air": {"C": 0.000124, "N": 0.755268, "O": 0.231781, "Ar": 0.012827},
    "aluminium": {"Al": 1.0},
    "copper": {"Cu": 1.0},
    # CsI by mass from the atomic weights (Cs 132.905, I 126.904)
    "csi": {"Cs": 0.511549, "I": 0.488451},
}
"""Mass fractions of each material's elements (sum 1)."""

DENSITY_G_PER_CM3: dict[str, float] = {
    "soft_tissue": 1.06, "adipose": 0.95, "lung": 1.05, "cortical_bone": 1.92,  # ICRU-44
    "water": 1.0, "air": 0.001205, "aluminium": 2.699, "copper": 8.96, "csi": 4.51,  # NIST
}
"""Nominal densities (g/cm³; lung is the inflated-tissue density of ICRU-44, the truth
patient's particles carry their own mass, so only the composition matters to it)."""


def _check_material(material: str) -> None:
    if material not in COMPOSITIONS:
        raise ValueError(f"unknown material {material!r}; allowed: {sorted(COMPOSITIONS)}")


@lru_cache(maxsize=256)
def _mu_cached(material: str, energies_kev: tuple[float, ...], kind: str) -> NDArray[np.float64]:
    e_ev = np.asarray(energies_kev, dtype=np.float64) * 1e3
    mu = np.zeros_like(e_ev)
    for element, w in COMPOSITIONS[material].items():
        mu += w * np.asarray(xraydb.mu_elam(element, e_ev, kind=kind), dtype=np.float64)
    mu.flags.writeable = False
    return mu


def mass_attenuation_cm2_per_g(material: str, energies_kev: ArrayLike, *,
                               kind: str = "total") -> NDArray[np.float64]:
    """Mass attenuation coefficient ``μ/ρ`` of a material (mixture rule, xraydb Elam data).

    Parameters
    ----------
    material : str
        A key of :data:`COMPOSITIONS` (the four truth materials, water, air, aluminium,
        copper, csi).
    energies_kev : array-like, shape (n,)
        Photon energies (keV), 1–500.
    kind : {"total", "photo", "coh", "incoh"}
        Interaction; ``"total"`` includes coherent scattering.

    Returns
    -------
    ndarray, shape (n,), float64
        ``μ/ρ`` in cm²/g.
    """
    _check_material(material)
    if kind not in ("total", "photo", "coh", "incoh"):
        raise ValueError(f"kind must be one of 'total', 'photo', 'coh', 'incoh' (got {kind!r})")
    e = np.atleast_1d(np.asarray(energies_kev, dtype=np.float64))
    if e.ndim != 1 or not np.all(np.isfinite(e)) or e.min() < 1.0 or e.max() > 500.0:
        raise ValueError("energies_kev must be a 1-D array of finite energies in 1-500 keV")
    return np.array(_mu_cached(material, tuple(float(x) for x in e), kind))


def attenuation_table(materials: tuple[str, ...], energies_kev: ArrayLike) -> NDArray:
    """``μ/ρ`` of several materials, shape ``(n_energies, n_materials)`` (cm²/g), float64."""
    return np.stack([mass_attenuation_cm2_per_g(m, energies_kev) for m in materials], axis=1)


def _kn_energy_transfer_fraction(energies_kev: NDArray[np.float64]) -> NDArray[np.float64]:
    """Klein–Nishina ``σ_tr/σ``: mean fraction of the photon energy given to the electron."""
    cos_t = np.linspace(-1.0, 1.0, 2001)
    k = energies_kev[:, None] / 510.99895
    ratio = 1.0 / (1.0 + k * (1.0 - cos_t[None, :]))  # E'/E
    dsig = ratio ** 2 * (ratio + 1.0 / ratio - (1.0 - cos_t[None, :] ** 2))
    sigma = np.trapezoid(dsig, cos_t, axis=1)
    sigma_tr = np.trapezoid(dsig * (1.0 - ratio), cos_t, axis=1)
    return sigma_tr / sigma


def mass_energy_absorption_air_cm2_per_g(energies_kev: ArrayLike) -> NDArray[np.float64]:
    """Approximate ``μ_en/ρ`` of dry air (cm²/g): photoabsorption + Klein–Nishina transfer.

    Parameters
    ----------
    energies_kev : array-like, shape (n,)
        Photon energies (keV).
    """
    e = np.atleast_1d(np.asarray(energies_kev, dtype=np.float64))
    photo = mass_attenuation_cm2_per_g("air", e, kind="photo")
    incoh = mass_attenuation_cm2_per_g("air", e, kind="incoh")
    return photo + incoh * _kn_energy_transfer_fraction(e)


def air_kerma_weight(energies_kev: ArrayLike) -> NDArray[np.float64]:
    """Air kerma per photon up to a constant: ``E · μ_en/ρ(air)`` (keV·cm²/g), shape (n,)."""
    e = np.atleast_1d(np.asarray(energies_kev, dtype=np.float64))
    return e * mass_energy_absorption_air_cm2_per_g(e)


def half_value_layers_mm(energies_kev: ArrayLike, photons: ArrayLike, *,
                         material: str = "aluminium") -> tuple[float, float]:
    """First and second air-kerma half-value layers of a spectrum (mm of ``material``).

    Air kerma behind ``t`` mm is ``Σ_E N(E) · E μ_en/ρ(air) · exp(−(μ/ρ)(E) ρ t)``
    (narrow beam); HVL1 halves it, HVL1 + HVL2 quarters it.

    Parameters
    ----------
    energies_kev : array-like, shape (n,)
        Bin energies (keV).
    photons : array-like, shape (n,)
        Photons per bin (any scale).
    material : str
        Absorber (a key of :data:`COMPOSITIONS`), at its :data:`DENSITY_G_PER_CM3`.

    Returns
    -------
    tuple of float
        ``(hvl1_mm, hvl2_mm)``.
    """
    from scipy.optimize import brentq

    e = np.asarray(energies_kev, dtype=np.float64)
    n = np.asarray(photons, dtype=np.float64)
    keep = n > 0
    e, n = e[keep], n[keep]
    kerma = n * air_kerma_weight(e)
    mu_per_mm = mass_attenuation_cm2_per_g(material, e) * DENSITY_G_PER_CM3[material] / 10.0
    k0 = kerma.sum()

    def thickness_for(fraction: float) -> float:
        def f(t: float) -> float:
            return float(np.sum(kerma * np.exp(-mu_per_mm * t)) / k0 - fraction)
        hi = 1.0
        while f(hi) > 0:
            hi *= 2.0
        return float(brentq(f, 0.0, hi, xtol=1e-6))

    t1 = thickness_for(0.5)
    return t1, thickness_for(0.25) - t1
