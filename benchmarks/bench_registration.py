"""One full 6-DoF registration of a 512² live pair (default phantom, scene binning 2).

Run: ``.venv/bin/python -m pytest benchmarks/bench_registration.py --benchmark-only``.
The per-stage breakdown (median ms over the rounds) is stored in ``extra_info`` and printed.
Each round also checks the result: accepted, mTRE < 0.4 mm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cyberknife_sim.anatomy import load_patient
from cyberknife_sim.geometry import matrix_from_pose
from cyberknife_sim.imaging import DrrRenderer, XrayModel, imaging_pair
from cyberknife_sim.registration import Registration2D3D
from cyberknife_sim.scene import load_scene

SCENE = Path(__file__).resolve().parents[1] / "scenes" / "default.yaml"
CUBE = np.array([[x, y, z] for x in (-20, 20) for y in (-20, 20) for z in (-20, 20)], float)
POSE = np.array([6.0, -4.0, 7.5, 2.0, -1.5, 2.5])


@pytest.fixture(scope="module")
def case():
    scene = load_scene(SCENE)
    pat = load_patient(scene)
    views = imaging_pair(scene.room.imaging)
    mu = scene.room.imaging.mu_water_per_mm
    xray = XrayModel(scene.room.imaging.xray, pixel_spacing_mm=views[0].pixel_spacing_mm)
    full = DrrRenderer(pat.volume, views, mu_water_per_mm=mu)
    live = [xray.simulate(li, np.random.default_rng(0))
            for li in full.render(matrix_from_pose(POSE) @ pat.planned_room_from_ct)]
    reg = Registration2D3D(pat.volume, views, target_ct_mm=pat.target_ct_mm,
                           mu_water_per_mm=mu, planned_room_from_ct=pat.planned_room_from_ct,
                           open_field_counts=xray.open_field_counts)
    return reg, live


def test_register_pair_512(benchmark, case):
    reg, live = case
    reg.register(live)  # warm caches
    results = []

    def run():
        results.append(reg.register(live))
        return results[-1]

    res = benchmark.pedantic(run, rounds=10, iterations=1)
    assert res.accepted, res.reason
    a, b = matrix_from_pose(res.pose), matrix_from_pose(POSE)
    mtre = np.linalg.norm(CUBE @ a[:3, :3].T + a[:3, 3] - CUBE @ b[:3, :3].T - b[:3, 3],
                          axis=1).mean()
    assert mtre < 0.4
    stages = {k: float(np.median([r.stage_ms.get(k, 0.0) for r in results]))
              for k in results[-1].stage_ms}
    benchmark.extra_info["image_shape"] = list(live[0].shape)
    benchmark.extra_info["stage_ms_median"] = stages
    print("\nstage ms (median):", {k: round(v, 1) for k, v in stages.items()})
