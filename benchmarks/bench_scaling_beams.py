"""Whole-treatment cost against the number of beams (plan generation + closed loop).

Run: ``.venv/bin/python -m pytest benchmarks/bench_scaling_beams.py --benchmark-only``.

The default scene with ``plan.n_beams`` = 20 / 60 / 120 and 40 MU per beam (2.4 s beam-on at
1000 MU/min, so the simulated time grows with the beam count and the sizes stay small enough
for a benchmark run), live X-ray imaging and registration. Timed: ``simulate()`` as a whole,
which includes generating the plan on a fresh PyBullet robot (node checks) and the loop.
Reported in ``extra_info``: simulated seconds, loop and setup wall time, the loop's real-time
factor, imaging events. Checks: the plan is delivered completely, every image is accepted,
and the targeting error over beam-on time stays sub-millimetre (RMS < 0.5 mm).
"""

from __future__ import annotations

import pytest

from cyberknife_sim.scene import load_scene
from cyberknife_sim.simulation import simulate

SCENE = "scenes/default.yaml"
MU_PER_BEAM = 40.0


@pytest.mark.parametrize("n_beams", [20, 60, 120])
def test_treatment_vs_beam_count(benchmark, n_beams):
    scene = load_scene(SCENE)
    plan = scene.plan.model_copy(update={"n_beams": n_beams,
                                         "total_mu": MU_PER_BEAM * n_beams})
    scene = scene.model_copy(update={"plan": plan})

    result = benchmark.pedantic(simulate, args=(scene,),
                                kwargs={"seed": 0, "duration_s": 3600.0},
                                rounds=1, iterations=1)
    s = result.summary
    assert s["plan_complete"] and s["beams_completed"] == n_beams
    assert s["images"]["rejected"] == 0
    assert s["targeting_error_mm"]["rms"] < 0.5
    benchmark.extra_info.update({
        "n_beams": n_beams,
        "simulated_s": s["simulated_s"],
        "loop_wall_s": s["loop_wall_s"],
        "setup_wall_s": s["setup_wall_s"],
        "realtime_factor": s["realtime_factor"],
        "images": s["images"]["total"],
        "error_rms_mm": s["targeting_error_mm"]["rms"],
    })
