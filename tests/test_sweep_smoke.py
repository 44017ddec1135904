"""The studies of ``studies/``: every spec validates with its documented run count, and the
smoke study runs end to end on a Dask ``LocalCluster`` with the same metrics as plain runs."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from cyberknife_sim.simulation import simulate
from cyberknife_sim.sweep import load_sweep_spec, read_results, run_sweep, write_sweep_report
from cyberknife_sim.sweep._results import flatten_summary

STUDIES = Path(__file__).resolve().parents[1] / "studies"

# runs of each study as documented in studies/README.md and in each spec's header comment
DOCUMENTED_RUNS = {"smoke": 4, "phase_shift": 126, "spine_drift": 32, "interval_latency": 120,
                   "slice_thickness": 15, "predictors_traces": 56}
NEEDS_SHARED = {"predictors_traces"}  # its traces are ../shared/data/traces/*

# metrics that measure this machine's wall clock, not the simulation: they differ run to run
WALL_CLOCK = ("realtime_factor", "realtime_factor_with_setup", "loop_wall_s", "setup_wall_s",
              "imaging_wall_s", "mean_step_ms")


def _study(name: str):
    marks = [pytest.mark.shared_data] if name in NEEDS_SHARED else []
    return pytest.param(name, marks=marks, id=name)


def test_every_spec_in_studies_is_listed():
    """A new study must be added to DOCUMENTED_RUNS (and to studies/README.md)."""
    assert {p.stem for p in STUDIES.glob("*.yaml")} == set(DOCUMENTED_RUNS)
    readme = (STUDIES / "README.md").read_text(encoding="utf-8")
    for name, n in DOCUMENTED_RUNS.items():
        assert re.search(rf"`{name}\.yaml`.*\|\s*{n}\s*\|", readme), (name, n)


@pytest.mark.parametrize("name", [_study(n) for n in DOCUMENTED_RUNS])
def test_study_validates_with_its_documented_runs(name):
    """Every run resolves to a valid scene; the count is the product of the spec's parts and
    what the spec's header comment says (``= N runs``); run ids are distinct."""
    path = STUDIES / f"{name}.yaml"
    spec = load_sweep_spec(path)
    runs = spec.runs()
    n_traces = len(spec.trace_files) if spec.traces is not None else 1
    n_random = spec.random.n if spec.random is not None else 1
    expected = (math.prod(len(v) for v in spec.grid.values()) * n_random * n_traces
                * len(spec.seeds or (0,)))
    assert len(runs) == expected == DOCUMENTED_RUNS[name]
    header = re.search(r"=\s*(\d+)\s+runs?", path.read_text(encoding="utf-8"))
    assert header is not None and int(header.group(1)) == expected
    assert len({r.run_id for r in runs}) == len(runs)
    assert all(set(r.params) == set(spec.varied) for r in runs)
    for r in runs[:: max(1, len(runs) // 5)]:  # a few rebuild on a worker as they were resolved
        assert r.scene().model_dump(mode="json") == r.scene_data


@pytest.mark.shared_data
def test_predictor_study_covers_every_target_trace(shared_data):
    """Study e takes every multi-column (target) trace of ../shared/data/traces, each at least
    as long as the simulated time."""
    spec = load_sweep_spec(STUDIES / "predictors_traces.yaml")
    targets = {p.resolve() for p in (shared_data / "traces").glob("*.txt")
               if np.loadtxt(p, max_rows=1).size >= 4}
    assert set(spec.trace_files) == targets and len(targets) == 4
    # every trace lasts the whole run (a shorter one fails the run: a row, not a result)
    for run in spec.runs():
        t_s = np.loadtxt(run.scene_data["motion"]["trace"]["file"], usecols=0)
        assert t_s[-1] - t_s[0] >= run.scene_data["simulation"]["duration_s"], run.params


def test_smoke_study_end_to_end(tmp_path):
    """4 ok rows on a 2-worker LocalCluster, metrics bit for bit those of plain ``simulate``
    runs of the same scenes (the seed travels with the task), then the report."""
    spec = load_sweep_spec(STUDIES / "smoke.yaml")
    outcome = run_sweep(spec, tmp_path, workers=2, progress=False)
    assert (outcome.ok, outcome.failed, outcome.stopped) == (4, 0, 0)
    table = read_results(tmp_path).to_pylist()
    by_id = {row["run_id"]: row for row in table}
    assert set(by_id) == {r.run_id for r in spec.runs()}
    assert all(row["status"] == "ok" for row in table)
    assert {row["worker"] for row in table} != {"local"}
    runs = spec.runs()
    for run in (runs[0], runs[-1]):  # spine seed 0, spine_breathing seed 1
        row = by_id[run.run_id]
        assert row["seed"] == run.seed and row["param.tracking.mode"] == run.params[
            "tracking.mode"]
        plain = flatten_summary(simulate(run.scene(), imaging=run.imaging).summary.to_dict())
        compared = {k: v for k, v in plain.items() if k not in WALL_CLOCK}
        assert len(compared) > 30 and "targeting_error_mm.rms" in compared
        for key, value in compared.items():
            got = row[key]
            assert (got == value) or (got is None and value is None) or (
                isinstance(got, float) and np.isnan(got) and value is None), (key, got, value)
    # the two modes differ (the rows are not one run copied)
    rms = {r["param.tracking.mode"]: r["targeting_error_mm.rms"] for r in table if r["seed"] == 0}
    assert rms["spine"] != rms["spine_breathing"]
    report = write_sweep_report(tmp_path)
    assert report.is_file() and "targeting_error_mm.rms" in report.read_text(encoding="utf-8")
    assert any((tmp_path / "plots").glob("*tracking.mode*.png"))
