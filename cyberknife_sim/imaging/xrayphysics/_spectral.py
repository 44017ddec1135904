"""Per-pixel polyenergetic sums ``Σ_E w(E) exp(−Σ_m (μ/ρ)_m(E) A_m)``: exact, or from a table.

``exact``: the sum over all energy bins for every pixel (numba, parallel over rows).

``lut`` (fast, default): the four truth materials' ``μ/ρ(E)`` lie in the span of three of
them: lung = 1.078 soft tissue − 0.073 adipose − 0.0035 cortical bone to within 1e-5
relative over 15–150 keV (no absorption edges there; ICRU-44 compositions), so a pixel's
transmission depends on three basis areal densities ``B = M @ A`` only. For each heel node
``ln Σ_E w T + μ̄ · B`` (the log less its linear, open-beam part, which is added back
exactly) is tabulated on a grid regular in ``g = sign(B) sqrt(|B|)`` (fine near 0, where the
log curves most: its curvature is the variance of μ over the transmitted spectrum, the beam
hardening) and interpolated linearly in all four dimensions (three of ``g``, one along the
anode–cathode axis). Error against ``exact``: up to 0.15 % where ``B`` is large, 0.03 %
typical. Pixels outside the table fall back to the exact sum. Tables are cached on their
inputs (the two views of a symmetric pair share one).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

__all__ = ["SpectralTable", "build_table", "moments_exact", "moments_table"]

_BASIS = (0, 1, 3)  # soft_tissue, adipose, cortical_bone (indices into MATERIALS)
# grid of basis areal densities (g/cm²): (low, high, step of g = sign(B) sqrt(|B|)); the
# grid is regular in g, so it is fine near B = 0 where ln Σ w T curves most (the unhardened
# spectrum) and coarse where the beam has hardened
_GRID = ((-0.5, 80.0, 0.1), (-3.0, 40.0, 0.15), (-0.5, 24.0, 0.1))


def _g(b):
    return np.sign(b) * np.sqrt(np.abs(b))


@numba.njit(fastmath=True, cache=True)
def _pixel_exact(areal, r, c, mu, w1, w2, k, f):  # pragma: no cover
    n_m = areal.shape[0]
    s1 = 0.0
    s2 = 0.0
    for e in range(mu.shape[0]):
        x = 0.0
        for m in range(n_m):
            x += mu[e, m] * areal[m, r, c]
        t = np.exp(-x)
        s1 += (w1[k, e] + f * (w1[k + 1, e] - w1[k, e])) * t
        s2 += (w2[k, e] + f * (w2[k + 1, e] - w2[k, e])) * t
    return s1, s2


@numba.njit(parallel=True, fastmath=True, cache=True)
def moments_exact(areal, mu, w1, w2, node, frac, scale, out1, out2):  # pragma: no cover
    """Exact sums into ``out1``/``out2`` (rows, cols); see the module docstring.

    ``areal`` (n_m, rows, cols) g/cm²; ``mu`` (n_e, n_m) cm²/g; ``w1``/``w2`` (n_nodes, n_e);
    ``node`` (rows, cols) int32 and ``frac`` float32: heel node and fraction toward the next;
    ``scale`` (rows, cols): factor per pixel (solid angle × mAs).
    """
    _, rows, cols = areal.shape
    for r in numba.prange(rows):
        for c in range(cols):
            s1, s2 = _pixel_exact(areal, r, c, mu, w1, w2, node[r, c], frac[r, c])
            out1[r, c] = scale[r, c] * s1
            out2[r, c] = scale[r, c] * s2


@dataclass(frozen=True, eq=False)
class SpectralTable:
    """``ln`` of the two moments on the basis grid, shape (n_nodes, n0, n1, n2, 2), float32,
    less its linear part ``−mean_mu[q] · B`` (``mean_mu`` (2, 3), cm²/g), with the basis
    matrix ``(3, n_m)`` and, per axis, the grid's first ``g`` (``low``), its
    step and size, in ``g = sign(B) sqrt(|B|)`` (B in g/cm²)."""

    log_moments: NDArray[np.float32]
    basis_from_areal: NDArray[np.float64]
    mean_mu: NDArray[np.float64]
    low: NDArray[np.float64]
    step: NDArray[np.float64]
    size: NDArray[np.int64]


_TABLE_CACHE: dict[bytes, SpectralTable] = {}
_TABLE_CACHE_SIZE = 4


def build_table(mu: NDArray, w1: NDArray, w2: NDArray) -> SpectralTable:
    """Tabulate ``ln Σ_E w T`` over the basis grid for every heel node (cached on the inputs).

    Parameters
    ----------
    mu : ndarray, shape (n_e, 4)
        ``μ/ρ`` of the truth materials at the bin energies (cm²/g).
    w1, w2 : ndarray, shape (n_nodes, n_e)
        Weights of the two moments at each heel node.
    """
    arrays = [np.ascontiguousarray(x, dtype=np.float64) for x in (mu, w1, w2)]
    key = hashlib.sha1(b"".join(x.tobytes() + str(x.shape).encode() for x in arrays)).digest()
    if key not in _TABLE_CACHE:
        while len(_TABLE_CACHE) >= _TABLE_CACHE_SIZE:
            _TABLE_CACHE.pop(next(iter(_TABLE_CACHE)))
        _TABLE_CACHE[key] = _build_table(*arrays)
    return _TABLE_CACHE[key]


def _build_table(mu: NDArray, w1: NDArray, w2: NDArray) -> SpectralTable:
    basis_mu = mu[:, _BASIS]
    # each material as a combination of the basis, fitted in relative error
    m = np.zeros((3, mu.shape[1]))
    for j in range(mu.shape[1]):
        coef, *_ = np.linalg.lstsq(basis_mu / mu[:, [j]], np.ones(mu.shape[0]), rcond=None)
        m[:, j] = coef
    g_axes = [np.arange(_g(lo), _g(hi) + st, st) for lo, hi, st in _GRID]
    axes = [np.sign(g) * g * g for g in g_axes]
    g0, g1, g2 = np.meshgrid(*axes, indexing="ij")
    b = np.stack([g0.ravel(), g1.ravel(), g2.ravel()], axis=1)  # (n_grid, 3)
    t = np.exp(-(b @ basis_mu.T))  # (n_grid, n_e)
    shape = tuple(a.size for a in axes)
    mid = w1.shape[0] // 2
    # mean μ of each moment's open-beam weights: the linear part of ln Σ w T, added back
    # exactly at lookup so that the table holds only the smooth beam-hardening remainder
    mean_mu = np.stack([w[mid] @ basis_mu / w[mid].sum() for w in (w1, w2)])  # (2, 3)
    log_m = np.empty((w1.shape[0], *shape, 2), dtype=np.float32)
    for q, w in enumerate((w1, w2)):
        with np.errstate(divide="ignore"):
            lm = np.log(t @ np.asarray(w, np.float64).T) + (b @ mean_mu[q])[:, None]
        log_m[..., q] = lm.T.reshape(-1, *shape)
    return SpectralTable(np.ascontiguousarray(log_m), m, mean_mu,
                         np.array([g[0] for g in g_axes]),
                         np.array([g[2] for g in _GRID]), np.array(shape, dtype=np.int64))


@numba.njit(parallel=True, fastmath=True, cache=True)
def _moments_table(areal, flat, strides, basis, mean_mu, low, inv_step, size, mu, w1, w2, node,
                   frac, scale, out1, out2):  # pragma: no cover
    _, rows, cols = areal.shape
    stn, st0, st1, st2 = strides[0], strides[1], strides[2], strides[3]
    for r in numba.prange(rows):
        for c in range(cols):
            k = node[r, c]
            f = frac[r, c]
            a0, a1, a2, a3 = areal[0, r, c], areal[1, r, c], areal[2, r, c], areal[3, r, c]
            b0 = basis[0, 0] * a0 + basis[0, 1] * a1 + basis[0, 2] * a2 + basis[0, 3] * a3
            b1 = basis[1, 0] * a0 + basis[1, 1] * a1 + basis[1, 2] * a2 + basis[1, 3] * a3
            b2 = basis[2, 0] * a0 + basis[2, 1] * a1 + basis[2, 2] * a2 + basis[2, 3] * a3
            u0 = (np.copysign(np.sqrt(abs(b0)), b0) - low[0]) * inv_step[0]
            u1 = (np.copysign(np.sqrt(abs(b1)), b1) - low[1]) * inv_step[1]
            u2 = (np.copysign(np.sqrt(abs(b2)), b2) - low[2]) * inv_step[2]
            i0, i1, i2 = int(np.floor(u0)), int(np.floor(u1)), int(np.floor(u2))
            if (i0 < 0 or i0 >= size[0] - 1 or i1 < 0 or i1 >= size[1] - 1
                    or i2 < 0 or i2 >= size[2] - 1):
                s1, s2 = _pixel_exact(areal, r, c, mu, w1, w2, k, f)
                out1[r, c] = scale[r, c] * s1
                out2[r, c] = scale[r, c] * s2
                continue
            f0, f1, f2 = u0 - i0, u1 - i1, u2 - i2
            base = k * stn + i0 * st0 + i1 * st1 + i2 * st2
            acc1 = 0.0
            acc2 = 0.0
            for dn in range(2):
                wn = f if dn else 1.0 - f
                for d0 in range(2):
                    w0 = wn * (f0 if d0 else 1.0 - f0)
                    for d1 in range(2):
                        w01 = w0 * (f1 if d1 else 1.0 - f1)
                        o = base + dn * stn + d0 * st0 + d1 * st1
                        wa = w01 * (1.0 - f2)
                        wb = w01 * f2
                        acc1 += wa * flat[o] + wb * flat[o + st2]
                        acc2 += wa * flat[o + 1] + wb * flat[o + st2 + 1]
            acc1 -= mean_mu[0, 0] * b0 + mean_mu[0, 1] * b1 + mean_mu[0, 2] * b2
            acc2 -= mean_mu[1, 0] * b0 + mean_mu[1, 1] * b1 + mean_mu[1, 2] * b2
            out1[r, c] = scale[r, c] * np.exp(acc1)
            out2[r, c] = scale[r, c] * np.exp(acc2)


def moments_table(areal, table: SpectralTable, mu, w1, w2, node, frac, scale, out1, out2):
    """Table sums into ``out1``/``out2`` (same arguments as :func:`moments_exact`)."""
    lut = table.log_moments
    strides = np.array(lut.strides[:4], dtype=np.int64) // lut.itemsize
    _moments_table(areal, lut.ravel(), strides, table.basis_from_areal, table.mean_mu,
                   table.low, 1.0 / table.step, table.size, mu, w1, w2, node, frac, scale,
                   out1, out2)
