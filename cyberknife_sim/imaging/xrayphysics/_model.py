"""Live X-ray physics of one view: per-material areal densities → 16-bit detector counts.

Per pixel (see ``docs/xray_physics.md`` for every number and its source):

1. Photons per energy bin ``N(E) = Φ_Ω(E; α) · mAs · ΔΩ``: spekpy's tube output per
   steradian at the pixel's angle α along the anode–cathode axis (heel effect; spectra at a
   few α, interpolated linearly), times the pixel's solid angle ``ΔΩ = a cos θ / r²``
   (inverse square and obliquity; ``a`` pixel area, ``r`` source distance, ``θ`` incidence).
2. Detected energy (energy-integrating CsI:Tl): ``D = Σ_E N(E) η(E) E T(E)`` with
   ``T(E) = exp(−Σ_m (μ/ρ)_m(E) A_m)`` (beam hardening follows) and its second moment
   ``M = Σ_E N η E² T``, summed per pixel by a numba kernel.
3. Scatter ``S`` (a wide blur of ``D · L``, scaled to a scatter fraction in the center); an
   optional grid scales the primary and the scatter by their transmissions.
4. Quantum noise as a compound Poisson: ``E_eff · Poisson(D / E_eff)`` with
   ``E_eff = M / D`` (mean and variance of the energy-integrated signal exact, Swank factor
   included); then the scintillator blur, lag, gain and offset maps, electronic noise,
   rounding and 16-bit clipping, defective pixels.

Calibration as a clinic does it: dark and flood frames (means of N frames of this same
model), a defect map from them, and ``−ln((I − dark)/(flood − dark))`` with defects replaced
by a median of their neighbours. Beam hardening and scatter remain after it (intended).
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...errors import InputError
from ...scene._livexray import LiveXraySettings
from ...truth import MATERIALS
from .._geometry import ViewGeometry
from ._attenuation import COMPOSITIONS, DENSITY_G_PER_CM3, attenuation_table
from ._detector import (
    COUNT_MAX,
    blur,
    csi_absorption_efficiency,
    defect_plan,
    detector_maps,
    gaussian_kernel,
    read_out,
    replace_defects_planned,
    scatter_signal,
)
from ._spectral import build_table, moments_exact, moments_table
from ._spectrum import rebin_weights, tube_spectrum

__all__ = ["LiveXrayPhysics"]

_CAL_STREAM = 0x63616C  # "cal": calibration frames' stream, from the detector seed


@numba.njit(parallel=True, cache=True)
def _log_ratio(counts, dark, open_counts, mas_ratio, out):  # pragma: no cover
    """``out = −ln(max(I − dark, 0.5) / open · mas_ratio)`` per pixel (float64; the same
    operations, in the same order, as the numpy expression it replaces)."""
    rows, cols = out.shape
    for r in numba.prange(rows):
        for c in range(cols):
            num = max(np.float64(counts[r, c]) - dark[r, c], 0.5)
            out[r, c] = -np.log(num / open_counts[r, c] * mas_ratio)


_POISSON_MAX_MEAN = 400.0  # above: Gaussian with the Poisson mean and variance (skewness < 0.05)


@numba.njit(parallel=True, cache=True)
def _effective_energy_and_scatter_source(m1, m2, log_open, e_default, e_eff,
                                         source):  # pragma: no cover
    """Per pixel: ``E_eff = m2 / m1`` (``e_default`` where m1 = 0) and the scatter source
    ``m1 · L`` with ``L = max(0, ln(open / m1))``, in one pass (parallel over rows)."""
    rows, cols = m1.shape
    for r in numba.prange(rows):
        for c in range(cols):
            p = m1[r, c]
            if p > 0.0:
                e_eff[r, c] = m2[r, c] / p
                li = log_open[r, c] - np.log(p)
                source[r, c] = p * li if li > 0.0 else 0.0
            else:
                e_eff[r, c] = e_default
                source[r, c] = 0.0


@numba.njit(parallel=True, cache=True)
def _gaussian_quanta(mean_kev, e_eff, z, n, quanta):  # pragma: no cover
    """Per pixel: photons ``n = mean / E_eff`` and ``n + sqrt(n) · z``; returns how many
    pixels expect fewer than :data:`_POISSON_MAX_MEAN` photons (parallel over rows)."""
    rows, cols = n.shape
    n_small = np.zeros(rows, np.int64)
    for r in numba.prange(rows):
        k = 0
        for c in range(cols):
            v = mean_kev[r, c] / e_eff[r, c]
            n[r, c] = v
            quanta[r, c] = v + np.sqrt(v) * np.float64(z[r, c])
            if v < _POISSON_MAX_MEAN:
                k += 1
        n_small[r] = k
    return n_small.sum()


def _compound_poisson(mean_kev: NDArray[np.float64], e_eff: NDArray[np.float64],
                      rng: np.random.Generator) -> NDArray[np.float64]:
    """Energy-integrated quantum noise: ``E_eff · Poisson(mean / E_eff)`` per pixel (keV).

    Mean and variance are those of the polyenergetic compound Poisson signal when
    ``E_eff = Σ N E² / Σ N E``. Pixels expecting more than :data:`_POISSON_MAX_MEAN` photons
    draw the Gaussian of the same mean and variance (four times faster; the Poisson's skewness
    there is below 0.05).
    """
    n = np.empty(mean_kev.shape)
    quanta = np.empty(mean_kev.shape)
    z = rng.standard_normal(n.shape, dtype=np.float32)
    if _gaussian_quanta(mean_kev, e_eff, z, n, quanta):
        small = n < _POISSON_MAX_MEAN
        quanta[small] = rng.poisson(n[small])
    quanta *= e_eff
    return quanta


class LiveXrayPhysics:
    """Tube, patient attenuation and flat-panel detector of one view (module docstring).

    Parameters
    ----------
    settings : LiveXraySettings
        Technique, spectrum and detector physics.
    view : ViewGeometry
        Source and detector of the view (room mm); images have shape ``view.shape``.
    detector_seed : int
        Identity of the detector: seeds its gain, offset and defect maps and its
        calibration frames (the same every frame and every exposure rng).

    Attributes
    ----------
    maps : DetectorMaps
        The detector's fixed gain, offset and defect maps.
    solid_angle_sr : ndarray, shape (rows, cols)
        Solid angle of each pixel seen from the focal spot (sr): ``a cos θ / r²``.
    tan_alpha : ndarray, shape (rows, cols)
        Tangent of each pixel's angle from the central axis along the anode–cathode axis
        (positive toward the cathode).
    energies_kev : ndarray, shape (n_bins,)
        Representative energy of each spectral bin (keV).
    """

    def __init__(self, settings: LiveXraySettings, view: ViewGeometry, *,
                 detector_seed: int) -> None:
        if not isinstance(settings, LiveXraySettings):
            raise TypeError(f"settings must be LiveXraySettings (got {type(settings).__name__})")
        if not isinstance(view, ViewGeometry):
            raise TypeError(f"view must be a ViewGeometry (got {type(view).__name__})")
        if isinstance(detector_seed, bool) or not isinstance(detector_seed, (int, np.integer)):
            raise TypeError(f"detector_seed must be an int (got {detector_seed!r})")
        self.settings = settings
        self.view = view
        self.detector_seed = int(detector_seed)
        self.shape = view.shape
        self.pixel_area_mm2 = view.pixel_spacing_mm ** 2
        self._geometry()
        self._spectrum()
        s = settings
        self.maps = detector_maps(self.shape, detector_seed=self.detector_seed,
                                  gain_sigma=s.gain_sigma, offset_counts=s.offset_counts,
                                  offset_sigma_counts=s.offset_sigma_counts,
                                  dead_fraction=s.dead_pixel_fraction,
                                  dead_mode=s.dead_pixel_mode)
        self._psf = gaussian_kernel(s.detector_blur_sigma_mm / view.pixel_spacing_mm)
        self._gain_counts_per_kev = (s.gain_counts_per_kev_mm2 / self.pixel_area_mm2
                                     * self.maps.gain)
        self._defect_flat = np.flatnonzero(self.maps.defect)
        open_kev = self._moments(np.zeros((len(MATERIALS), *self.shape), np.float32))[0]
        self._log_open_primary = np.log(np.maximum(open_kev, 1e-300))
        self._previous_kev: NDArray[np.float64] | None = None
        self._dark: NDArray[np.float64] | None = None
        self._flood: NDArray[np.float64] | None = None
        self._defect_found: NDArray[np.bool_] | None = None
        self._open_counts: NDArray[np.float64] | None = None
        self._defect_plan: tuple | None = None

    # --- set-up -----------------------------------------------------------------------------
    def _geometry(self) -> None:
        """Per pixel: solid angle (sr) and ``tan α`` along the anode–cathode axis."""
        v = self.view
        rows, cols = self.shape
        pix = v.pixel_to_room(np.arange(cols)[None, :], np.arange(rows)[:, None])
        d = pix - v.source_room
        r = np.linalg.norm(d, axis=-1)
        cos_inc = np.abs(d @ v.normal_room) / r
        self.solid_angle_sr = self.pixel_area_mm2 * cos_inc / r ** 2
        axis = v.central_axis_room
        toward_cathode = np.array([0.0, 0.0, -1.0 if self.settings.anode_side == "superior"
                                   else 1.0])
        ac = toward_cathode - (toward_cathode @ axis) * axis
        if np.linalg.norm(ac) < 1e-6:
            raise InputError(f"view {v.name}: the anode-cathode axis (room z) is along the "
                             "beam; the heel effect is undefined")
        ac /= np.linalg.norm(ac)
        self.tan_alpha = (d @ ac) / (d @ axis)

    def _spectrum(self) -> None:
        s = self.settings
        t = self.tan_alpha
        if s.heel_effect:
            lo, hi = float(t.min()), float(t.max())
            pad = 1e-6 + 1e-3 * (hi - lo)
            nodes = tuple(np.linspace(lo - pad, hi + pad, s.heel_nodes))
        else:
            nodes = (0.0,)
        spec = tube_spectrum(kvp=s.kvp, anode_angle_deg=s.anode_angle_deg,
                             filtration_al_mm=s.filtration_al_mm,
                             filtration_cu_mm=s.filtration_cu_mm, tan_alpha=nodes)
        phi = spec.photons_per_sr_per_mas  # (n_nodes, n_fine)
        if s.spectrum == "mono":
            energies = np.array([s.mono_kev])
            eta = csi_absorption_efficiency(energies, thickness_mm=s.csi_thickness_mm,
                                            packing_fraction=s.csi_packing_fraction)
            n = phi.sum(axis=1)[:, None]  # the same photon output, all at mono_kev
            w1, w2 = n * eta * energies, n * eta * energies ** 2
        else:
            e = spec.energies_kev
            eta = csi_absorption_efficiency(e, thickness_mm=s.csi_thickness_mm,
                                            packing_fraction=s.csi_packing_fraction)
            center = int(np.argmin(np.abs(spec.tan_alpha)))
            energies, index = rebin_weights(e, phi[center] * eta * e, s.energy_bin_kev)
            keep = index >= 0
            w1 = np.zeros((len(spec.tan_alpha), energies.size))
            w2 = np.zeros_like(w1)
            for i in range(len(spec.tan_alpha)):
                w1[i] = np.bincount(index[keep], (phi[i] * eta * e)[keep], energies.size)
                w2[i] = np.bincount(index[keep], (phi[i] * eta * e * e)[keep], energies.size)
        node_t = spec.tan_alpha
        if w1.shape[0] == 1:  # one node: duplicate so the kernel can always read node k + 1
            w1, w2 = np.vstack([w1, w1]), np.vstack([w2, w2])
            node_t = np.array([0.0, 1.0])
        k = np.clip(np.searchsorted(node_t, t, side="right") - 1, 0, len(node_t) - 2)
        f = np.clip((t - node_t[k]) / (node_t[k + 1] - node_t[k]), 0.0, 1.0)
        if not s.heel_effect:
            f = np.zeros_like(f)
        self.energies_kev = energies
        self._w1 = np.ascontiguousarray(w1, dtype=np.float32)
        self._w2 = np.ascontiguousarray(w2, dtype=np.float32)
        self._mu = np.ascontiguousarray(attenuation_table(MATERIALS, energies), np.float32)
        self._node = np.ascontiguousarray(k, dtype=np.int32)
        self._frac = np.ascontiguousarray(f, dtype=np.float32)
        self._scale = self.solid_angle_sr * s.mas
        self._table = build_table(self._mu, w1, w2) if s.spectral_sum == "lut" else None
        center_pix = (self.shape[0] // 2, self.shape[1] // 2)
        kc, fc = k[center_pix], f[center_pix]
        self._center_w1 = w1[kc] + fc * (w1[kc + 1] - w1[kc])

    # --- inputs -----------------------------------------------------------------------------
    def _check_areal(self, areal_g_per_cm2: ArrayLike) -> NDArray[np.float32]:
        a = np.asarray(areal_g_per_cm2)
        want = (len(MATERIALS), *self.shape)
        if a.shape != want:
            raise InputError(f"areal_g_per_cm2: expected shape {want} (materials "
                             f"{', '.join(MATERIALS)}; rows, cols of view "
                             f"{self.view.name}), got {a.shape}")
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise InputError(f"areal_g_per_cm2: expected real numbers, got dtype {a.dtype}")
        a = np.ascontiguousarray(a, dtype=np.float32)
        if not np.all(np.isfinite(a)):
            raise InputError("areal_g_per_cm2: holds NaN or infinite values")
        if a.min() < 0:
            raise InputError(f"areal_g_per_cm2: must be non-negative (min {a.min():.3g} g/cm^2)")
        return a

    # --- physics ----------------------------------------------------------------------------
    def _moments(self, areal: NDArray[np.float32], mas_scale: float = 1.0) -> tuple:
        out1 = np.empty(self.shape, np.float64)
        out2 = np.empty(self.shape, np.float64)
        args = (self._mu, self._w1, self._w2, self._node, self._frac, self._scale * mas_scale,
                out1, out2)
        if self._table is None:
            moments_exact(areal, *args)
        else:
            moments_table(areal, self._table, *args)
        return out1, out2

    def _deposited(self, areal: NDArray[np.float32], mas_scale: float = 1.0) -> tuple:
        """Mean deposited energy per pixel (keV) and its effective energy per photon (keV)."""
        s = self.settings
        m1, m2 = self._moments(areal, mas_scale)
        e_eff = np.empty_like(m1)
        source = np.empty_like(m1)
        _effective_energy_and_scatter_source(m1, m2, self._log_open_primary + np.log(mas_scale),
                                             float(self.energies_kev.mean()), e_eff, source)
        tp = s.grid_primary_transmission if s.grid else 1.0
        ts = s.grid_scatter_transmission if s.grid else 1.0
        if s.scatter_fraction > 0:
            scatter = scatter_signal(m1, source, scatter_fraction=s.scatter_fraction,
                                     sigma_px=s.scatter_kernel_sigma_mm
                                     / self.view.pixel_spacing_mm)
            total = m1 * tp + scatter * ts if s.grid else m1 + scatter
        else:
            total = m1 * tp if s.grid else m1
        return total, e_eff

    def expected_signal_kev(self, areal_g_per_cm2: ArrayLike) -> NDArray[np.float64]:
        """Mean energy deposited per pixel (keV), scatter and blur included; no noise, no lag.

        Parameters
        ----------
        areal_g_per_cm2 : array-like, shape (4, rows, cols)
            Areal density of each material of :data:`~cyberknife_sim.truth.MATERIALS` along
            the ray to each pixel center (g/cm²).
        """
        mean, _ = self._deposited(self._check_areal(areal_g_per_cm2))
        return blur(mean, self._psf)

    def expected_counts(self, areal_g_per_cm2: ArrayLike) -> NDArray[np.float64]:
        """Mean detector reading (counts, float64, not clipped): gain and offset maps applied,
        defective pixels at their fixed reading; no noise, no lag.

        Parameters
        ----------
        areal_g_per_cm2 : array-like, shape (4, rows, cols)
            Areal densities (g/cm²), materials in :data:`~cyberknife_sim.truth.MATERIALS`
            order.

        Returns
        -------
        ndarray, shape (rows, cols), float64
        """
        counts = (self.maps.offset_counts
                  + self._gain_counts_per_kev * self.expected_signal_kev(areal_g_per_cm2))
        counts.flat[self._defect_flat] = self.maps.defect_counts
        return counts

    def _frame(self, mean_kev: NDArray | None, e_eff: NDArray | None,
               rng: np.random.Generator, previous: NDArray | None) -> tuple:
        """One read-out (uint16) and the blurred signal it leaves for the next frame's lag."""
        s = self.settings
        if mean_kev is None:
            signal = np.zeros(self.shape)
        elif s.quantum_noise:
            signal = _compound_poisson(mean_kev, e_eff, rng)
        else:
            signal = mean_kev
        signal = blur(signal, self._psf)
        sigma = s.electronic_noise_counts
        noise = rng.standard_normal(self.shape, dtype=np.float32) if sigma > 0 else None
        counts = read_out(signal, previous, lag=s.lag_fraction,
                          offset_counts=self.maps.offset_counts,
                          gain_counts_per_kev=self._gain_counts_per_kev, noise=noise,
                          sigma_counts=sigma)
        counts.flat[self._defect_flat] = self.maps.defect_counts
        return counts, signal

    @staticmethod
    def _check_rng(rng: object) -> None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator (got {type(rng).__name__})")

    def acquire(self, areal_g_per_cm2: ArrayLike, rng: np.random.Generator) -> NDArray:
        """One exposed frame: noise, blur, lag (the previous frame is kept as state).

        Parameters
        ----------
        areal_g_per_cm2 : array-like, shape (4, rows, cols)
            Areal densities (g/cm²), materials in :data:`~cyberknife_sim.truth.MATERIALS`
            order.
        rng : numpy.random.Generator
            Source of the exposure's randomness (same seed and lag state → same image).

        Returns
        -------
        ndarray, shape (rows, cols), uint16
            Detector counts.
        """
        self._check_rng(rng)
        mean, e_eff = self._deposited(self._check_areal(areal_g_per_cm2))
        counts, self._previous_kev = self._frame(mean, e_eff, rng, self._previous_kev)
        return counts

    def acquire_dark(self, rng: np.random.Generator) -> NDArray[np.uint16]:
        """One frame with the beam off (offset, electronic noise, lag of the previous frame)."""
        self._check_rng(rng)
        counts, self._previous_kev = self._frame(None, None, rng, self._previous_kev)
        return counts

    def reset_lag(self) -> None:
        """Forget the previous frame (a detector idle for long: no charge left to release)."""
        self._previous_kev = None

    # --- calibration and log transform ------------------------------------------------------
    def calibrate(self, rng: np.random.Generator | None = None) -> None:
        """Acquire dark and flood (open-field) calibration frames and find the defects.

        Each calibration image is the mean of ``calibration_frames`` frames of this model;
        the flood series is read in steady state (its first frame, with no lag history, is
        discarded). Defects: pixels that do not respond (``flood − dark`` below 0.1 × its median:
        a dead pixel reads the same with the beam on and off) or that saturate.
        The live lag state is not touched.

        Parameters
        ----------
        rng : numpy.random.Generator, optional
            Calibration noise; default: a stream of the detector seed.
        """
        s = self.settings
        if rng is None:
            rng = np.random.default_rng([self.detector_seed, _CAL_STREAM])
        self._check_rng(rng)
        n = s.calibration_frames
        dark = np.zeros(self.shape)
        for _ in range(n):
            dark += self._frame(None, None, rng, None)[0]
        dark /= n
        flood_scale = (s.flood_mas or s.mas) / s.mas
        zeros = np.zeros((len(MATERIALS), *self.shape), np.float32)
        mean, e_eff = self._deposited(zeros, flood_scale)
        flood = np.zeros(self.shape)
        previous = None
        for i in range(n + 1):
            frame, previous = self._frame(mean, e_eff, rng, previous)
            if i:
                flood += frame
        flood /= n
        diff = flood - dark
        med = float(np.median(diff))
        if med < 10.0:
            raise InputError("calibration: the flood frames are no brighter than the dark "
                             "frames (saturated or no signal); lower flood_mas or the gain")
        saturated = (flood >= COUNT_MAX - 1) | (dark >= COUNT_MAX - 1)
        defect = (diff < 0.1 * med) | saturated
        if defect.mean() > 0.5:
            raise InputError(f"calibration: {defect.mean():.0%} of the pixels are saturated or "
                             "dead on the flood; lower flood_mas or the gain")
        self._defect_found = defect
        self._dark, self._flood = dark, flood
        self._open_counts = None
        self._defect_plan = None

    @property
    def defect_map(self) -> NDArray[np.bool_]:
        """Defective pixels as found by :meth:`calibrate` (calibrates first if needed)."""
        if self._defect_found is None:
            self.calibrate()
        return self._defect_found

    def to_line_integrals(self, counts: ArrayLike) -> NDArray[np.float32]:
        """Clinic log transform ``−ln((I − dark) / (flood − dark) · flood_mas / mas)``.

        Uses the dark/flood calibration (acquired on first use with the detector seed's
        calibration stream, or by an earlier :meth:`calibrate`); defective pixels are replaced
        by the median of their valid neighbours. Scatter and beam hardening are not corrected.

        Parameters
        ----------
        counts : array-like, shape (rows, cols)
            Detector counts (any real dtype).

        Returns
        -------
        ndarray, shape (rows, cols), float32
            Estimated line integrals (dimensionless).
        """
        i = np.asarray(counts)
        if i.shape != self.shape:
            raise InputError(f"counts: expected shape {self.shape} for view {self.view.name}, "
                             f"got {i.shape}")
        if not (np.issubdtype(i.dtype, np.integer) or np.all(np.isfinite(i))):
            raise InputError("counts: holds NaN or infinite values")
        defect = self.defect_map
        s = self.settings
        if self._open_counts is None:  # flood − dark, fixed after calibration
            self._open_counts = np.maximum(self._flood - self._dark, 0.5)
        li = np.empty(self.shape)
        _log_ratio(i, self._dark, self._open_counts, (s.flood_mas or s.mas) / s.mas, li)
        if self._defect_plan is None:
            self._defect_plan = defect_plan(defect)
        return replace_defects_planned(li, self._defect_plan, defect).astype(np.float32)

    # --- helpers ----------------------------------------------------------------------------
    def effective_mu_per_mm(self, material: str, thickness_mm: float, *,
                            density_g_per_cm3: float | None = None) -> float:
        """Effective attenuation ``−ln(D/D0)/t`` of a uniform slab, detector-weighted spectrum
        at the panel center, no scatter (1/mm).

        Parameters
        ----------
        material : str
            A key of :data:`~._attenuation.COMPOSITIONS` (truth materials, water, aluminium,
            copper, ...).
        thickness_mm : float
            Slab thickness (mm, > 0).
        density_g_per_cm3 : float, optional
            Density (g/cm³); default the material's nominal density.
        """
        if material not in COMPOSITIONS:
            raise ValueError(f"unknown material {material!r}; allowed: {sorted(COMPOSITIONS)}")
        if not (np.isfinite(thickness_mm) and thickness_mm > 0):
            raise ValueError(f"thickness_mm must be > 0 (got {thickness_mm})")
        rho = DENSITY_G_PER_CM3[material] if density_g_per_cm3 is None else density_g_per_cm3
        mu = attenuation_table((material,), self.energies_kev)[:, 0]
        w = self._center_w1
        t = float(np.sum(w * np.exp(-mu * rho * thickness_mm / 10.0)) / np.sum(w))
        return -np.log(t) / thickness_mm
