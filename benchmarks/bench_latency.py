"""Latency distributions of the correction loop and of the imaging update; real-time factor.

Run: ``.venv/bin/python -m pytest benchmarks/bench_latency.py --benchmark-only``
(``CKSIM_BENCH_QUICK=1`` for the small sizes ``cksim bench --quick`` uses).

Each latency is measured with ``time.perf_counter_ns`` around the real code path, one sample
per iteration; p50/p95/p99/max (ms) and the iteration count go into ``extra_info`` (they land
in the pytest-benchmark JSON and in ``cksim bench``'s table). pytest-benchmark's own stats
(mean, median) time the same call.

* ``test_correction_loop_latency`` — marker frame in → robot command out, the path the
  closed loop runs every camera frame: marker positions → 1-D external signal → predictor
  (scene's method, horizon = system latency) → correlation model → commanded target (spine
  correction + breathing offset) → robot command (compensated pointing) → controller step
  (differential-IK refinement of the joint command, servo update). Marker frames: a 4 s,
  10 mm breathing sinusoid with 0.1 mm noise. Checks: the command equals spine correction +
  model(ŝ) exactly, the predictor beats holding the last sample, the beam follows.
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

from cyberknife_sim.geometry import matrix_from_pose
from cyberknife_sim.motion import marker_signal_mm
from cyberknife_sim.scene import load_scene
from cyberknife_sim.tracking import RollingCorrelation, make_predictor

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


@pytest.fixture(scope="module")
def loop_parts(scene, plan):
    beams, robot = plan
    tr = scene.tracking
    dt = 1.0 / tr.markers.rate_hz
    pred = make_predictor(tr.predictor.method, horizon_s=tr.predictor.latency_s, dt_s=dt)
    corr = RollingCorrelation(tr.correlation.model, n_points=tr.correlation.n_points)
    slope = np.array([0.0, -0.06, -0.19])  # mm of target per mm of chest rise
    for k in range(tr.correlation.n_points):
        e = AMPLITUDE_MM * (k % 6) / 5.0
        corr.add(e, slope * e, 1.0 if k % 2 else -1.0)
    robot.goto(beams[0])
    spine = matrix_from_pose([0.2, -0.1, 0.3, 0.0, 0.0, 0.1])
    rotvec = np.array([0.0, 0.0, 0.1])
    for _ in range(400):  # arrive at the first node
        robot.command(beams[0], spine[:3, 3], rotvec)
        robot.step(0.0, dt)
    return beams[0], robot, pred, corr, spine, rotvec, slope, dt, tr.predictor.latency_s


def test_correction_loop_latency(benchmark, loop_parts):
    beam, robot, pred, corr, spine, rotvec, slope, dt, latency_s = loop_parts
    rng = np.random.default_rng(1)
    n_total = N_LOOP + 100  # pedantic's warm-up rounds also pass through step()
    t = np.arange(n_total) * dt
    signal = 0.5 * AMPLITUDE_MM * (1 - np.cos(2 * np.pi * t / PERIOD_S))
    ref = np.array([[0.0, -120.0, -60.0], [-40.0, -120.0, -20.0], [40.0, -120.0, 20.0]])
    frames = (ref[None] + np.array([0.0, -1.0, 0.0]) * signal[:, None, None]
              + rng.normal(0.0, NOISE_MM, (n_total, 3, 3)))
    aim = spine[:3, :3] @ beam.aim_room + spine[:3, 3]
    lat_ns: list[int] = []
    s_hats: list[float] = []
    state = {"k": 0, "c": None}

    def step():
        k = state["k"]
        state["k"] = k + 1
        t0 = time.perf_counter_ns()
        s = float(marker_signal_mm(frames[k], ref))
        s_hat = float(pred.update(s)[0])
        c = aim + corr.predict_one(s_hat, 1.0)
        robot.command(beam, c, rotvec)
        robot.step(0.0, dt)
        lat_ns.append(time.perf_counter_ns() - t0)
        s_hats.append(s_hat)
        state["c"] = c

    benchmark.pedantic(step, rounds=N_LOOP, iterations=1, warmup_rounds=100)
    stats = percentiles_ms(lat_ns[-N_LOOP:])
    benchmark.extra_info.update({f"latency_{k}": v for k, v in stats.items()})

    # correctness: the command is the spine correction plus the model at the predicted signal
    np.testing.assert_allclose(state["c"] - aim, corr.predict_one(s_hats[-1], 1.0), atol=1e-12)
    np.testing.assert_allclose(corr.predict_one(s_hats[-1], 1.0), slope * s_hats[-1], atol=1e-6)
    # the predictor looks ahead: beats holding the last sample after its warm-up
    h = int(round(latency_s / dt))
    n = len(s_hats)
    pred_err = np.asarray(s_hats[200:n - h]) - signal[200 + h:n]
    hold_err = signal[200:n - h] - signal[200 + h:n]
    rms_pred, rms_hold = np.sqrt(np.mean(pred_err**2)), np.sqrt(np.mean(hold_err**2))
    benchmark.extra_info.update(prediction_rms_mm=float(rms_pred), hold_rms_mm=float(rms_hold))
    assert rms_pred < 0.6 * rms_hold, f"prediction RMS {rms_pred:.3f} vs hold {rms_hold:.3f} mm"
    # the beam follows the commanded target (servo lag on a 4 s breathing cycle)
    src, d = robot.beam_axis()
    v = state["c"] - src
    assert np.linalg.norm(v - (v @ d) * d) < 2.0


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
        realtime_factor=s["realtime_factor"], simulated_s=s["simulated_s"],
        loop_wall_s=s["loop_wall_s"], setup_wall_s=s["setup_wall_s"],
        mean_step_ms=s["mean_step_ms"], targeting_error_rms_mm=s["targeting_error_mm"]["rms"],
        images=s["images"]["total"], images_rejected=s["images"]["rejected"])
    assert s["simulated_s"] == pytest.approx(RUN_S, abs=0.1)
    assert s["images"]["total"] - s["images"]["rejected"] >= 1
    assert s["beam_on_s"] > 0 and s["targeting_error_mm"]["rms"] < 1.5
    assert s["realtime_factor"] == pytest.approx(s["simulated_s"] / s["loop_wall_s"], rel=1e-3)
