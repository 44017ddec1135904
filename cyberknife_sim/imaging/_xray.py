"""Live kV images: from line integrals to noisy 16-bit detector counts, and back.

Model (per pixel, in this order; all numbers from :class:`~cyberknife_sim.scene.XraySettings`):

1. Photon budget ``N0 = fluence · (kV/120)² · mAs · pixel area`` (photons per pixel in an
   open field; fluence per mAs at 120 kV, the output of a tube scaling roughly as kV²).
   The field is taken as flat (no heel effect, no inverse-square fall-off across the panel).
2. Primary ``P = N0 · exp(−L)`` with ``L = ∫μ dl``.
3. Scatter ``S = κ · G_scatter * (P · L)``: photons scattered along the path (∝ L) that reach
   the detector widely spread (Gaussian, ``scatter_kernel_sigma_mm``). ``κ`` is set per
   image so that ``S / (P + S)`` equals ``scatter_fraction`` over the central 5 % of the
   detector; an open field has no scatter.
4. Quantum noise: detected photons ``~ Poisson(P + S)``.
5. Detector blur (light spread in the scintillator): Gaussian PSF
   ``detector_blur_sigma_mm`` applied to the detected photons (so it also correlates the
   noise).
6. Counts ``= gain · blurred photons + Normal(0, electronic_noise_counts)``, rounded and
   clipped to ``[0, 65535]`` (uint16; a too-bright open field saturates).

:meth:`XrayModel.to_line_integrals` inverts the ideal part, ``L̂ = −ln(I / (gain · N0))``;
it does not remove scatter or blur.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError
from ..scene import XraySettings

__all__ = ["XrayModel"]

_REFERENCE_KV = 120.0
_COUNT_MAX = 65535


def _gaussian_kernel(sigma_px: float) -> NDArray[np.float64]:
    """Normalized 1-D Gaussian kernel, radius ``ceil(4 σ)`` (``[1.0]`` for σ = 0)."""
    if sigma_px <= 0:
        return np.ones(1)
    radius = int(np.ceil(4.0 * sigma_px))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma_px) ** 2)
    return k / k.sum()


def _blur(image: NDArray[np.float64], kernel: NDArray[np.float64]) -> NDArray[np.float64]:
    if kernel.size == 1:
        return image
    return cv2.sepFilter2D(image, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT)


class XrayModel:
    """Detector and tube model of the live images (see the module docstring).

    Parameters
    ----------
    settings : XraySettings
        Technique (kV, mAs) and detector physics.
    pixel_spacing_mm : float
        Pitch of the (binned) pixels the images are rendered at (mm).
    """

    def __init__(self, settings: XraySettings, *, pixel_spacing_mm: float) -> None:
        if not (np.isfinite(pixel_spacing_mm) and pixel_spacing_mm > 0):
            raise ValueError(f"pixel_spacing_mm must be > 0 (got {pixel_spacing_mm})")
        self.settings = settings
        self.pixel_spacing_mm = float(pixel_spacing_mm)
        self.psf_kernel = _gaussian_kernel(settings.detector_blur_sigma_mm / pixel_spacing_mm)
        self.scatter_kernel = _gaussian_kernel(settings.scatter_kernel_sigma_mm
                                               / pixel_spacing_mm)  # used when narrow

    @property
    def photons_per_pixel(self) -> float:
        """Open-field photons per pixel ``N0`` (before detection)."""
        s = self.settings
        return (s.photons_per_mas_per_mm2 * (s.kv / _REFERENCE_KV) ** 2 * s.mas
                * self.pixel_spacing_mm ** 2)

    @property
    def open_field_counts(self) -> float:
        """Mean counts of an open (unattenuated) field, ``gain · N0`` (may exceed 65535)."""
        return self.settings.gain_counts_per_photon * self.photons_per_pixel

    def expected_photons(self, line_integrals: ArrayLike) -> NDArray[np.float64]:
        """Mean detected photons per pixel ``P + S`` (before noise and blur)."""
        li = np.asarray(line_integrals, dtype=np.float64)
        if li.ndim != 2 or li.size == 0:
            raise InputError(f"line integrals: expected a non-empty 2-D image, got shape "
                             f"{li.shape}")
        if not np.all(np.isfinite(li)) or li.min() < -1e-3:
            raise InputError("line integrals must be finite and non-negative")
        li = np.maximum(li, 0.0)
        primary = self.photons_per_pixel * np.exp(-li)
        return primary + self._scatter(primary, li)

    def _scatter(self, primary: NDArray[np.float64], li: NDArray[np.float64]) -> NDArray:
        fraction = self.settings.scatter_fraction
        if fraction <= 0:
            return np.zeros_like(primary)
        spread = self._wide_blur(primary * li)
        rows, cols = primary.shape
        hr, hc = max(1, int(round(rows * 0.112))), max(1, int(round(cols * 0.112)))
        center = (slice(rows // 2 - hr, rows // 2 + hr + 1),
                  slice(cols // 2 - hc, cols // 2 + hc + 1))
        p_c, s_c = primary[center].mean(), spread[center].mean()
        if s_c <= 1e-12 * max(p_c, 1e-300):
            return np.zeros_like(primary)
        kappa = fraction / (1.0 - fraction) * p_c / s_c
        return kappa * spread

    def _wide_blur(self, image: NDArray[np.float64]) -> NDArray[np.float64]:
        """Gaussian blur of ``scatter_kernel_sigma_mm``; for wide kernels computed on an
        image downsampled to about 4 pixels per sigma (the result is smooth anyway)."""
        sigma_px = self.settings.scatter_kernel_sigma_mm / self.pixel_spacing_mm
        factor = int(sigma_px // 4)
        if factor < 2:
            return _blur(image, self.scatter_kernel)
        rows, cols = image.shape
        small_shape = (max(1, -(-cols // factor)), max(1, -(-rows // factor)))  # (w, h)
        small = cv2.resize(image, small_shape, interpolation=cv2.INTER_AREA)
        scale = np.array([cols / small_shape[0], rows / small_shape[1]])
        kernel_x = _gaussian_kernel(sigma_px / scale[0])
        kernel_y = _gaussian_kernel(sigma_px / scale[1])
        small = cv2.sepFilter2D(small, cv2.CV_64F, kernel_x, kernel_y,
                                borderType=cv2.BORDER_REFLECT)
        return cv2.resize(small, (cols, rows), interpolation=cv2.INTER_LINEAR)

    def noiseless(self, line_integrals: ArrayLike) -> NDArray[np.float64]:
        """Expected counts (scatter and blur included; no noise, no rounding), float64."""
        return self.settings.gain_counts_per_photon * _blur(
            self.expected_photons(line_integrals), self.psf_kernel)

    def simulate(self, line_integrals: ArrayLike, rng: np.random.Generator) -> NDArray[np.uint16]:
        """One noisy live image.

        Parameters
        ----------
        line_integrals : array-like, shape (rows, cols)
            ∫μ dl per pixel (e.g. a DRR), dimensionless.
        rng : numpy.random.Generator
            Source of all randomness (same seed → identical image).

        Returns
        -------
        ndarray, shape (rows, cols), uint16
            Detector counts.
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator (got {type(rng).__name__})")
        photons = rng.poisson(self.expected_photons(line_integrals)).astype(np.float64)
        counts = self.settings.gain_counts_per_photon * _blur(photons, self.psf_kernel)
        sigma_e = self.settings.electronic_noise_counts
        if sigma_e > 0:
            counts += rng.normal(0.0, sigma_e, size=counts.shape)
        return np.clip(np.rint(counts), 0, _COUNT_MAX).astype(np.uint16)

    def to_line_integrals(self, intensities: ArrayLike) -> NDArray[np.float32]:
        """Log transform ``−ln(I / (gain · N0))`` of counts (counts below 0.5 read as 0.5).

        Parameters
        ----------
        intensities : array-like, shape (rows, cols)
            Detector counts (any numeric dtype).

        Returns
        -------
        ndarray, float32
            Estimated line integrals (scatter and blur not corrected).
        """
        i = np.asarray(intensities, dtype=np.float64)
        if i.ndim != 2 or i.size == 0:
            raise InputError(f"intensities: expected a non-empty 2-D image, got shape {i.shape}")
        return (-np.log(np.maximum(i, 0.5) / self.open_field_counts)).astype(np.float32)
