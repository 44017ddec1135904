"""Exact (Siddon/Jacobs) DRRs vs the fast shear-warp renderer, same input, same run.

Run: ``.venv/bin/python -m pytest benchmarks/bench_siddon.py --benchmark-only``.

Both render the pair of the default scene geometry (512² at 0.8 mm) of the whole default
phantom at the pose (2, -1.5, 3 mm; 1, -0.5, 1.5°) of issue 13, caches and JIT warmed
(one untimed render first). The exact benchmark stores ``slowdown_vs_fast`` (mean exact
time / mean fast time, when the fast one ran first in the session) and both store the
relative RMS difference between the two over the patient's pixels in ``extra_info``.
"""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.anatomy import planned_room_from_ct
from cyberknife_sim.geometry import matrix_from_pose
from cyberknife_sim.imaging import DrrRenderer, imaging_pair
from cyberknife_sim.imaging._siddon import ExactDrrRenderer
from cyberknife_sim.scene import ImagingSettings

MU_W = 0.0206
POSE = (2.0, -1.5, 3.0, 1.0, -0.5, 1.5)
_RESULTS: dict[str, tuple[float, tuple[np.ndarray, ...]]] = {}


def _room_from_ct(phantom) -> np.ndarray:
    return matrix_from_pose(POSE) @ planned_room_from_ct(phantom.truth.target_center_ct_mm)


def _patient_rel_rms(a: np.ndarray, exact: np.ndarray) -> float:
    mask = exact > 0
    return float(np.sqrt(np.mean((a[mask] - exact[mask]) ** 2) / np.mean(exact[mask] ** 2)))


@pytest.mark.parametrize("renderer", ["fast", "exact"])
def test_drr_pair_512(benchmark, default_phantom, renderer):
    """Both views at 512², construction excluded (fast: defaults; exact: one ray/pixel)."""
    views = imaging_pair(ImagingSettings())
    cls = DrrRenderer if renderer == "fast" else ExactDrrRenderer
    r = cls(default_phantom.volume, views, mu_water_per_mm=MU_W)
    room_from_ct = _room_from_ct(default_phantom)
    r.render(room_from_ct)  # warm the JIT and caches
    rounds = 10 if renderer == "fast" else 3
    pair = benchmark.pedantic(r.render, args=(room_from_ct,), rounds=rounds, iterations=1)
    assert all(p.shape == (512, 512) and p.max() > 2.0 for p in pair)
    _RESULTS[renderer] = (benchmark.stats.stats.mean, pair)
    if "fast" in _RESULTS and "exact" in _RESULTS:
        fast_s, fast_pair = _RESULTS["fast"]
        exact_s, exact_pair = _RESULTS["exact"]
        benchmark.extra_info["slowdown_vs_fast"] = exact_s / fast_s
        benchmark.extra_info["fast_vs_exact_relative_rms"] = [
            _patient_rel_rms(f, e) for f, e in zip(fast_pair, exact_pair, strict=True)]
