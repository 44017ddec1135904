"""Latency distributions of the correction loop and of the imaging update; real-time factor.

Run: ``.venv/bin/python -m pytest benchmarks/bench_latency.py --benchmark-only``
(``CKSIM_BENCH_QUICK=1`` for the small sizes ``cksim bench --quick`` uses).

Each latency is measured with ``time.perf_counter_ns`` around the real code path, one sample
per iteration; p50/p95/p99/max (ms) and the iteration count go into ``extra_info`` (they land
in the pytest-benchmark JSON and in ``cksim bench``'s table). pytest-benchmark's own stats
(mean, median) time the same call.

* ``test_correction_loop_latency`` — one step of the loop itself
  (:meth:`TreatmentLoop.step`) in a real treatment of the default scene once the beam is
  on: marker frame in → predictor → interlocks → commanded target → robot command and servo
  step → dose delivery → record. Steps with an imaging event are left out. Checks: the beam
  is on for most timed steps and the robot follows.
* ``test_imaging_update_latency`` — live pair acquired → corrected target: 2D/3D
  registration of a uint16 X-ray pair (``Registration2D3D.register``, started from the
  previous estimate as the loop does), correlation refit on the new point, corrected target
  = registered spine transform × planned target + model offset. A pool of live pairs of the
  default phantom at known poses is made first (not timed). Checks: every registration is
  accepted and within 0.5 mm / 0.5° of the true pose.
* ``test_realtime_factor`` — a whole simulated treatment (``simulate``, default scene,
  live X-ray imaging, the module's plan on a fresh robot) of a fixed simulated duration:
  simulated seconds per wall second of the loop (setup excluded, reported apart).
  Checks: images accepted and targeting error RMS below 1.5 mm.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from conftest import imaging_event_due, step_to_beam_on

from cyberknife_sim.geometry import matrix_from_pose
from cyberknife_sim.scene import load_scene
from cyberknife_sim.tracking import RollingCorrelation

SCENE = "scenes/default.yaml"
QUICK = os.environ.get("CKSIM_BENCH_QUICK", "") not in ("", "0")
N_LOOP = 1000 if QUICK else 5000
N_IMAGING = 6 if QUICK else 120
N_POOL = 3 if QUICK else 8
RUN_S = 18.0 if QUICK else 60.0  # beam-on starts after the model-building images
PERIOD_S, AMPLITUDE_MM, NOISE_MM = 4.0, 10.0, 0.1


def percentiles_ms(samples_ns) -> dict[str, float]:
    """p50/p95/p99/max/mean (ms) and the count of latency samples (ns)."""
    a = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": int(a.size), "p50_ms": float(p50), "p95_ms": float(p95),
            "p99_ms": float(p99), "max_ms": float(a.max()), "mean_ms": float(a.mean())}


@pytest.fixture(scope="module")
def scene():
    return load_scene(SCENE)


@pytest.fixture(scope="module")
def plan(scene):
    """The scene's beams and a robot on them (the plan is generated once per module)."""
    from cyberknife_sim.simulation._robot import build_plan_and_robot

    return build_plan_and_robot(scene, rng=np.random.default_rng(0))


def test_correction_loop_latency(benchmark, scene):
    """The loop's own step (``TreatmentLoop.step``), timed per step in a real treatment of
    the default scene once the beam is on; steps with an imaging event are left out (see
    ``test_imaging_update_latency``)."""
    from cyberknife_sim.simulation import build_loop

    loop = build_loop(scene, seed=0, imaging="xray")
    state = {"i": step_to_beam_on(loop)}
    rec = loop.rec
    lat_ns: list[int] = []

    def step():
        i = state["i"]
        imaging = imaging_event_due(loop, i)
        t0 = time.perf_counter_ns()
        assert loop.step(i)
        if not imaging:
            lat_ns.append(time.perf_counter_ns() - t0)
        state["i"] = i + 1

    benchmark.pedantic(step, rounds=N_LOOP, iterations=1, warmup_rounds=100)
    stats = percentiles_ms(lat_ns)
    benchmark.extra_info.update({f"latency_{k}": v for k, v in stats.items()})
    # the loop treats: the beam is on for most of the timed steps and follows the command
    timed = slice(state["i"] - N_LOOP, state["i"])
    on = rec.beam_on_s[timed] > 0
    assert on.mean() > 0.5
    # with the beam on, the robot follows within the interlock's limit (it travels between)
    assert rec.robot_error_mm[timed][on].max() <= scene.tracking.interlocks.max_robot_error_mm


