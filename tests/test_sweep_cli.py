"""``cksim sweep --dry-run`` and the exit-2 errors of ``cksim sweep`` / ``cksim sweep-report``
(in a real process: one line on stderr, no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cyberknife_sim.cli import main

SPEC = """\
name: tiny
base: ../scenes/base.yaml
grid:
  motion.breathing.hysteresis_deg: [0, 10, 20]
  tracking.mode: [spine_breathing, spine]
random:
  n: 2
  params:
    tracking.predictor.latency_s: {uniform: [0.05, 0.25]}
seeds: [0, 1]
"""


def _spec(tmp_path: Path, text: str = SPEC) -> Path:
    (tmp_path / "scenes").mkdir(exist_ok=True)
    (tmp_path / "scenes" / "base.yaml").write_text("simulation: {duration_s: 30}\n")
    (tmp_path / "sweeps").mkdir(exist_ok=True)
    path = tmp_path / "sweeps" / "tiny.yaml"
    path.write_text(text)
    return path


def _cksim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cyberknife_sim.cli", *args],
                          capture_output=True, text=True, check=False, timeout=120)


def test_dry_run_prints_count_and_varied_parameters(tmp_path):
    proc = _cksim("sweep", str(_spec(tmp_path)), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("tiny: 24 runs (grid 3 x 2 x random 2 samples (seed 0) x seeds 2")
    assert "  motion.breathing.hysteresis_deg: 0, 10, 20" in lines
    assert "  tracking.mode: spine_breathing, spine" in lines
    assert "  tracking.predictor.latency_s: uniform [0.05, 0.25]" in lines
    assert lines[-1] == "seeds: 0, 1"
    assert not (tmp_path / "out").exists()


def test_unknown_key_path_is_one_line_exit_2(tmp_path):
    path = _spec(tmp_path, SPEC.replace("hysteresis_deg", "hystersis_deg"))
    proc = _cksim("sweep", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr == (f"cksim sweep: error: {path}: grid.motion.breathing.hystersis_deg: "
                           "unknown scene key (did you mean hysteresis_deg?)\n")
    assert proc.stdout == "" and not (tmp_path / "out").exists()  # nothing ran


@pytest.mark.parametrize(("args", "says"), [
    (["--dry-run", "--workers", "0"], "--workers must be >= 1 (got 0)"),
    ([], "--out DIR is required"),
    (["--out", "/proc/x"], "virtual file system"),
])
def test_option_errors_exit_2(tmp_path, capsys, args, says):
    assert main(["sweep", str(_spec(tmp_path)), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and err.startswith("cksim sweep: error: ")


def test_bad_value_and_missing_spec_exit_2(tmp_path, capsys):
    path = _spec(tmp_path, SPEC.replace("[0.05, 0.25]}", "[0.05, 0.25]}\n  seed: -3"))
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cksim sweep: error: {path}: random.seed: ") and "(got -3)" in err
    assert main(["sweep", str(tmp_path / "none.yaml"), "--dry-run"]) == 2
    assert capsys.readouterr().err == (f"cksim sweep: error: {tmp_path / 'none.yaml'}: "
                                       "sweep spec not found\n")


def test_sweep_report_without_results_exit_2(tmp_path):
    proc = _cksim("sweep-report", str(tmp_path / "none"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "no such folder" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cksim("sweep-report", str(tmp_path))
    assert proc.returncode == 2 and "no results.parquet" in proc.stderr


def test_sweep_report_of_an_empty_results_file_exit_2(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"run_id": pa.array([], pa.string())}), tmp_path / "results.parquet")
    assert main(["sweep-report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cksim sweep-report: error: ") and err.count("\n") == 1
