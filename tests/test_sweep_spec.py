"""The sweep spec: validation errors (one line, naming the spec file, the key path and the
value), run expansion (counts, order, parameters, ids) and overrides equal to a hand-written
scene."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cyberknife_sim.errors import SceneError
from cyberknife_sim.scene import load_scene, scene_from_dict
from cyberknife_sim.sweep import RunSpec, SweepSpec, load_sweep_spec

BASE = """\
name: base
motion:
  breathing: {hysteresis_deg: 5}
simulation: {duration_s: 60, seed: 7}
"""


def _write(tmp_path: Path, body: str, *, base: str = BASE, name: str = "spec.yaml") -> Path:
    (tmp_path / "scenes").mkdir(exist_ok=True)
    (tmp_path / "scenes" / "base.yaml").write_text(base)
    (tmp_path / "sweeps").mkdir(exist_ok=True)
    path = tmp_path / "sweeps" / name
    path.write_text("base: ../scenes/base.yaml\n" + body)
    return path


def _error(path: Path) -> list[str]:
    with pytest.raises(SceneError) as info:
        load_sweep_spec(path)
    return info.value.problems


GRID_3x2 = """\
grid:
  motion.breathing.hysteresis_deg: [0, 10, 20]
  tracking.mode: [spine_breathing, spine]
