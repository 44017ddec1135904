"""Default plan generation: beam count, MU, rejections with reasons, same seed → same plan."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.plan import generate_plan
from cyberknife_sim.robot import RobotWorld
from cyberknife_sim.scene import scene_from_dict


@pytest.fixture(scope="module")
def world():
    with RobotWorld(scene_from_dict({"plan": {"candidate_nodes": 120}})) as w:
        yield w


def test_small_plan_has_the_requested_beams_mu_and_reasons(world):
    plan = generate_plan(world.scene, world, np.random.default_rng(5))
    ps = world.scene.plan
    assert len(plan.beams) == ps.n_beams
    assert plan.total_mu == pytest.approx(ps.total_mu)
    assert plan.beam_on_time_s == pytest.approx(60.0 * ps.total_mu / ps.dose_rate_mu_per_min)
    assert plan.rejected and all(r for _, r in plan.rejected)
    kinds = {r.split(":")[0].split(" ")[0] for _, r in plan.rejected}
    assert kinds <= {"collision", "blocks", "unreachable", "joint", "singular"}
    # every aim point lies inside the target sphere
    radius = world.scene.patient.target_radius_mm
    assert max(np.linalg.norm(b.aim_room) for b in plan.beams) <= radius
    travel = plan.traversal_times_s(world)
    assert travel.shape == (len(plan.beams) - 1,) and np.all(travel >= 0.0)


@pytest.mark.slow
def test_same_seed_same_plan(world):
    a = generate_plan(world.scene, world, np.random.default_rng(9))
    b = generate_plan(world.scene, world, np.random.default_rng(9))
    assert len(a.beams) == len(b.beams)
    for x, y in zip(a.beams, b.beams, strict=True):
        assert np.array_equal(x.source_room, y.source_room)
        assert np.array_equal(x.aim_room, y.aim_room)
        assert x.mu == y.mu
