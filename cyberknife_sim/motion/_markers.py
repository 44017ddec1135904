"""External LED markers seen by an optical camera: sampling rate, noise, dropped frames, latency.

Frame ``k`` is exposed at ``k / rate_hz`` and reaches the tracking loop ``latency_s`` later.
Noise and drop-outs come from generators keyed by (seed drawn at construction, block of
frames), so a frame's value does not depend on which frames were asked for before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..scene import MarkerSettings
from ._truth import ANTERIOR_ROOM, MotionTruth

__all__ = ["MarkerCamera", "MarkerFrames", "marker_signal_mm"]

_BLOCK = 256


@dataclass(frozen=True)
class MarkerFrames:
    """Camera frames.

    Attributes
    ----------
    index : ndarray of int, shape (n,)
        Frame numbers.
    time_s : ndarray, shape (n,)
        Exposure times (s): when the positions were true.
    available_s : ndarray, shape (n,)
        When each frame reaches the loop: ``time_s + latency_s`` (s).
    positions_room : ndarray, shape (n, m, 3)
        Measured marker positions (room mm); NaN in a dropped frame.
    valid : ndarray of bool, shape (n,)
        False for a dropped frame.
    """

    index: NDArray[np.int64]
    time_s: NDArray[np.float64]
    available_s: NDArray[np.float64]
    positions_room: NDArray[np.float64]
    valid: NDArray[np.bool_]


def marker_signal_mm(positions_room: NDArray[np.float64],
                     reference_room: NDArray[np.float64]) -> NDArray[np.float64]:
    """1-D external signal: mean marker displacement along the anterior normal (mm).

    Parameters
    ----------
    positions_room : ndarray, shape (n, m, 3) or (m, 3)
        Marker positions (room mm); NaN rows give NaN.
    reference_room : ndarray, shape (m, 3)
        Reference positions (e.g. the first frame or the exhale pose).

    Returns
    -------
    ndarray, shape (n,) or ()
        Signal (mm), positive when the chest rises.
    """
    d = np.asarray(positions_room) - reference_room
    return (d @ ANTERIOR_ROOM).mean(axis=-1)


class MarkerCamera:
    """An optical camera tracking the chest markers of a :class:`MotionTruth`.

    Parameters
    ----------
    settings : MarkerSettings
        ``rate_hz``, ``noise_mm`` (1 sigma per coordinate), ``dropout_probability``,
        ``latency_s``.
    truth : MotionTruth
        Supplies :meth:`MotionTruth.marker_positions_room`.
    rng : numpy.random.Generator
        One seed is drawn from it here; all noise and drop-outs derive from that seed.
    """

    def __init__(self, settings: MarkerSettings, truth: MotionTruth, rng: np.random.Generator):
        self.settings = settings
        self.truth = truth
        self.rate_hz = float(settings.rate_hz)
        self.latency_s = float(settings.latency_s)
        self._seed = int(rng.integers(0, 2**63 - 1))
        self._cache: dict[int, tuple[NDArray[np.float64], NDArray[np.bool_]]] = {}

    def _block(self, b: int) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        hit = self._cache.get(b)
        if hit is None:
            g = np.random.default_rng([self._seed, b])
            m = self.truth.marker_count
            noise = g.normal(0.0, self.settings.noise_mm, size=(_BLOCK, m, 3))
            drop = g.random(_BLOCK) < self.settings.dropout_probability
            if len(self._cache) > 64:
                self._cache.clear()
            hit = self._cache[b] = (noise, drop)
        return hit

    def frames_by_index(self, index: NDArray[np.int64]) -> MarkerFrames:
        """Frames with the given numbers (exposed at ``index / rate_hz``)."""
        idx = np.asarray(index, dtype=np.int64)
        t = idx / self.rate_hz
        pos = self.truth.marker_positions_room(t)
        noise = np.empty_like(pos)
        valid = np.empty(idx.size, dtype=bool)
        for b in np.unique(idx // _BLOCK):
            sel = idx // _BLOCK == b
            nb, db = self._block(int(b))
            noise[sel] = nb[idx[sel] % _BLOCK]
            valid[sel] = ~db[idx[sel] % _BLOCK]
        pos = pos + noise
        pos[~valid] = np.nan
        return MarkerFrames(index=idx, time_s=t, available_s=t + self.latency_s,
                            positions_room=pos, valid=valid)

    def frames(self, t0_s: float, t1_s: float) -> MarkerFrames:
        """All frames exposed in ``[t0_s, t1_s]`` (s)."""
        k0 = int(np.ceil(t0_s * self.rate_hz - 1e-9))
        k1 = int(np.floor(t1_s * self.rate_hz + 1e-9))
        return self.frames_by_index(np.arange(k0, max(k1 + 1, k0)))

    def latest(self, now_s: float) -> MarkerFrames:
        """The newest frame the loop has received at ``now_s`` (one frame; may be dropped)."""
        k = int(np.floor((now_s - self.latency_s) * self.rate_hz + 1e-9))
        return self.frames_by_index(np.array([k]))