seeds: [3, 4]
"""


# ------------------------------------------------------------------------ validation errors


def test_unknown_key_path_names_spec_file_and_path(tmp_path):
    path = _write(tmp_path, "grid:\n  motion.breathing.hystersis_deg: [0, 10]\n")
    assert _error(path) == [f"{path}: grid.motion.breathing.hystersis_deg: unknown scene key "
                            "(did you mean hysteresis_deg?)"]


@pytest.mark.parametrize(("body", "where"), [
    ("set: {tracking.predictr.method: rls}\n", "set.tracking.predictr.method"),
    ("random: {n: 2, params: {tracking.foo: {uniform: [0, 1]}}}\n", "random.params.tracking.foo"),
    ("traces: {key: motion.trace.fil, files: ['*.yaml']}\n", "traces.key.motion.trace.fil"),
    ("set: {tracking.mode.x: 1}\n", "set.tracking.mode.x"),
    ("set: {room.imaging.views.5.name: C}\n", "set.room.imaging.views.5.name"),
])
def test_bad_key_paths_in_every_part(tmp_path, body, where):
    path = _write(tmp_path, body)
    problems = _error(path)
    assert len(problems) == 1 and problems[0].startswith(f"{path}: {where}: ")


def test_bad_value_names_path_and_value(tmp_path):
    path = _write(tmp_path, "grid:\n  tracking.predictor.latency_s: [0.1, -0.2]\n")
    (line,) = _error(path)
    assert line.startswith(f"{path}: grid.tracking.predictor.latency_s: ")
    assert "greater than or equal to 0" in line and line.endswith("(got -0.2)")


def test_value_that_breaks_a_cross_field_rule_names_the_run(tmp_path):
    path = _write(tmp_path, "set: {simulation.duration_s: 0.01}\n")
    (line,) = _error(path)
    assert line.startswith(f"{path}: the run with set.simulation.duration_s=0.01: "
                           "simulation.time_step_s: ")


def test_glob_without_match_names_the_glob(tmp_path):
    path = _write(tmp_path, "traces: {files: ['../traces/*.csv']}\n")
    (line,) = _error(path)
    assert line.startswith(f"{path}: traces.files: no file matches '../traces/*.csv'")


def test_base_missing_key_missing_file_and_unreadable(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("grid: {tracking.mode: [spine]}\n")
    assert _error(path) == [f"{path}: base: required key is missing"]
    path.write_text("base: nowhere.yaml\n")
    (line,) = _error(path)
    assert line.startswith(f"{path}: base: scene file not found")
    (tmp_path / "bin.yaml").write_bytes(b"\x00\x01binary")
    path.write_text("base: bin.yaml\n")
    (line,) = _error(path)
    assert line.startswith(f"{path}: base: ") and "not a YAML text file" in line
    path.write_text(f"base: {tmp_path}\n")
    (line,) = _error(path)
    assert line.startswith(f"{path}: base: ") and "is a folder" in line


def test_bad_base_scene_is_reported_with_both_files(tmp_path):
    path = _write(tmp_path, "", base="simulation: {duration_s: -1}\n")
    (line,) = _error(path)
    assert line.startswith(f"{path}: base: ") and "base.yaml: simulation.duration_s" in line


def test_unknown_top_level_key_gets_a_suggestion(tmp_path):
    path = _write(tmp_path, "gird: {tracking.mode: [spine]}\n")
    (line,) = _error(path)
    assert line.startswith(f"{path}: gird: unknown key") and line.endswith("did you mean 'grid'?")


@pytest.mark.parametrize(("dist", "says"), [
    ("{normal: [0, 1]}", "latency_s.normal: unknown key"),
    ("{uniform: [0.3, 0.1]}", "needs lo < hi"),
    ("{loguniform: [0, 0.1]}", "lo must be > 0"),
    ("{uniform: [0, 1], choice: [1]}", "give exactly one of"),
    ("{uniform: [0, 1, 2]}", "at most 2 items"),
    ("{randint: [0.5, 2]}", "valid integer"),
])
def test_random_with_bad_distribution(tmp_path, dist, says):
    path = _write(tmp_path, f"random: {{n: 3, params: {{tracking.predictor.latency_s: {dist}}}}}\n")
    problems = _error(path)
    assert len(problems) == 1 and says in problems[0], problems
    assert problems[0].startswith(f"{path}: random.params.tracking.predictor.latency_s")


@pytest.mark.parametrize(("body", "says"), [
    ("seeds: [1, 1]\n", "seeds: a value is listed twice"),
    ("seeds: {range: [3, 1]}\n", "first < stop"),
    ("seeds: [-1]\n", "greater than or equal to 0"),
    ("set: {simulation.seed: 1}\nseeds: [0]\n", "set.simulation.seed: not allowed"),
    ("set: {tracking.mode: spine}\ngrid: {tracking.mode: [spine]}\n", "also in set"),
    ("grid: {tracking.mode: [spine, spine]}\n", "listed twice"),
    ("imaging: drr\n", "imaging: Input should be 'xray' or 'truth'"),
    ("grid: {simulation.seed: [1, 2]}\n" + "random: {n: 100000, params: "
     "{tracking.predictor.latency_s: {uniform: [0, 1]}}}\n", "more than 100,000"),
])
def test_other_spec_errors(tmp_path, body, says):
    problems = _error(_write(tmp_path, body))
    assert len(problems) == 1 and says in problems[0], problems


# ------------------------------------------------------------------------ expansion


def test_grid_times_seeds_count_order_and_params(tmp_path):
    spec = load_sweep_spec(_write(tmp_path, GRID_3x2))
    runs = spec.runs()
    assert isinstance(spec, SweepSpec) and all(isinstance(r, RunSpec) for r in runs)
    assert len(runs) == 12
    expected = [(h, m, s) for h in (0, 10, 20) for m in ("spine_breathing", "spine")
                for s in (3, 4)]
    got = [(r.params["motion.breathing.hysteresis_deg"], r.params["tracking.mode"], r.seed)
           for r in runs]
    assert got == expected
    assert all(set(r.params) == {"motion.breathing.hysteresis_deg", "tracking.mode"}
               for r in runs)
    for r in runs:
        assert r.scene_data["motion"]["breathing"]["hysteresis_deg"] == r.params[
            "motion.breathing.hysteresis_deg"]
        assert r.scene_data["tracking"]["mode"] == r.params["tracking.mode"]
        assert r.scene_data["simulation"]["seed"] == r.seed
        assert r.scene_data["simulation"]["duration_s"] == 60.0  # from the base scene
        assert r.imaging == "xray" and r.scene().simulation.seed == r.seed
    assert spec.varied == ["motion.breathing.hysteresis_deg", "tracking.mode"]
    assert spec.name == "spec"


def test_ids_unique_stable_and_sensitive_to_every_value(tmp_path):
    path = _write(tmp_path, GRID_3x2)
    first = [r.run_id for r in load_sweep_spec(path).runs()]
    again = [r.run_id for r in load_sweep_spec(path).runs()]
    assert first == again and len(set(first)) == 12
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in first)
    variants = [GRID_3x2.replace("[0, 10, 20]", "[0, 10, 21]"),
                GRID_3x2.replace("[3, 4]", "[3, 5]"),
                GRID_3x2 + "imaging: truth\n",
                GRID_3x2 + "set: {tracking.predictor.latency_s: 0.2}\n"]
    for k, body in enumerate(variants):
        other = load_sweep_spec(_write(tmp_path, body, name=f"v{k}.yaml"))
        changed = set(first) - {r.run_id for r in other.runs()}
        assert changed, body
    # only the runs with the changed value get new ids
    other = load_sweep_spec(_write(tmp_path, variants[0], name="v0.yaml"))
    assert len(set(first) & {r.run_id for r in other.runs()}) == 8


def test_override_equals_the_scene_written_by_hand(tmp_path):
    body = ("set:\n  tracking.predictor.latency_s: 0.2\n  room.imaging.views.0.source_angle_deg: 40"
            "\n  motion.spine.drift_mm_per_min: [0, 0, 0.3]\n"
            "grid: {tracking.correlation.model: [linear]}\nseeds: [11]\n")
    (run,) = load_sweep_spec(_write(tmp_path, body)).runs()
    by_hand = tmp_path / "scenes" / "by_hand.yaml"
    by_hand.write_text("""\
