"""What the plots show, computed from a run's record: hold bands, aim points, decimation.

Plain numpy on the :class:`~cyberknife_sim.simulation.LoopRecord`'s arrays (room mm, s); no
plotting here, so each piece is tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["HoldBand", "aim_changes", "aim_index", "binned_envelope", "hold_bands",
           "minmax_decimate", "runs"]

MAX_POINTS = 20_000
"""Most points one interactive trace holds (see :func:`minmax_decimate`)."""


def runs(mask: ArrayLike) -> list[tuple[int, int]]:
    """Start (inclusive) and stop (exclusive) indices of the runs of True in ``mask``."""
    m = np.asarray(mask, dtype=bool)
    if m.size == 0:
        return []
    d = np.diff(np.concatenate([[0], m.astype(np.int8), [0]]))
    return [(int(a), int(b)) for a, b in
            zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True)]


@dataclass(frozen=True)
class HoldBand:
    """One beam hold: from its ``hold`` event to the ``resume`` (or the run's end).

    Attributes
    ----------
    start_s, end_s : float
        Start and end of the hold (s).
    reasons : tuple of str
        Every interlock active at some step of the hold (``HOLD_REASONS`` names), the
        ``hold`` event's own first.
    ended : str
        What ended it: ``"resume"``, ``"stopped"``, ``"hold"`` (the next one) or
        ``"end of run"``.
    """

    start_s: float
    end_s: float
    reasons: tuple[str, ...]
    ended: str

    @property
    def label(self) -> str:
        """The reasons, comma separated (``"setup"``, ``"markers_lost, model_residual"``)."""
        return ", ".join(self.reasons)


def _mask_reasons(mask: int, names: tuple[str, ...]) -> list[str]:
    return [name for k, name in enumerate(names) if mask >> k & 1]


def hold_bands(rec, hold_reasons: tuple[str, ...] | None = None) -> list[HoldBand]:
    """One :class:`HoldBand` per ``hold`` event of ``rec.events`` (a LoopRecord).

    A band ends at the next ``resume`` event, else at a ``stopped`` event, else at the last
    step. Its reasons are the ``hold`` event's reasons plus any other interlock that was
    active (``rec.hold_mask``) during the band.
    """
    if hold_reasons is None:
        from ..simulation import HOLD_REASONS as hold_reasons
    t = np.asarray(rec.time_s, dtype=float)
    t_end = float(t[-1]) if t.size else 0.0
    events = sorted(rec.events, key=lambda ev: ev["time_s"])
    bands = []
    for k, ev in enumerate(events):
        if ev["kind"] != "hold":
            continue
        start = float(ev["time_s"])
        end, ended = t_end, "end of run"
        for later in events[k + 1:]:
            if later["kind"] in ("resume", "stopped", "hold"):
                end = float(later["time_s"])
                ended = later["kind"]
                break
        reasons = list(ev.get("reasons") or [])
        # event times are rounded to 1 µs: a step belongs to the band from its hold event up
        # to (not including) the step of its resume event
        sel = (t >= start - 1e-6) & (t < end - 1e-6) if end > start else np.abs(t - start) < 1e-6
        if sel.any():
            union = int(np.bitwise_or.reduce(np.asarray(rec.hold_mask)[sel]))
            reasons += [r for r in _mask_reasons(union, hold_reasons) if r not in reasons]
        bands.append(HoldBand(start, max(end, start), tuple(reasons), ended))
    return bands


def aim_index(rec, n_beams: int) -> NDArray[np.int64]:
    """The beam whose aim point each step is measured at (the loop's ``aim_k``), per step.

    The loop aims every step at its current beam: the delivering beam while the beam is on,
    and while it travels to (or holds at) a node, the beam next to deliver. So a step's aim is
    the beam of the next beam-on step at or after it; steps after the last beam-on step aim
    at ``min(beams_completed, n_beams - 1)``.

    Returns
    -------
    ndarray of int, shape (n_steps,)
        Index into the plan's beams (-1 for a plan with no beams).
    """
    bi = np.asarray(rec.beam_index, dtype=np.int64)
    n = bi.size
    if n_beams <= 0:
        return np.full(n, -1, dtype=np.int64)
    tail = min(int(getattr(rec, "beams_completed", 0)), n_beams - 1)
    out = np.full(n, tail, dtype=np.int64)
    on = np.flatnonzero(bi >= 0)
    if on.size:
        # for each step, the first beam-on step at or after it
        nxt = np.searchsorted(on, np.arange(n))
        has = nxt < on.size
        out[has] = bi[on[nxt[has]]]
    return out


def aim_changes(rec, aims_room: ArrayLike, *, tol_mm: float = 1e-6) -> NDArray[np.int64]:
    """Steps at which the aim point changes to a different point (the first step aimed at
    the new one).

    Parameters
    ----------
    rec : LoopRecord
    aims_room : array-like, shape (n_beams, 3)
        Each beam's planned aim point (room mm).
    tol_mm : float
        Aim points closer than this count as the same point.
    """
    aims = np.asarray(aims_room, dtype=float).reshape(-1, 3)
    k = aim_index(rec, len(aims))
    if k.size < 2 or len(aims) == 0:
        return np.zeros(0, dtype=np.int64)
    moved = np.linalg.norm(aims[k[1:]] - aims[k[:-1]], axis=1) > tol_mm
    return np.flatnonzero(moved) + 1


def minmax_decimate(x: ArrayLike, y: ArrayLike, max_points: int = MAX_POINTS
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """At most ``max_points`` samples of ``(x, y)`` that keep its envelope.

    A series of up to ``max_points`` samples is returned whole. A longer one is cut into
    ``max_points // 2`` bins of consecutive samples; each bin keeps its smallest and its
    largest sample (real samples, in their time order), so the line drawn through them
    reaches every peak and trough of the raw series. A bin with no finite value keeps one
    NaN (a gap in the line, e.g. while the beam is off).

    Parameters
    ----------
    x, y : array-like, shape (n,)
        Sample positions (e.g. time, s) in increasing order, and values (NaN: no value).
    max_points : int
        Largest number of points returned (at least 2).

    Returns
    -------
    x, y : ndarray, shape (m,), m <= max_points
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y: expected two 1-D arrays of one length, got shapes "
                         f"{x.shape} and {y.shape}")
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2 (got {max_points})")
    n = x.size
    if n <= max_points:
        return x.copy(), y.copy()
    nb = max_points // 2
    edges = np.linspace(0, n, nb + 1).astype(np.int64)
    bin_id = np.repeat(np.arange(nb), np.diff(edges))
    ok = np.isfinite(y)
    # sorted by bin, then by value: each bin's first entry is its extreme
    i_lo = np.lexsort((np.where(ok, y, np.inf), bin_id))[edges[:-1]]
    i_hi = np.lexsort((np.where(ok, -y, np.inf), bin_id))[edges[:-1]]
    empty = ~ok[i_lo]
    first = np.where(empty, edges[:-1], np.minimum(i_lo, i_hi))  # empty bin: one NaN (a gap)
    second = np.where(empty | (i_lo == i_hi), -1, np.maximum(i_lo, i_hi))
    idx = np.stack([first, second], axis=1).ravel()
    idx = idx[idx >= 0]
    return x[idx], y[idx]


def binned_envelope(x: ArrayLike, y: ArrayLike, bin_width: float
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64],
                               NDArray[np.float64]]:
    """Per-bin minimum, RMS and maximum of ``y`` over bins of ``x`` of width ``bin_width``.

    Parameters
    ----------
    x, y : array-like, shape (n,)
        Positions (e.g. time, s) and values (NaN values are left out; a bin with none gives
        NaN).
    bin_width : float
        Width of a bin (units of ``x``, > 0).

    Returns
    -------
    centers, lo, rms, hi : ndarray, shape (n_bins,)
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if not bin_width > 0:
        raise ValueError(f"bin_width must be > 0 (got {bin_width})")
    if x.size == 0:
        e = np.zeros(0)
        return e, e, e, e
    k = np.floor((x - x[0]) / bin_width).astype(np.int64)
    nb = int(k[-1]) + 1
    ok = np.isfinite(y)
    lo = np.full(nb, np.inf)
    hi = np.full(nb, -np.inf)
    np.minimum.at(lo, k[ok], y[ok])
    np.maximum.at(hi, k[ok], y[ok])
    cnt = np.bincount(k[ok], minlength=nb)
    ss = np.bincount(k[ok], weights=y[ok] ** 2, minlength=nb)
    empty = cnt == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(ss / cnt)
    lo[empty] = hi[empty] = rms[empty] = np.nan
    centers = x[0] + (np.arange(nb) + 0.5) * bin_width
    return centers, lo, rms, hi