@pytest.fixture(scope="module")
def imaging_parts(scene):
    from cyberknife_sim.simulation._xray_chain import XrayChain

    chain = XrayChain(scene, rng=np.random.default_rng(2))
    rng = np.random.default_rng(3)
    poses = [np.zeros(6)] + [np.concatenate([rng.uniform(-2.0, 2.0, 3),
                                             rng.uniform(-1.0, 1.0, 3)])
                             for _ in range(N_POOL - 1)]
    pairs = [chain.live_pair(p) for p in poses]
    return chain, poses, pairs


def test_imaging_update_latency(benchmark, scene, imaging_parts):
    chain, poses, pairs = imaging_parts
    reg = chain.registration
    target_ct = chain.patient.target_ct_mm
    x0 = (chain.patient.planned_room_from_ct @ np.append(target_ct, 1.0))[:3]
    tr = scene.tracking
    corr = RollingCorrelation(tr.correlation.model, n_points=tr.correlation.n_points)
    rng = np.random.default_rng(4)
    lat_ns: list[int] = []
    reg_ms: list[float] = []
    errors: list[np.ndarray] = []
    state = {"k": 0, "last": None, "target": None}

    def update():
        k = state["k"] % len(pairs)
        state["k"] += 1
        ext = float(rng.uniform(0.0, AMPLITUDE_MM))
        offset = np.array([0.0, -0.06, -0.19]) * ext
        t0 = time.perf_counter_ns()
        res = reg.register(pairs[k], initial_pose=state["last"])
        spine = matrix_from_pose(res.pose)
        corr.add(ext, offset, 1.0)
        target = spine[:3, :3] @ x0 + spine[:3, 3] + corr.predict_one(ext, 1.0)
        lat_ns.append(time.perf_counter_ns() - t0)
        reg_ms.append(res.elapsed_ms)
        if res.accepted:
            state["last"] = res.pose
        errors.append(np.append(res.pose - poses[k], float(res.accepted)))
        state["target"] = (target, spine, offset)

    benchmark.pedantic(update, rounds=N_IMAGING, iterations=1, warmup_rounds=1)
    stats = percentiles_ms(lat_ns[1:])
    benchmark.extra_info.update({f"latency_{k}": v for k, v in stats.items()})
    reg_times = np.asarray(reg_ms[1:])
    benchmark.extra_info.update(registration_p50_ms=float(np.percentile(reg_times, 50)),
                                registration_p99_ms=float(np.percentile(reg_times, 99)))
    err = np.array(errors)
    benchmark.extra_info.update(
        accepted_fraction=float(err[:, 6].mean()),
        max_translation_error_mm=float(np.abs(err[:, :3]).max()),
        max_rotation_error_deg=float(np.abs(err[:, 3:6]).max()))
    assert err[:, 6].all(), "a registration was rejected"
    assert np.abs(err[:, :3]).max() < 0.5 and np.abs(err[:, 3:6]).max() < 0.5
    target, spine, offset = state["target"]
    np.testing.assert_allclose(target, spine[:3, :3] @ x0 + spine[:3, 3] + offset, atol=1e-6)


def test_realtime_factor(benchmark, scene, plan):
    from cyberknife_sim.simulation import simulate
    from cyberknife_sim.simulation._robot import build_plan_and_robot

    beams = plan[0]  # same plan, a fresh robot (plan generation is not what RTF measures)
    _, robot = build_plan_and_robot(scene, rng=np.random.default_rng(5), beams=beams)
    result = benchmark.pedantic(simulate, args=(scene,),
                                kwargs={"duration_s": RUN_S, "imaging": "xray",
                                        "beams": beams, "robot": robot},
                                rounds=1, iterations=1)
    s = result.summary
    benchmark.extra_info.update(
        realtime_factor=s.realtime_factor, simulated_s=s.simulated_s,
        loop_wall_s=s.loop_wall_s, setup_wall_s=s.setup_wall_s,
        imaging_wall_s=s.imaging_wall_s, mean_step_ms=s.mean_step_ms,
        targeting_error_rms_mm=s.targeting_error_mm["rms"],
        images=s.images["total"], images_rejected=s.images["rejected"])
    assert s.simulated_s == pytest.approx(RUN_S, abs=0.1)
    assert s.images["total"] - s.images["rejected"] >= 1
    assert s.beam_on_s > 0 and s.targeting_error_mm["rms"] < 1.5
    assert s.realtime_factor == pytest.approx(s.simulated_s / s.loop_wall_s, rel=1e-3)