name: base
motion:
  breathing: {hysteresis_deg: 5}
  spine: {drift_mm_per_min: [0, 0, 0.3]}
simulation: {duration_s: 60, seed: 11}
tracking:
  predictor: {latency_s: 0.2}
  correlation: {model: linear}
room:
  imaging:
    views: [{name: A, source_angle_deg: 40}, {name: B, source_angle_deg: -45}]
""")
    expected = load_scene(by_hand)
    assert run.scene().model_dump() == expected.model_dump()
    assert run.scene_data == expected.model_dump(mode="json")


def test_random_samples_are_seeded_and_in_range(tmp_path):
    body = """\
random:
  n: 50
  seed: 3
  params:
    tracking.predictor.latency_s: {uniform: [0.05, 0.25]}
    tracking.imaging_interval_s: {choice: [15, 30, 60]}
    motion.breathing.period_s: {loguniform: [2, 8]}
    tracking.correlation.n_points: {randint: [8, 10]}
"""
    runs = load_sweep_spec(_write(tmp_path, body)).runs()
    assert len(runs) == 50
    lat = np.array([r.params["tracking.predictor.latency_s"] for r in runs])
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(lat, rng.uniform(0.05, 0.25, 50))  # first drawn, same rng
    assert {r.params["tracking.imaging_interval_s"] for r in runs} == {15, 30, 60}
    period = np.array([r.params["motion.breathing.period_s"] for r in runs])
    assert period.min() >= 2 and period.max() < 8
    assert {r.params["tracking.correlation.n_points"] for r in runs} == {8, 9, 10}
    assert all(r.scene_data["tracking"]["predictor"]["latency_s"] == r.params[
        "tracking.predictor.latency_s"] for r in runs)
    assert [r.run_id for r in runs] == [r.run_id for r in load_sweep_spec(
        _write(tmp_path, body)).runs()]


def test_repeated_random_draws_give_one_run(tmp_path):
    body = "random: {n: 30, params: {tracking.imaging_interval_s: {choice: [15, 30]}}}\n"
    runs = load_sweep_spec(_write(tmp_path, body)).runs()
    assert sorted(r.params["tracking.imaging_interval_s"] for r in runs) == [15, 30]


def test_traces_glob_relative_to_spec_sorted_and_crossed(tmp_path):
    traces = tmp_path / "sweeps" / "traces"
    traces.mkdir(parents=True)
    for name in ("b.csv", "a.csv", "c.txt"):
        (traces / name).write_text("0,0,0,0\n")
    body = ("traces: {files: ['traces/*.csv']}\ngrid: {tracking.mode: [spine, spine_breathing]}"
            "\nseeds: {range: [0, 3]}\n")
    spec = load_sweep_spec(_write(tmp_path, body))
    runs = spec.runs()
    assert len(runs) == 2 * 2 * 3
    assert [r.params["motion.trace.file"] for r in runs[:6]] == ["a.csv"] * 3 + ["b.csv"] * 3
    assert runs[0].scene_data["motion"]["trace"]["file"] == str((traces / "a.csv").resolve())
    assert [r.seed for r in runs[:3]] == [0, 1, 2]
    assert spec.trace_files == [(traces / "a.csv").resolve(), (traces / "b.csv").resolve()]


def test_no_parts_is_one_run_of_the_base_scene(tmp_path):
    (run,) = load_sweep_spec(_write(tmp_path, "")).runs()
    base = load_scene(tmp_path / "scenes" / "base.yaml")
    assert run.params == {} and run.seed == 7
    assert run.scene_data == base.model_dump(mode="json")
    assert scene_from_dict(run.scene_data) == base.model_copy(update={"source": None})


def test_thousand_runs_resolve(tmp_path):
    body = ("grid:\n  motion.breathing.hysteresis_deg: [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]\n"
            "random: {n: 10, params: {tracking.predictor.latency_s: {uniform: [0.05, 0.25]}}}\n"
            "seeds: {range: [0, 10]}\n")
    runs = load_sweep_spec(_write(tmp_path, body)).runs()
    assert len(runs) == 1000 == len({r.run_id for r in runs})
    assert math.isclose(runs[-1].scene_data["motion"]["breathing"]["hysteresis_deg"], 45.0)
