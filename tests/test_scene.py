"""Scene loading and validation: the shipped scenes validate; broken scenes name their key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cyberknife_sim.cli import main
from cyberknife_sim.errors import SceneError
from cyberknife_sim.scene import Scene, load_scene

SCENES = sorted((Path(__file__).resolve().parents[1] / "scenes").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENES, ids=lambda p: p.name)
def test_shipped_scenes_validate(path, capsys):
    assert main(["validate", str(path)]) == 0
    assert "ok" in capsys.readouterr().out


def test_default_scene_values():
    s = load_scene(SCENES[0].parent / "default.yaml")
    assert s.tracking.mode == "spine_breathing"
    assert s.room.imaging.source_to_isocenter_mm == 2200.0
    assert [v.source_angle_deg for v in s.room.imaging.views] == [45.0, -45.0]
    assert s.simulation.duration_s == 1800.0
    assert s.motion.breathing.enabled


def test_scene_is_frozen():
    s = Scene()
    with pytest.raises(Exception, match="frozen"):
        s.simulation.seed = 3  # type: ignore[misc]


# (yaml text, the key path the message must name, a word the message must contain)
BROKEN = [
    ("simulation: {duration_s: -5}", "simulation.duration_s", "greater than 0"),
    ("simulation: {duration_s: abc}", "simulation.duration_s", "number"),
    ("simulation: {seed: -1}", "simulation.seed", "greater than or equal"),
    ("simulation: {seed: 1.5}", "simulation.seed", "integer"),
    ("simulation: {time_step_s: 0}", "simulation.time_step_s", "greater than or equal to 0.001"),
    ("simulation: {duration_s: 1, time_step_s: 0.5, foo: 2}", "simulation.foo", "unknown key"),
    ("simulation: {duration_s: 0.1, time_step_s: 0.5}", "simulation", "time_step_s"),
    ("colour: blue", "colour", "unknown key"),
    ("room: {imaging: {binning: 3}}", "room.imaging.binning", "1, 2, 4 or 8"),
    ("room: {imaging: {pixel_spacing_mm: -0.4}}", "room.imaging.pixel_spacing_mm", "greater"),
    ("room: {imaging: {views: [{name: A, source_angle_deg: 45}]}}", "room.imaging.views",
     "at least 2"),
    ("room: {imaging: {views: [{name: A, source_angle_deg: 45},"
     " {name: A, source_angle_deg: -45}]}}",
     "room.imaging", "distinct"),
    ("room: {imaging: {views: [{name: A, source_angle_deg: 145},"
     " {name: B, source_angle_deg: -45}]}}",
     "room.imaging.views.0.source_angle_deg", "less than or equal"),
    ("room: {imaging: {views: [{name: A}, {name: B, source_angle_deg: -45}]}}",
     "room.imaging.views.0.source_angle_deg", "missing"),
    ("room: {robot: {base_position_mm: [1, 2]}}", "room.robot.base_position_mm", ""),
    ("room: {couch: {size_mm: [1, 2, x]}}", "room.couch.size_mm.2", "number"),
    ("patient: {ct: missing_ct.nii.gz, phantom: null, target_ct_mm: [0, 0, 0]}", "patient.ct",
     "not found"),
    ("patient: {ct: missing_ct.nii.gz, phantom: null}", "patient.ct", "not found"),
    ("patient: {phantom: 'bad name!'}", "patient.phantom", "pattern"),
    ("patient: {phantom: cervical}", "patient.phantom", "unknown phantom preset (known: "),
    ("plan: {sad_mm: 80}", "plan.sad_mm", "greater than or equal"),
    ("plan: {file: nope.json}", "plan.file", "not found"),
    ("plan: {n_beams: 0}", "plan.n_beams", "greater than or equal"),
    ("motion: {breathing: {period_s: 0.2}}", "motion.breathing.period_s", "greater"),
    ("motion: {breathing: {enabled: maybe}}", "motion.breathing.enabled", "boolean"),
    ("motion: {spine: {shifts: [{translation_mm: [0, 0, 5]}]}}", "motion.spine.shifts.0.time_s",
     "missing"),
    ("motion: {trace: {file: no_trace.txt}}", "motion.trace.file", "not found"),
    ("tracking: {mode: psychic}", "tracking.mode", "'none', 'spine' or 'spine_breathing'"),
    ("tracking: {imaging_interval_s: 1}", "tracking.imaging_interval_s", "greater"),
    ("tracking: {correlation: {model: cubic}}", "tracking.correlation.model", "linear"),
    ("tracking: {predictor: {method: oracle}}", "tracking.predictor.method", "nlms"),
    ("tracking: {markers: {rate_hz: -26}}", "tracking.markers.rate_hz", "greater"),
    ("tracking: {markers: {dropout_probability: 1.0}}",
     "tracking.markers.dropout_probability", "less than 1"),
    ("tracking: [1, 2]", "tracking", "valid dictionary"),
    ("- just\n- a list", "(top level)", "mapping"),
    ("simulation:\n  duration_s: [unclosed", "line", "YAML syntax error"),
    ("simulation: {duration_s: 10\n", "line", "YAML syntax error"),
    ("room:\n\timaging: {}", "line", "YAML syntax error"),
]


@pytest.mark.parametrize(("text", "key", "word"), BROKEN, ids=[b[1] for b in BROKEN])
def test_broken_scene_names_key(tmp_path, capsys, text, key, word):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines, "no error message"
    assert all(line.startswith(f"cksim validate: error: {path}: ") for line in lines), err
    assert any(f": {key}" in line and word in line for line in lines), err
    assert "Traceback" not in err


def test_all_problems_reported_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("simulation: {duration_s: -1, seed: x}\nplan: {sad_mm: 5}\nfoo: 1\n")
    with pytest.raises(SceneError) as info:
        load_scene(path)
    keys = {line.split(": ")[1] for line in info.value.problems}
    assert keys == {"simulation.duration_s", "simulation.seed", "plan.sad_mm", "foo"}


def test_relative_paths_resolve_against_scene_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    trace = tmp_path / "sub" / "trace.txt"
    trace.write_text("0 0\n1 1\n")
    scene_file = tmp_path / "sub" / "s.yaml"
    scene_file.write_text("motion: {trace: {file: trace.txt, columns: [1]}}\n")
    assert load_scene(scene_file).motion.trace.file == trace.resolve()


def test_missing_scene_file(capsys, tmp_path):
    assert main(["validate", str(tmp_path / "none.yaml")]) == 2
    assert "scene file not found" in capsys.readouterr().err


def test_cli_process_has_no_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("simulation: {duration_s: -5}\n")
    proc = subprocess.run([sys.executable, "-m", "cyberknife_sim.cli", "validate", str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "simulation.duration_s" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_scene_docs_are_current(repo_root):
    proc = subprocess.run([sys.executable, str(repo_root / "scripts" / "gen_scene_docs.py"),
                           "--check"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
