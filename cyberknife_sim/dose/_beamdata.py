"""Beam data of a CyberKnife-style 6 MV FFF linac with fixed circular cones (5-60 mm).

Three functions describe a cone's beam in water, in the spirit of Accuray's Ray-Tracing
algorithm: the output factor ``OF(cone)``, the tissue-phantom ratio ``TPR(d_eff, cone)``
(normalised to 1 at d_max = 15 mm) and the off-axis ratio ``OCR(r_sad, d_eff, cone)``
(1 on the axis), with ``r_sad`` the distance from the axis projected to the SAD plane.
Calibration: 1 cGy/MU at SAD 800 mm, depth 15 mm, 60 mm cone, in water (Accuray
convention). Every number is tabulated below with its source or the word "assumption".

Output factors (cone diameter at 800 mm, ratio to the 60 mm cone at SAD 800, depth 15 mm):

=====  ======  ============================================================================
cone   OF      source
=====  ======  ============================================================================
5      0.65    Ploquin et al., Med Phys 2012 (detector-corrected small-cone OF, ≈0.65)
7.5    0.81    Ploquin et al., Med Phys 2012 (≈0.81)
10     0.85    Ploquin et al., Med Phys 2012 (≈0.85)
12.5   0.90    assumption: smooth rise, typical of published multi-unit CK data (Masi et al.,
               Phys Med 2016; Francescon et al., PMB 2012), value not taken from a table
15     0.925   assumption (as above)
20     0.950   assumption (as above)
25     0.965   assumption (as above)
30     0.975   assumption (as above)
35     0.980   assumption (as above)
40     0.985   assumption (as above)
50     0.992   assumption (as above)
60     1.000   by definition (reference field)
=====  ======  ============================================================================

Between tabulated cones the output factor is interpolated linearly (assumption); outside
5-60 mm the cone is rejected.

TPR model (assumption, a documented parametric model): beyond d_max,
``TPR = exp(-mu(c) (d - 15 mm))`` with an effective attenuation ``mu(c)`` that falls with
cone size as more phantom scatter reaches the axis; in the build-up region
``TPR = b0 + (1 - b0) (1 - exp(-d/beta)) / (1 - exp(-15/beta))``.

* ``mu(60 mm)`` from TPR20/10 = 0.635 (assumption inside the 0.63-0.68 range quoted for
  6 MV, CyberKnife 60 mm cone at SAD 800 mm).
* ``mu(5 mm)`` from TPR20/10 = 0.580 (assumption: a near-primary narrow beam).
* ``mu(c)`` between them: ``mu60 + (mu5 - mu60) * (exp(-(c-5)/15) - exp(-55/15)) /
  (1 - exp(-55/15))`` (assumption: scatter saturates over ~15 mm of cone diameter).
* surface ratio ``b0`` = 0.45 and build-up length ``beta`` = 4 mm (assumption; FFF 6 MV
  surface doses are reported near 40-50 %).

OCR model (assumption, a parametric penumbra): a disk of radius ``R = cone/2`` (SAD plane)
blurred by a Gaussian edge, ``E(r) = (erf((R - r)/(sqrt 2 s)) + erf((R + r)/(sqrt 2 s)))/2``,
plus an out-of-field tail ``T(r) = tau * exp(-max(r - R, 0)/lambda_t)``, normalised so
``OCR(0) = 1``. The 80-20 % width ``p = 1.683 s`` grows with cone and depth:
``p(d, c) = 1.6 mm + 0.035 c + 0.01 (d - 15 mm)`` (clipped at ``d >= 0``; assumption, of
the order of the 2-4 mm CK cone penumbrae reported in commissioning papers), ``tau`` =
0.02 and ``lambda_t`` = 8 mm (assumption: ~1-2 % dose just outside the field, falling
by ~e per cm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange
from numpy.typing import ArrayLike, NDArray
from scipy.special import erf

from ..errors import InputError

__all__ = ["BeamData", "DEFAULT_BEAM_DATA", "CONES_MM", "OcrTable"]

CONES_MM: tuple[float, ...] = (5.0, 7.5, 10.0, 12.5, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0,
                               50.0, 60.0)
"""The fixed cone diameters (mm at SAD 800 mm)."""

_OUTPUT_FACTORS = (0.65, 0.81, 0.85, 0.90, 0.925, 0.950, 0.965, 0.975, 0.980, 0.985, 0.992,
                   1.0)
_SIGMA_PER_P8020 = 1.0 / (2.0 * 0.8416212335729143)   # Gaussian edge: 80-20 % = 1.683 sigma


def _mu_from_tpr2010(tpr2010: float) -> float:
    """Effective attenuation (1/mm) giving TPR(200 mm)/TPR(100 mm) = ``tpr2010``."""
    return -np.log(tpr2010) / 100.0


@dataclass(frozen=True)
class BeamData:
    """Beam data of the cones (see the module docstring for every number's source).

    Parameters
    ----------
    cones_mm : tuple of float
        Tabulated cone diameters at SAD (mm), increasing.
    output_factors : tuple of float
        Output factor of each cone (ratio to the 60 mm cone).
    calibration_gy_per_mu : float
        Dose per MU at SAD 800 mm, 15 mm depth, 60 mm cone, in water (Gy/MU).
    sad_mm : float
        Source-axis distance of the calibration (mm).
    dmax_mm : float
        Depth of the TPR normalisation (mm).
    tpr2010_large, tpr2010_small : float
        TPR20/10 of the 60 mm and 5 mm cones (set the effective attenuation).
    scatter_length_mm : float
        Cone-diameter scale over which the effective attenuation moves from small to large.
    surface_ratio, buildup_mm : float
        TPR at the surface and the build-up length (mm).
    penumbra_base_mm, penumbra_per_cone, penumbra_per_depth : float
        80-20 % penumbra (mm, SAD plane) = base + per_cone * cone + per_depth * (d - dmax).
    tail_fraction, tail_length_mm : float
        Out-of-field tail height (fraction of the axis) and its decay length (mm).
    """

    cones_mm: tuple[float, ...] = CONES_MM
    output_factors: tuple[float, ...] = _OUTPUT_FACTORS
    calibration_gy_per_mu: float = 0.01      # 1 cGy/MU (Accuray calibration convention)
    sad_mm: float = 800.0
    dmax_mm: float = 15.0                    # 6 MV d_max (assumption: same for every cone)
    tpr2010_large: float = 0.635             # assumption, see module docstring
    tpr2010_small: float = 0.580             # assumption
    scatter_length_mm: float = 15.0          # assumption
    surface_ratio: float = 0.45              # assumption
    buildup_mm: float = 4.0                  # assumption
    penumbra_base_mm: float = 1.6            # assumption
    penumbra_per_cone: float = 0.035         # assumption
    penumbra_per_depth: float = 0.01         # assumption
    tail_fraction: float = 0.02              # assumption
    tail_length_mm: float = 8.0              # assumption
    _mu: tuple[float, float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        c = np.asarray(self.cones_mm, dtype=np.float64)
        of = np.asarray(self.output_factors, dtype=np.float64)
        if c.ndim != 1 or c.shape != of.shape or c.size < 2 or np.any(np.diff(c) <= 0):
            raise InputError("beam data: cones_mm must increase and match output_factors")
        if np.any(of <= 0):
            raise InputError("beam data: output factors must be positive")
        object.__setattr__(self, "_mu", (_mu_from_tpr2010(self.tpr2010_small),
                                         _mu_from_tpr2010(self.tpr2010_large)))

    # -- validation -----------------------------------------------------------------------
    def check_cone(self, cone_mm: float) -> float:
        """``cone_mm`` as a float; InputError outside the tabulated range."""
        c = float(cone_mm)
        if not (np.isfinite(c) and self.cones_mm[0] - 1e-9 <= c <= self.cones_mm[-1] + 1e-9):
            raise InputError(f"beam data: cone_mm must be within {self.cones_mm[0]:g}-"
                             f"{self.cones_mm[-1]:g} mm (got {cone_mm})")
        return c

    # -- the three functions ------------------------------------------------------------
    def output_factor(self, cone_mm: float) -> float:
        """Output factor of a cone (ratio to the 60 mm cone; linear between table rows)."""
        c = self.check_cone(cone_mm)
        return float(np.interp(c, self.cones_mm, self.output_factors))

    def mu_eff_per_mm(self, cone_mm: float) -> float:
        """Effective attenuation of the TPR beyond d_max (1/mm)."""
        c = self.check_cone(cone_mm)
        lo, hi = self.cones_mm[0], self.cones_mm[-1]
        lam = self.scatter_length_mm
        f = (np.exp(-(c - lo) / lam) - np.exp(-(hi - lo) / lam)) / (1 - np.exp(-(hi - lo) / lam))
        mu_small, mu_large = self._mu
        return float(mu_large + (mu_small - mu_large) * f)

    def tpr(self, eff_depth_mm: ArrayLike, cone_mm: float) -> NDArray[np.float64]:
        """Tissue-phantom ratio at effective depths (mm of water), 1 at ``dmax_mm``."""
        d = np.maximum(np.asarray(eff_depth_mm, dtype=np.float64), 0.0)
        mu = self.mu_eff_per_mm(cone_mm)
        b0, beta, dm = self.surface_ratio, self.buildup_mm, self.dmax_mm
        build = b0 + (1.0 - b0) * (-np.expm1(-d / beta)) / (-np.expm1(-dm / beta))
        return np.where(d < dm, build, np.exp(-mu * (d - dm)))

    def penumbra_mm(self, eff_depth_mm: ArrayLike, cone_mm: float) -> NDArray[np.float64]:
        """80-20 % penumbra width in the SAD plane (mm) at effective depths (mm)."""
        c = self.check_cone(cone_mm)
        d = np.maximum(np.asarray(eff_depth_mm, dtype=np.float64), 0.0)
        return (self.penumbra_base_mm + self.penumbra_per_cone * c
                + self.penumbra_per_depth * (d - self.dmax_mm))

    def ocr(self, r_sad_mm: ArrayLike, eff_depth_mm: ArrayLike,
            cone_mm: float) -> NDArray[np.float64]:
        """Off-axis ratio (1 on the axis) at radii projected to the SAD plane (mm) and
        effective depths (mm); arrays broadcast."""
        radius = 0.5 * self.check_cone(cone_mm)
        r = np.abs(np.asarray(r_sad_mm, dtype=np.float64))
        s = self.penumbra_mm(eff_depth_mm, cone_mm) * _SIGMA_PER_P8020 * np.sqrt(2.0)
        edge = 0.5 * (erf((radius - r) / s) + erf((radius + r) / s))
        edge0 = erf(radius / s)
        tau, lam = self.tail_fraction, self.tail_length_mm
        tail = tau * np.exp(-np.maximum(r - radius, 0.0) / lam)
        return (edge + tail) / (edge0 + tau)

    def tpr20_10(self, cone_mm: float) -> float:
        """TPR(200 mm) / TPR(100 mm) of a cone (the beam-quality index)."""
        t = self.tpr([200.0, 100.0], cone_mm)
        return float(t[0] / t[1])


@njit(cache=True, parallel=True)
def _shifted_ocr(table, dr, dd, lat, scale, deff, off, w):  # pragma: no cover - compiled
    """Weighted mean over axis offsets of the tabulated OCR at each point (bilinear)."""
    nd, nr = table.shape
    out = np.zeros(lat.shape[0])
    for p in prange(lat.shape[0]):
        fd = min(max(deff[p] / dd, 0.0), nd - 1.000001)
        i_d = int(fd)
        td = fd - i_d
        acc = 0.0
        for k in range(off.shape[0]):
            du = lat[p, 0] - off[k, 0]
            dv = lat[p, 1] - off[k, 1]
            fr = min(math.sqrt(du * du + dv * dv) * scale[p] / dr, nr - 1.000001)
            i_r = int(fr)
            tr = fr - i_r
            lo = table[i_d, i_r] + tr * (table[i_d, i_r + 1] - table[i_d, i_r])
            hi = table[i_d + 1, i_r] + tr * (table[i_d + 1, i_r + 1] - table[i_d + 1, i_r])
            acc += w[k] * (lo + td * (hi - lo))
        out[p] = acc
    return out


@dataclass(frozen=True, eq=False)
class OcrTable:
    """A cone's OCR tabulated on a regular (effective depth, r_sad) grid for fast lookup.

    Attributes
    ----------
    values : ndarray, shape (n_depth, n_r)
        ``OCR(r_sad = i_r * dr_mm, d_eff = i_d * dd_mm)``.
    dr_mm, dd_mm : float
        Grid steps in radius (SAD plane) and in effective depth (mm). Lookups clamp to the
        grid's ends.
    """

    values: NDArray[np.float64]
    dr_mm: float
    dd_mm: float

    @classmethod
    def build(cls, beam_data: BeamData, cone_mm: float, *, r_max_mm: float,
              d_max_mm: float = 500.0, dr_mm: float = 0.02, dd_mm: float = 5.0) -> OcrTable:
        """Tabulate ``beam_data.ocr`` for a cone up to ``r_max_mm`` and ``d_max_mm``.
        Linear interpolation at 0.02 mm x 5 mm is within 1e-4 of the model."""
        r = np.arange(0.0, r_max_mm + dr_mm, dr_mm)
        d = np.arange(0.0, d_max_mm + dd_mm, dd_mm)
        return cls(beam_data.ocr(r[None, :], d[:, None], cone_mm), float(dr_mm), float(dd_mm))

    def mean_shifted(self, lateral_mm: NDArray[np.float64], scale: NDArray[np.float64],
                     eff_depth_mm: NDArray[np.float64], offsets_mm: NDArray[np.float64],
                     weights: NDArray[np.float64]) -> NDArray[np.float64]:
        """Weighted mean OCR of points over axis offsets (bilinear lookups, numba).

        Parameters
        ----------
        lateral_mm : ndarray, shape (M, 2)
            Points' (u, v) from the planned axis at their depth (mm).
        scale : ndarray, shape (M,)
            ``SAD / z`` of each point (projects lateral mm to the SAD plane).
        eff_depth_mm : ndarray, shape (M,)
            Effective depths (mm).
        offsets_mm : ndarray, shape (K, 2)
            Axis offsets (mm, same lateral axes).
        weights : ndarray, shape (K,)
            Their weights (sum 1).

        Returns
        -------
        ndarray, shape (M,)
            ``sum_k w_k OCR(|lateral - offset_k| * scale, d_eff)``.
        """
        return _shifted_ocr(self.values, self.dr_mm, self.dd_mm,
                            np.ascontiguousarray(lateral_mm, dtype=np.float64),
                            np.ascontiguousarray(scale, dtype=np.float64),
                            np.ascontiguousarray(eff_depth_mm, dtype=np.float64),
                            np.ascontiguousarray(offsets_mm, dtype=np.float64),
                            np.ascontiguousarray(weights, dtype=np.float64))


DEFAULT_BEAM_DATA = BeamData()
"""The default cone beam data (module docstring gives each number's source)."""
