"""Targeting error and its statistics.

The targeting error at one instant is the perpendicular distance (mm) from the TRUE target
to the ACTUAL beam axis (both in the room frame). Statistics are taken over beam-on time:
each sample carries a weight equal to the beam-on time it stands for (s), so a sample of a
partly beam-on step counts for its fraction only. Per-beam statistics are weighted by the
beam's MU.

Error decomposition (used by the loop, see :mod:`cyberknife_sim.simulation`): the vector from
the true target to the beam axis is the sum of stage error vectors (registration,
correlation, prediction, robot), each projected on the plane perpendicular to the actual
beam. The sum of the projected vectors equals the total error vector exactly, so the
components are additive as vectors; their RMS magnitudes are reported per stage.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "COMPONENTS",
    "beam_statistics",
    "component_statistics",
    "error_statistics",
    "perpendicular",
    "targeting_error_vectors",
    "weighted_percentile",
]

COMPONENTS = ("registration", "correlation", "prediction", "robot")
"""Stages of the error decomposition, in the order of the data flow."""


def _n3(a: ArrayLike, name: str) -> NDArray[np.float64]:
    v = np.asarray(a, dtype=np.float64)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (3,) or (n, 3), got {np.shape(a)}")
    return v


def perpendicular(vectors: ArrayLike, direction: ArrayLike) -> NDArray[np.float64]:
    """Components of vectors perpendicular to (unit-normalized) directions.

    Parameters
    ----------
    vectors : array-like, shape (n, 3)
        Vectors (mm, room).
    direction : array-like, shape (n, 3) or (3,)
        Line directions (room); need not be unit length, must not be zero.

    Returns
    -------
    ndarray, shape (n, 3)
        ``v - (v·u) u`` with ``u = direction / |direction|`` (mm).
    """
    v = _n3(vectors, "vectors")
    d = _n3(direction, "direction")
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    if np.any(norm == 0):
        raise ValueError("direction: zero-length direction")
    u = d / norm
    return v - np.sum(v * u, axis=1, keepdims=True) * u


def targeting_error_vectors(target_room: ArrayLike, beam_source_room: ArrayLike,
                            beam_direction_room: ArrayLike) -> NDArray[np.float64]:
    """Vector from the true target to the nearest point of the beam axis.

    Parameters
    ----------
    target_room : array-like, shape (n, 3)
        True target positions (mm, room).
    beam_source_room : array-like, shape (n, 3)
        A point on each actual beam axis (e.g. the linac source, mm, room).
    beam_direction_room : array-like, shape (n, 3)
        Directions of the actual beam axes (room).

    Returns
    -------
    ndarray, shape (n, 3)
        Error vectors (mm, room), perpendicular to the beam; their norms are the targeting
        errors (equal to :func:`cyberknife_sim.geometry.point_line_distance`).
    """
    t = _n3(target_room, "target_room")
    s = _n3(beam_source_room, "beam_source_room")
    return perpendicular(s - t, beam_direction_room)


def weighted_percentile(values: ArrayLike, weights: ArrayLike, q: float) -> float:
    """Percentile of weighted samples (inverse of the weighted empirical CDF).

    Parameters
    ----------
    values : array-like, shape (n,)
        Samples.
    weights : array-like, shape (n,)
        Non-negative weights (e.g. beam-on seconds); not all zero.
    q : float
        Percentile in [0, 100].

    Returns
    -------
    float
        The smallest value whose cumulative weight fraction reaches ``q / 100``; with equal
        weights this is the "inverted_cdf" percentile of numpy.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    if v.shape != w.shape:
        raise ValueError(f"values and weights differ in shape: {v.shape} vs {w.shape}")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q: expected a percentile in [0, 100], got {q}")
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights: must be non-negative and not all zero")
    order = np.argsort(v, kind="stable")
    cw = np.cumsum(w[order])
    k = int(np.searchsorted(cw, q / 100.0 * cw[-1] * (1 - 1e-12), side="left"))
    return float(v[order][min(k, v.size - 1)])


