"""Measure one source tree: plan generation, the loop step and a whole default treatment.

Prints one JSON object. Run it once per source tree in the same session to compare (e.g. a
``git worktree`` of an older commit)::

    python scripts/measure_treatment.py                      # this checkout
    PYTHONPATH=/path/to/old/worktree python scripts/measure_treatment.py --old

Figures:

* ``plan_generation_s`` — ``plan_for_scene`` of the default scene without any cache (median
  of ``--plan-repeats`` runs in this process, after one warm-up that pays numba's start-up);
* ``step_ms`` — p50/p99/mean of the loop's steps without an imaging event (no exposure and no
  result applied) over a whole default treatment, and the mean of those with one;
* ``treatment`` — the whole default treatment (live X-ray imaging, seed 0): simulated
  seconds, set-up and loop wall time, real-time factor with and without set-up, and the
  wall time of the imaging events.

``--old`` measures the loop of the code before the loop became events (commit 86acb25):
that loop calls ``time.perf_counter()`` at the start and end of each step, which a wrapper
records, so the same per-step figures come out of the unmodified old code.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # as the cksim command sets it
os.environ["CKSIM_PLAN_CACHE"] = "0"  # plan generation is measured: no cached plan

SCENE = Path(__file__).resolve().parents[1] / "scenes" / "default.yaml"


def plan_generation_s(repeats: int) -> float:
    from cyberknife_sim.plan import plan_for_scene
    from cyberknife_sim.robot import RobotWorld
    from cyberknife_sim.scene import load_scene

    scene = load_scene(SCENE)
    world = RobotWorld(scene)
    times = []
    for k in range(repeats + 1):
        t0 = time.perf_counter()
        plan_for_scene(scene, world, np.random.default_rng(0))
        if k:  # the first run pays numba's compile/load
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def treatment_new(seed: int) -> dict:
    from cyberknife_sim.scene import load_scene
    from cyberknife_sim.simulation import build_loop

    w0 = time.perf_counter()
    loop = build_loop(load_scene(SCENE), seed=seed, imaging="xray")
    setup_s = time.perf_counter() - w0
    quiet, busy = [], []
    rec, st = loop.rec, loop.state
    w1 = time.perf_counter()
    i = 0
    for i in range(loop.n_steps):
        t = rec.time_s[i]
        pend = st.pending_images
        imaging = loop.exposure_due(t) or bool(pend and pend[0][0] <= t + 1e-9)
        t0 = time.perf_counter()
        go_on = loop.step(i)
        (busy if imaging else quiet).append(1e3 * (time.perf_counter() - t0))
        if not go_on:
            i += 1
            break
    loop.finish(i, time.perf_counter() - w1)
    loop_s = time.perf_counter() - w1
    return _result(i * loop.dt_s, setup_s, loop_s, quiet, busy, loop.rec)


def treatment_old(seed: int) -> dict:
    import cyberknife_sim.simulation._loop as old_loop
    from cyberknife_sim.scene import load_scene
    from cyberknife_sim.simulation import simulate

    stamps: list[float] = []

    class Clock:
        @staticmethod
        def perf_counter() -> float:
            now = time.perf_counter()
            stamps.append(now)
            return now

    old_loop.time = Clock  # the old loop stamps each step's start and end
    res = simulate(load_scene(SCENE), seed=seed, imaging="xray")
    old_loop.time = time
    rec = res.record
    # stamps: loop start, then (start, end) per step, then the loop end
    per_step = np.diff(np.asarray(stamps[1:1 + 2 * rec.n_steps]).reshape(-1, 2), axis=1)[:, 0]
    dt = rec.time_s[1] - rec.time_s[0]
    proc = 0.5  # the old loop's image_processing_s
    busy_steps = set()
    for r in rec.images:
        busy_steps.add(int(round(r.time_s / dt)))
        busy_steps.add(int(np.ceil((r.time_s + proc) / dt - 1e-9)))
    quiet = [1e3 * s for k, s in enumerate(per_step) if k not in busy_steps]
    busy = [1e3 * s for k, s in enumerate(per_step) if k in busy_steps]
    s = res.summary
    return _result(s["simulated_s"], s["setup_wall_s"], s["loop_wall_s"], quiet, busy, rec)


def _result(sim_s, setup_s, loop_s, quiet, busy, rec) -> dict:
    on = rec.beam_on_s > 0
    err = np.linalg.norm(rec.error_vec[on], axis=1)
    return {"simulated_s": sim_s, "setup_s": setup_s, "loop_s": loop_s,
            "realtime_factor": sim_s / loop_s,
            "realtime_factor_with_setup": sim_s / (loop_s + setup_s),
            "step_ms": _percentiles(quiet), "imaging_step_ms": _percentiles(busy),
            "imaging_events_s": float(np.sum(busy)) / 1e3,
            "rms_mm": float(np.sqrt(np.average(err**2, weights=rec.beam_on_s[on])))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", action="store_true", help="the code has the old run_loop")
    ap.add_argument("--plan-repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import cyberknife_sim

    out = {"source": str(Path(cyberknife_sim.__file__).parent),
           "plan_generation_s": plan_generation_s(args.plan_repeats)}
    out["treatment"] = (treatment_old if args.old else treatment_new)(args.seed)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
