"""The closed loop's own event methods, timed inside a real treatment of the default scene.

A :class:`~cyberknife_sim.simulation.TreatmentLoop` of ``scenes/default.yaml`` (live X-ray
imaging, the generated plan, the PyBullet robot) is built and stepped past the model-building
X-ray burst until the beam is on; then:

* ``test_loop_step`` — one whole step without an imaging event (marker frame → predictor →
  interlocks → commanded target → robot command and servo step → dose delivery → record):
  the path the loop runs 26 times per simulated second. Latency percentiles per step in
  ``extra_info`` (goal p99 ≤ 0.3 ms).
* ``test_marker_frame_to_command`` — the events from a marker frame to the robot command
  alone (:meth:`marker_frame` + :meth:`check_interlocks` + :meth:`command_robot`).
* ``test_imaging_event`` — a step with an X-ray exposure (live pair rendered from the truth,
  registered to the planning CT): what an imaging event costs. (The step where the result is
  applied, with its correlation refit, is left out of ``test_loop_step`` too.)

Run: ``.venv/bin/python -m pytest benchmarks/bench_loop.py --benchmark-only``
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from conftest import imaging_event_due, step_to_beam_on

from cyberknife_sim.scene import load_scene
from cyberknife_sim.simulation import build_loop

QUICK = os.environ.get("CKSIM_BENCH_QUICK", "") not in ("", "0")
N_STEPS = 1000 if QUICK else 5000


def percentiles_ms(samples_ns) -> dict[str, float]:
    """p50/p95/p99/max/mean (ms) and the count of latency samples (ns)."""
    a = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": int(a.size), "p50_ms": float(p50), "p95_ms": float(p95),
            "p99_ms": float(p99), "max_ms": float(a.max()), "mean_ms": float(a.mean())}


class Stepper:
    """Drives a loop one step at a time from where it stands."""

    def __init__(self, loop):
        self.loop = loop
        self.i = 0

    def advance_to_beam_on(self, min_s: float = 20.0) -> None:
        self.i = step_to_beam_on(self.loop, min_s=min_s)

    def step(self) -> bool:
        """One step; True when it held an imaging event (an exposure or a result in)."""
        loop = self.loop
        imaging = imaging_event_due(loop, self.i)
        assert loop.step(self.i)
        self.i += 1
        return imaging


@pytest.fixture(scope="module")
def stepper():
    scene = load_scene("scenes/default.yaml")
    s = Stepper(build_loop(scene, seed=0, imaging="xray"))
    s.advance_to_beam_on()
    return s


def test_loop_step(benchmark, stepper):
    lat_ns: list[int] = []
    imaging_ns: list[int] = []

    def one():
        t0 = time.perf_counter_ns()
        imaging = stepper.step()
        (imaging_ns if imaging else lat_ns).append(time.perf_counter_ns() - t0)

    benchmark.pedantic(one, rounds=N_STEPS, iterations=1, warmup_rounds=50)
    stats = percentiles_ms(lat_ns)
    benchmark.extra_info.update({f"latency_{k}": v for k, v in stats.items()})
    benchmark.extra_info["imaging_steps"] = len(imaging_ns)
    rec = stepper.loop.rec
    on = rec.beam_on_s[: stepper.i] > 0
    assert on[-N_STEPS:].mean() > 0.5, "the beam should be on for most of the timed steps"


def test_marker_frame_to_command(benchmark, stepper):
    loop = stepper.loop
    lat_ns: list[int] = []

    def one():
        i = stepper.i
        t = loop.rec.time_s[i]
        if loop.exposure_due(t) or loop.state.pending_images:
            stepper.step()  # an imaging event is pending: let it happen untimed
            return
        t0 = time.perf_counter_ns()
        loop._frames_arrived(t)
        loop.check_interlocks(t)
        loop.command_robot(i)
        lat_ns.append(time.perf_counter_ns() - t0)
        go_on = loop.deliver(i)
        loop.record(i, min(loop.state.beam_k, len(loop.beams) - 1))
        stepper.i += 1
        assert go_on

    benchmark.pedantic(one, rounds=N_STEPS, iterations=1, warmup_rounds=50)
    benchmark.extra_info.update({f"latency_{k}": v for k, v in percentiles_ms(lat_ns).items()})


def test_imaging_event(benchmark, stepper):
    loop = stepper.loop
    lat_ns: list[int] = []
    n = 3 if QUICK else 10

    def one():
        # jump the schedule: the next step exposes a pair
        loop.state.next_image_s = loop.rec.time_s[stepper.i]
        t0 = time.perf_counter_ns()
        assert stepper.step()
        lat_ns.append(time.perf_counter_ns() - t0)

    benchmark.pedantic(one, rounds=n, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update({f"latency_{k}": v for k, v in percentiles_ms(lat_ns).items()})
    assert all(r.accepted for r in loop.rec.images[-n:])