def error_statistics(errors_mm: ArrayLike, weights_s: ArrayLike | None = None) -> dict:
    """Statistics of targeting errors over beam-on time.

    Parameters
    ----------
    errors_mm : array-like, shape (n,)
        Targeting errors (mm), one per sample.
    weights_s : array-like, shape (n,), optional
        Beam-on time each sample stands for (s); equal weights when omitted.

    Returns
    -------
    dict
        ``rms``, ``mean``, ``p95``, ``max`` (mm), ``within_0_5mm`` and ``within_1mm``
        (fraction of beam-on time), ``beam_on_s`` (s, sum of weights) and ``n_samples``.
        With no samples the values are ``None`` and ``n_samples`` is 0.
    """
    e = np.asarray(errors_mm, dtype=np.float64).ravel()
    w = np.ones_like(e) if weights_s is None else np.asarray(weights_s, dtype=np.float64).ravel()
    if e.shape != w.shape:
        raise ValueError(f"errors_mm and weights_s differ in shape: {e.shape} vs {w.shape}")
    keep = w > 0
    e, w = e[keep], w[keep]
    if e.size == 0:
        return {"rms": None, "mean": None, "p95": None, "max": None, "within_0_5mm": None,
                "within_1mm": None, "beam_on_s": 0.0, "n_samples": 0}
    if not np.all(np.isfinite(e)):
        raise ValueError("errors_mm: contains NaN or infinite values during beam-on")
    total = float(w.sum())
    return {
        "rms": float(np.sqrt(np.sum(w * e**2) / total)),
        "mean": float(np.sum(w * e) / total),
        "p95": weighted_percentile(e, w, 95.0),
        "max": float(e.max()),
        "within_0_5mm": float(w[e <= 0.5].sum() / total),
        "within_1mm": float(w[e <= 1.0].sum() / total),
        "beam_on_s": total if weights_s is not None else float(e.size),
        "n_samples": int(e.size),
    }


def component_statistics(components_mm: Mapping[str, ArrayLike],
                         weights_s: ArrayLike | None = None) -> dict:
    """RMS, 95th percentile and max of each error component's magnitude.

    Parameters
    ----------
    components_mm : mapping of str to array-like, shape (n, 3)
        Perpendicular error vectors of each stage (mm, room).
    weights_s : array-like, shape (n,), optional
        Beam-on seconds per sample.

    Returns
    -------
    dict
        ``{name: {"rms": ..., "p95": ..., "max": ...}}`` (mm).
    """
    out = {}
    for name, vec in components_mm.items():
        mag = np.linalg.norm(_n3(vec, name), axis=1) if np.size(vec) else np.zeros(0)
        s = error_statistics(mag, weights_s)
        out[name] = {k: s[k] for k in ("rms", "p95", "max")}
    return out


def beam_statistics(beam_index: ArrayLike, errors_mm: ArrayLike, weights_s: ArrayLike,
                    mu_per_beam: ArrayLike) -> tuple[list[dict], dict]:
    """Per-beam table and MU-weighted statistics over beams.

    Parameters
    ----------
    beam_index : array-like of int, shape (n,)
        Beam each sample belongs to (0-based); negative for beam-off samples (ignored).
    errors_mm : array-like, shape (n,)
        Targeting error per sample (mm).
    weights_s : array-like, shape (n,)
        Beam-on seconds per sample.
    mu_per_beam : array-like, shape (n_beams,)
        Planned MU of each beam.

    Returns
    -------
    rows : list of dict
        One per beam with any beam-on time: ``beam``, ``mu``, ``beam_on_s``, ``rms_mm``,
        ``p95_mm``, ``max_mm``, ``mean_mm``.
    mu_weighted : dict
        ``rms_mm`` (sqrt of the MU-weighted mean of per-beam mean squared errors),
        ``mean_mm`` (MU-weighted mean of per-beam means), ``worst_beam`` and
        ``worst_beam_rms_mm``; ``None`` values when no beam was delivered.
    """
    b = np.asarray(beam_index, dtype=np.int64).ravel()
    e = np.asarray(errors_mm, dtype=np.float64).ravel()
    w = np.asarray(weights_s, dtype=np.float64).ravel()
    mu = np.asarray(mu_per_beam, dtype=np.float64).ravel()
    if not (b.shape == e.shape == w.shape):
        raise ValueError("beam_index, errors_mm and weights_s must have the same shape")
    if b.size and b.max() >= mu.size:
        raise ValueError(f"beam_index: beam {int(b.max())} outside the plan's {mu.size} beams")
    rows = []
    sel_on = (b >= 0) & (w > 0)
    for k in np.unique(b[sel_on]):
        s = sel_on & (b == k)
        st = error_statistics(e[s], w[s])
        rows.append({"beam": int(k), "mu": float(mu[k]), "beam_on_s": st["beam_on_s"],
                     "rms_mm": st["rms"], "mean_mm": st["mean"], "p95_mm": st["p95"],
                     "max_mm": st["max"]})
    if not rows:
        return rows, {"rms_mm": None, "mean_mm": None, "worst_beam": None,
                      "worst_beam_rms_mm": None}
    mus = np.array([r["mu"] for r in rows])
    rms = np.array([r["rms_mm"] for r in rows])
    means = np.array([r["mean_mm"] for r in rows])
    worst = int(np.argmax(rms))
    return rows, {"rms_mm": float(np.sqrt(np.sum(mus * rms**2) / mus.sum())),
                  "mean_mm": float(np.sum(mus * means) / mus.sum()),
                  "worst_beam": rows[worst]["beam"], "worst_beam_rms_mm": float(rms[worst])}
