"""A run is defined by its scene and seed: same outputs bit for bit across processes, from the
run folder's own scene.yaml, and whatever the run's length."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cyberknife_sim.scene import load_scene
from cyberknife_sim.simulation import simulate

WALL_CLOCK = {"realtime_factor", "realtime_factor_with_setup", "loop_wall_s", "setup_wall_s",
              "imaging_wall_s", "mean_step_ms", "scene_file"}


def _run(args: list[str]) -> None:
    code = "import sys; from cyberknife_sim.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr


def _summary(path) -> dict:
    s = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in s.items() if k not in WALL_CLOCK}


def test_two_processes_and_the_run_folders_scene_give_the_same_run(tmp_path):
    """Live X-ray imaging (noise, registration), the PyBullet robot, the generated plan."""
    a, b = tmp_path / "a", tmp_path / "b"
    _run(["run", "scenes/default.yaml", "--out", str(a), "--duration-s", "25", "--seed", "7",
          "--no-plots", "--quiet"])
    # the second process runs the first run's resolved scene, with no overrides
    _run(["run", str(a / "scene.yaml"), "--out", str(b), "--no-plots", "--quiet"])
    assert (a / "timeseries.csv").read_bytes() == (b / "timeseries.csv").read_bytes()
    assert (a / "beams.csv").read_bytes() == (b / "beams.csv").read_bytes()
    sa, sb = _summary(a / "summary.json"), _summary(b / "summary.json")
    assert sa == sb
    assert sa["seed"] == 7 and sa["duration_requested_s"] == 25.0
    assert sa["images"]["total"] >= 5  # the model-building burst was imaged and registered
    assert load_scene(a / "scene.yaml") == load_scene(b / "scene.yaml").model_copy(
        update={"source": (a / "scene.yaml").resolve()})


@pytest.mark.parametrize("imaging", ["truth", pytest.param("xray", marks=pytest.mark.slow)])
def test_the_first_60_s_do_not_depend_on_the_run_length(imaging):
    scene = load_scene("scenes/default.yaml")
    short = simulate(scene, seed=3, duration_s=60.0, imaging=imaging).record
    long = simulate(scene, seed=3, duration_s=120.0, imaging=imaging).record
    n = short.n_steps
    assert n == round(60.0 / scene.simulation.time_step_s) and long.n_steps > n
    for name in ("time_s", "target_true", "target_commanded", "beam_source", "beam_direction",
                 "error_vec", "beam_on_s", "hold_mask", "ext_true", "ext_predicted",
                 "robot_error_mm"):
        np.testing.assert_array_equal(getattr(long, name)[:n], getattr(short, name), name)
    for name, v in short.components.items():
        np.testing.assert_array_equal(long.components[name][:n], v, name)
    early = [e for e in long.events if e["time_s"] < 60.0 - 1e-9]
    assert early == [e for e in short.events if e["kind"] != "stopped"]
