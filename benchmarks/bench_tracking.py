"""Real-time loop costs: one predictor update, one correlation evaluation, one model refit.

Run: ``.venv/bin/python -m pytest benchmarks/bench_tracking.py --benchmark-only``.
Each benchmark also checks that its output is right.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from cyberknife_sim.tracking import RollingCorrelation, make_correlation_model, make_predictor
from cyberknife_sim.tracking._correlation import MODELS

DT = 1.0 / 26.0


@pytest.mark.parametrize("method", ["none", "linear", "nlms", "rls", "kalman"])
@pytest.mark.parametrize("dim", [1, 3])
def test_predictor_update(benchmark, method, dim):
    """One ``update()`` after 60 s of a 4-s sinusoid (converged)."""
    p = make_predictor(method, horizon_s=0.115, dt_s=DT, dim=dim)
    t = np.arange(26 * 60) * DT
    x = np.sin(2 * np.pi * t / 4.0)
    for v in x:
        p.update(np.full(dim, v))
    nxt = np.full(dim, np.sin(2 * np.pi * (t[-1] + DT) / 4.0))
    out = copy.deepcopy(p).update(nxt)
    # prediction of the sample 3 steps later; none is off by the 115 ms lag only
    truth = np.sin(2 * np.pi * (t[-1] + 4 * DT) / 4.0)
    tol = {"none": 0.5, "linear": 0.05, "nlms": 0.05, "rls": 0.01, "kalman": 0.05}[method]
    assert out.shape == (dim,)
    assert np.all(np.abs(out - truth) < tol), (out, truth)

    benchmark(p.update, nxt)  # the state keeps evolving; the cost per call is what counts


@pytest.mark.parametrize("model", MODELS)
def test_correlation_predict_one(benchmark, model):
    """One external -> internal evaluation (a single camera frame)."""
    rng = np.random.default_rng(0)
    e = rng.uniform(0, 10, 12)
    v = np.where(np.arange(12) % 2 == 0, 1.0, -1.0)
    a, b = np.array([1.0, -2.0, 0.5]), np.array([0.1, 0.2, -0.6])
    m = make_correlation_model(model).fit(e, a + e[:, None] * b, v)
    out = benchmark(m.predict_one, 4.2, 1.0)
    np.testing.assert_allclose(out, a + 4.2 * b, atol=1e-9)


def test_correlation_refit(benchmark):
    """Adding an X-ray point to a full 12-point dual window (drop oldest, refit, check)."""
    roll = RollingCorrelation("dual", n_points=12, max_residual_mm=1.5)
    a, b = np.array([1.0, -2.0, 0.5]), np.array([0.1, 0.2, -0.6])
    rng = np.random.default_rng(1)
    for e in rng.uniform(0, 10, 12):
        roll.add(e, a + e * b, rng.choice([-1.0, 1.0]))
    status = benchmark(roll.add, 5.0, a + 5.0 * b, 1.0)
    assert status.model_ok and status.residual_mm < 1e-9 and status.n_points == 12
