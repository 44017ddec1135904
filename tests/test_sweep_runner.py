"""The sweep runner on Dask: rows = runs, results equal a plain simulate bit for bit, failures
are rows, resume runs only what is missing, results.parquet stays valid."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cyberknife_sim.scene import load_scene, scene_from_dict
from cyberknife_sim.simulation import simulate
from cyberknife_sim.sweep._results import (
    TIMING_COLUMNS,
    flatten_summary,
    read_results,
    write_results,
)
from cyberknife_sim.sweep._runner import run_sweep
from cyberknife_sim.sweep._worker import run_one

DURATION_S = 20.0  # long enough for beam-on time (targeting error defined), ~0.2 s a run


@dataclass
class FakeRun:
    """Stand-in for ``RunSpec`` (the fields of docs/sweep_design.md)."""

    seed: int
    scene_data: dict
    params: dict = field(default_factory=dict)
    imaging: str = "truth"
    run_id: str = ""

    def __post_init__(self):
        blob = json.dumps([self.scene_data, self.seed, self.imaging], sort_keys=True)
        self.run_id = hashlib.sha256(blob.encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def base_data(repo_root) -> dict:
    data = load_scene(repo_root / "scenes" / "default.yaml").model_dump(mode="json")
    data["simulation"]["duration_s"] = DURATION_S
    data["dose"]["enabled"] = False
    return data


def _runs(base_data: dict, seeds, latencies=(0.115,)) -> list[FakeRun]:
    runs = []
    for lat in latencies:
        for seed in seeds:
            data = json.loads(json.dumps(base_data))
            data["simulation"]["seed"] = seed
            data["tracking"]["predictor"]["latency_s"] = lat
            runs.append(FakeRun(seed=seed, scene_data=data,
                                params={"tracking.predictor.latency_s": lat}))
    return runs


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as c:
        yield c


def _metrics(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMING_COLUMNS}


def test_flatten_summary_keeps_numeric_leaves():
    d = {"scene": "x", "seed": 3, "stopped_early": None, "plan_complete": True,
         "targeting_error_mm": {"rms": 0.5, "max": None}, "events": [{"kind": "hold"}],
         "outputs": ["a"], "dose": {"gamma": {"2%/1mm": {"pass_rate": 0.97}}},
         "images": {"total": 7}}
    assert flatten_summary(d) == {"plan_complete": 1.0, "targeting_error_mm.rms": 0.5,
                                  "targeting_error_mm.max": None, "images.total": 7.0,
                                  "dose.gamma.2%/1mm.pass_rate": 0.97}


def test_write_results_union_of_columns_and_atomic(tmp_path):
    path = tmp_path / "results.parquet"
    rows = [{"run_id": "a", "status": "ok", "seed": 0, "param.p": 1, "m.x": 1.5, "wall_s": 1.0},
            {"run_id": "b", "status": "failed", "reason": "Boom: x", "seed": 1, "param.p": 2.5}]
    write_results(path, rows)
    table = read_results(tmp_path)
    assert table.schema.field("param.p").type == pa.float64()
    assert table.schema.field("m.x").type == pa.float64()
    assert table.column_names[:4] == ["run_id", "status", "reason", "seed"]
    assert table.to_pylist()[1]["m.x"] is None
    assert table.to_pylist()[0]["param.p"] == 1.0
    # a write that fails leaves the previous file whole (tmp + os.replace)
    with pytest.raises((pa.ArrowException, TypeError, ValueError)):
        write_results(path, rows + [{"run_id": "c", "status": "ok", "seed": "not an int"}])
    assert pq.read_table(path).num_rows == 2


def test_run_one_failure_is_a_row(base_data):
    bad = json.loads(json.dumps(base_data))
    bad["simulation"]["duration_s"] = -1.0
    row = run_one({"run_id": "f" * 16, "seed": 0, "params": {}, "scene_data": bad,
                   "imaging": "truth"})
    assert row["status"] == "failed"
    assert "duration_s" in row["reason"] and "\n" not in row["reason"]
    assert row["wall_s"] >= 0 and row["worker"] == "local"


def test_sweep_rows_equal_plain_simulate(base_data, cluster, tmp_path):
    runs = _runs(base_data, seeds=(0, 1), latencies=(0.05, 0.25))
    bad = _runs(base_data, seeds=(9,))[0]
    bad.scene_data["simulation"]["duration_s"] = -1.0
    bad.__post_init__()
    out = run_sweep(runs + [bad], tmp_path, scheduler=cluster.scheduler_address,
                    progress=False)
    assert (out.ok, out.failed, out.skipped) == (4, 1, 0)
    rows = {r["run_id"]: r for r in read_results(tmp_path).to_pylist()}
    assert len(rows) == 5
    assert rows[bad.run_id]["status"] == "failed"
    assert "duration_s" in rows[bad.run_id]["reason"]
    assert {rows[r.run_id]["worker"] for r in runs} <= set(cluster.scheduler_info["workers"])
    for run in runs:  # seeds travel with the tasks: a worker's run is the local run
        plain = simulate(scene_from_dict(run.scene_data), imaging="truth")
        want = flatten_summary(plain.summary.to_dict())
        got = rows[run.run_id]
        assert got["status"] == "ok" and got["reason"] is None
        assert got["param.tracking.predictor.latency_s"] == run.params[
            "tracking.predictor.latency_s"]
        assert got["targeting_error_mm.rms"] is not None
        assert _metrics(got) == _metrics({**want, "run_id": run.run_id, "status": "ok",
                                          "reason": None, "seed": run.seed,
                                          "param.tracking.predictor.latency_s":
                                          run.params["tracking.predictor.latency_s"]})
    # latency changes the result: the comparison above can fail
    a, b = (rows[runs[i].run_id]["targeting_error_mm.rms"] for i in (0, 2))
    assert a != b

    # resume: drop half the rows; only those run again
    kept = [r for r in read_results(tmp_path).to_pylist() if r["run_id"] in
            {runs[0].run_id, runs[1].run_id, bad.run_id}]
    write_results(tmp_path / "results.parquet", kept)
    again = run_sweep(runs + [bad], tmp_path, scheduler=cluster.scheduler_address,
                      progress=False)
    assert (again.ran, again.skipped) == (2, 3)
    table = read_results(tmp_path).to_pylist()
    assert sorted(r["run_id"] for r in table) == sorted(rows)
    for r in table:
        assert _metrics(r) == _metrics(rows[r["run_id"]])
    # retry_failed reruns the failed row only
    retry = run_sweep(runs + [bad], tmp_path, scheduler=cluster.scheduler_address,
                      retry_failed=True, progress=False)
    assert (retry.ran, retry.failed, retry.skipped) == (1, 1, 4)
    assert read_results(tmp_path).num_rows == 5
    assert not (tmp_path / "results.parquet.tmp").exists()


def test_keep_runs_writes_the_run_folder(base_data, cluster, tmp_path):
    runs = _runs(base_data, seeds=(3,))
    out = run_sweep(runs, tmp_path, scheduler=cluster.scheduler_address, keep_runs=True,
                    progress=False)
    assert (out.ok, out.ran) == (1, 1)
    summary = json.loads((tmp_path / "runs" / runs[0].run_id / "summary.json").read_text())
    row = read_results(tmp_path).to_pylist()[0]
    assert row["targeting_error_mm.rms"] == summary["targeting_error_mm"]["rms"]
    assert row["worker"] in cluster.scheduler_info["workers"]


@pytest.mark.slow
def test_default_local_cluster(base_data, tmp_path):
    """The default path: run_sweep starts (and closes) its own LocalCluster (also covered by
    tests/test_sweep_smoke.py)."""
    runs = _runs(base_data, seeds=(4,))
    out = run_sweep(runs, tmp_path, workers=1, progress=False)
    assert (out.ok, out.ran) == (1, 1)
    assert read_results(tmp_path).to_pylist()[0]["worker"].startswith("tcp://")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_dask_scheduler_and_worker_processes_same_bits(base_data, cluster, tmp_path):
    """``dask scheduler`` + two ``dask worker`` subprocesses give the LocalCluster's rows."""
    import socket
    import subprocess
    import sys

    import distributed

    runs = _runs(base_data, seeds=(5, 6))
    run_sweep(runs, tmp_path / "local", scheduler=cluster.scheduler_address, progress=False)
    dask = str(Path(sys.executable).with_name("dask"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stderr=subprocess.DEVNULL)]
    try:
        procs += [subprocess.Popen([dask, "worker", address, "--nthreads", "1",
                                    "--no-dashboard"], stderr=subprocess.DEVNULL)
                  for _ in range(2)]
        with distributed.Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
            workers = set(client.scheduler_info()["workers"])
        out = run_sweep(runs, tmp_path / "cluster", scheduler=address, progress=False)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    assert out.ok == 2
    local = sorted(read_results(tmp_path / "local").to_pylist(), key=lambda r: r["run_id"])
    remote = sorted(read_results(tmp_path / "cluster").to_pylist(), key=lambda r: r["run_id"])
    assert [_metrics(r) for r in remote] == [_metrics(r) for r in local]
    assert {r["worker"] for r in remote} <= workers


@pytest.mark.slow
def test_dead_worker_is_a_failed_row(base_data, tmp_path):
    """A run that kills its worker process (KilledWorker) is a failed row; the sweep goes on."""
    import os

    import dask
    import distributed

    from cyberknife_sim.sweep._runner import _collect, _Progress, run_as_dict

    ok, dead = (run_as_dict(r) for r in _runs(base_data, seeds=(0, 1)))
    dead_id = dead["run_id"]

    def fn(run, keep_dir=None):  # pickled by value: exits the worker on the dead run
        return os._exit(1) if run["run_id"] == dead_id else run_one(run, keep_dir=keep_dir)

    rows: list[dict] = []
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=":0") as c, \
            distributed.Client(c) as client:
        counts = _collect(client, [dead, ok], rows, tmp_path / "results.parquet", None,
                          _Progress(2, enabled=False, skipped=0), fn=fn)
    by_id = {r["run_id"]: r for r in read_results(tmp_path).to_pylist()}
    assert len(by_id) == 2 and counts["failed"] >= 1
    assert by_id[dead_id]["status"] == "failed"
    assert by_id[dead_id]["reason"].startswith("KilledWorker")
