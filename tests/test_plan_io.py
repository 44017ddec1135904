"""Plan: candidate lattice on the SAD sphere, beam timing, JSON round trip, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cyberknife_sim.errors import InputError
from cyberknife_sim.plan import Beam, Node, Plan, candidate_nodes, load_plan


def _plan() -> Plan:
    n0 = Node(0, np.array([0.0, -800.0, 0.0]), np.arange(6.0))
    n1 = Node(1, np.array([800.0, 0.0, 0.0]))
    beams = (Beam(n0, np.zeros(3), 100.0, 20.0, 1000.0, np.arange(6.0)),
             Beam(n0, np.array([1.0, 2.0, 3.0]), 50.0, 20.0, 1000.0, np.arange(6.0)),
             Beam(n1, np.zeros(3), 250.0, 30.0, 1000.0))
    return Plan(beams, np.zeros(3), 800.0, 1000.0)


def test_beam_duration_and_direction():
    plan = _plan()
    assert plan.beams[0].duration_s == pytest.approx(6.0)  # 100 MU at 1000 MU/min
    assert plan.beam_on_time_s == pytest.approx(24.0)
    assert plan.total_mu == pytest.approx(400.0)
    np.testing.assert_allclose(plan.beams[0].direction_room, [0.0, 1.0, 0.0])
    assert [n.index for n in plan.nodes] == [0, 1]


def test_json_round_trip(tmp_path):
    plan = _plan()
    path = tmp_path / "plan.json"
    plan.to_json(path)
    back = load_plan(path)
    assert len(back.beams) == 3
    for a, b in zip(plan.beams, back.beams, strict=True):
        np.testing.assert_array_equal(a.source_room, b.source_room)
        np.testing.assert_array_equal(a.aim_room, b.aim_room)
        assert (a.mu, a.collimator_mm) == (b.mu, b.collimator_mm)
        assert (a.joints_deg is None) == (b.joints_deg is None)
    assert back.beams[0].node is back.beams[1].node


def test_json_round_trip_is_bit_exact_and_keeps_rejected_nodes(tmp_path):
    awkward = np.array([0.1 + 0.2, 1.0 / 3.0, -2.0**-40])  # floats with no short decimal form
    n0 = Node(0, 800.0 * awkward / np.linalg.norm(awkward), np.array([np.pi, np.e, 1e-300,
                                                                     -0.0, 5e-324, 123.456]))
    beams = (Beam(n0, np.zeros(3), 1.0 / 7.0, 20.0, 1000.0, n0.joints_deg),
             Beam(n0, awkward, 2.0 / 3.0, 20.0, 1000.0, n0.joints_deg * (1 + 2**-52)))
    rejected = ((np.array([1.0 / 9.0, -800.0, 0.0]), "blocks imaging beam A"),
                (np.array([0.0, -1.0 / 3.0, 800.0]), "collision: linac with couch"))
    plan = Plan(beams, np.zeros(3), 800.0, 1000.0, rejected)
    path = tmp_path / "plan.json"
    plan.to_json(path)
    back = load_plan(path)
    for a, b in zip(plan.beams, back.beams, strict=True):
        assert a.source_room.tobytes() == b.source_room.tobytes()
        assert a.aim_room.tobytes() == b.aim_room.tobytes()
        assert a.joints_deg.tobytes() == b.joints_deg.tobytes()
        assert a.mu == b.mu
    assert len(back.rejected) == 2
    for (s1, r1), (s2, r2) in zip(plan.rejected, back.rejected, strict=True):
        assert s1.tobytes() == s2.tobytes() and r1 == r2
    # a plan without rejected nodes writes no "rejected" key; a bad one is named
    _plan().to_json(path)
    assert "rejected" not in json.loads(path.read_text()) and load_plan(path).rejected == ()
    data = json.loads(path.read_text())
    data["rejected"] = [{"source_room": [1, 2], "reason": "x"}]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"rejected\[0\]\.source_room"):
        load_plan(path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(format="x"), "not a cksim plan"),
    (lambda d: d["beams"][1].update(mu=-1), r"beams\[1\]\.mu: must be > 0"),
    (lambda d: d["beams"][0].update(source_room=[1, 2]), r"beams\[0\]\.source_room"),
    (lambda d: d["beams"][2].update(colour=1), "unknown key 'colour'"),
    (lambda d: d["beams"][1].update(source_room=[0, -700, 0]), "differs from earlier"),
    (lambda d: d.update(beams=[]), "non-empty"),
])
def test_bad_plan_files_name_the_problem(tmp_path, edit, message):
    path = tmp_path / "plan.json"
    _plan().to_json(path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message):
        load_plan(path)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_plan(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="cannot read"):
        load_plan(tmp_path / "bad.json")


def test_candidate_nodes_lie_on_the_sad_sphere_within_the_polar_limit():
    target = np.array([5.0, -3.0, 2.0])
    pts = candidate_nodes(400, 800.0, target, max_polar_deg=100.0, yaw_rad=0.3)
    r = np.linalg.norm(pts - target, axis=1)
    np.testing.assert_allclose(r, 800.0, atol=1e-9)
    polar = np.degrees(np.arccos(-(pts[:, 1] - target[1]) / 800.0))
    assert polar.max() <= 100.0 + 1e-9
    # area fraction of the cap: (1 - cos 100°) / 2 of the lattice
    assert len(pts) == pytest.approx(400 * (1 - np.cos(np.radians(100))) / 2, abs=2)
