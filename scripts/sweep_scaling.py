"""Measure the sweep runner: 1 vs 2 workers, its overhead against plain runs, and a cluster of
``dask scheduler`` + two ``dask worker`` processes giving the same results bit for bit.

    python scripts/sweep_scaling.py [--runs 16] [--duration-s 300] [--imaging truth]

Prints the figures quoted in ``docs/sweep_running.md``. Every run is the default scene
(dose off) with its own seed, ``--duration-s`` simulated seconds, ``--imaging`` seam.

(a) speed-up: the same sweep on a warm 1-worker and a warm 2-worker ``LocalCluster`` (the
    cluster start-up, a one-off, is timed separately);
(b) overhead: the 1-worker sweep against the same runs simulated one after the other in this
    process (warm, no Dask): ``sweep / plain - 1``;
(c) cluster: ``dask scheduler`` and two ``dask worker`` subprocesses on this machine; the
    sweep pointed at the scheduler address; its ``results.parquet`` compared column by column
    with the LocalCluster one (every column except the wall-clock ones and ``worker``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import distributed

from cyberknife_sim.scene import load_scene, scene_from_dict
from cyberknife_sim.simulation import simulate
from cyberknife_sim.sweep._results import TIMING_COLUMNS, read_results
from cyberknife_sim.sweep._runner import run_sweep
from cyberknife_sim.sweep._worker import WarmUp

REPO = Path(__file__).resolve().parents[1]


def make_runs(n: int, *, duration_s: float, imaging: str) -> list[dict]:
    """``n`` runs of the default scene (dose off), seeds 0..n-1, as plain dicts."""
    data = load_scene(REPO / "scenes" / "default.yaml").model_dump(mode="json")
    data["simulation"]["duration_s"] = duration_s
    data["dose"]["enabled"] = False
    runs = []
    for seed in range(n):
        d = json.loads(json.dumps(data))
        d["simulation"]["seed"] = seed
        runs.append({"run_id": f"{seed:016x}", "seed": seed, "params": {}, "scene_data": d,
                     "imaging": imaging})
    return runs


def timed_sweep(runs: list[dict], out: Path, n_workers: int) -> tuple[float, float]:
    """(start-up s, sweep s) of ``runs`` on a fresh, warmed LocalCluster of ``n_workers``."""
    t0 = time.perf_counter()
    with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        client.register_plugin(WarmUp(runs[0]))
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        outcome = run_sweep(runs, out, scheduler=cluster.scheduler_address, progress=False)
        sweep = time.perf_counter() - t1
    assert outcome.ok + outcome.stopped == len(runs), outcome
    return startup, sweep


def plain_runs(runs: list[dict]) -> float:
    """Wall time (s) of the runs one after the other in this process (after a warm-up)."""
    scenes = [scene_from_dict(r["scene_data"]) for r in runs]
    simulate(scenes[0], imaging=runs[0]["imaging"], duration_s=0.5)  # warm, as a worker is
    t0 = time.perf_counter()
    for s, r in zip(scenes, runs, strict=True):
        simulate(s, imaging=r["imaging"])
    return time.perf_counter() - t0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dask_processes(n_workers: int = 2, *, warm_run: dict | None = None):
    """``dask scheduler`` and ``n_workers`` ``dask worker --nthreads 1`` subprocesses (warmed
    with ``warm_run``'s scene); yields the scheduler address."""
    dask = str(Path(sys.executable).with_name("dask"))
    address = f"tcp://127.0.0.1:{_free_port()}"
    port = address.rsplit(":", 1)[1]
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", port,
                               "--no-dashboard"], stderr=subprocess.DEVNULL)]
    try:
        procs += [subprocess.Popen([dask, "worker", address, "--nthreads", "1",
                                    "--no-dashboard"], stderr=subprocess.DEVNULL)
                  for _ in range(n_workers)]
        with distributed.Client(address, timeout="60s") as client:
            client.wait_for_workers(n_workers, timeout=120)
            client.register_plugin(WarmUp(warm_run))
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def reproducible_rows(out: Path) -> list[dict]:
    """The rows of ``out/results.parquet`` without the wall-clock and worker columns."""
    rows = read_results(out).to_pylist()
    return sorted(({k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows),
                  key=lambda r: r["run_id"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=16)
    ap.add_argument("--duration-s", type=float, default=300.0)
    ap.add_argument("--imaging", choices=["truth", "xray"], default="truth")
    ap.add_argument("--skip-cluster", action="store_true")
    args = ap.parse_args(argv)
    runs = make_runs(args.runs, duration_s=args.duration_s, imaging=args.imaging)
    tmp = Path(tempfile.mkdtemp(prefix="cksim-sweep-scaling-"))
    print(f"{args.runs} runs: default scene, dose off, {args.duration_s:g} s simulated, "
          f"imaging {args.imaging}; out {tmp}")
    plain = plain_runs(runs)
    print(f"plain simulate, one after the other: {plain:.2f} s ({plain / len(runs):.3f} s/run)")
    up1, t1 = timed_sweep(runs, tmp / "w1", 1)
    print(f"sweep, 1 worker: {t1:.2f} s (cluster start + warm-up {up1:.1f} s)")
    up2, t2 = timed_sweep(runs, tmp / "w2", 2)
    print(f"sweep, 2 workers: {t2:.2f} s (cluster start + warm-up {up2:.1f} s)")
    walls = [r["wall_s"] for r in read_results(tmp / "w1").to_pylist()]
    print(f"(a) speed-up 2 vs 1 workers: {t1 / t2:.2f}x (goal >= 1.8x)")
    print(f"(b) sweep overhead vs plain runs, 1 worker: {100 * (t1 / plain - 1):+.1f} % "
          f"(goal <= 10 %); run_one wall on the worker {sum(walls):.2f} s in all, "
          f"{100 * (sum(walls) / plain - 1):+.1f} % vs plain")
    print(f"    Dask + results file per run, 1 worker: (sweep - sum of run walls) / runs = "
          f"{(t1 - sum(walls)) / len(runs) * 1e3:.0f} ms/run, "
          f"{100 * (t1 / sum(walls) - 1):+.1f} %")
    same = reproducible_rows(tmp / "w1") == reproducible_rows(tmp / "w2")
    print(f"1-worker and 2-worker results equal bit for bit: {same}")
    if not args.skip_cluster:
        t0 = time.perf_counter()
        with dask_processes(2, warm_run=runs[0]) as address:
            up = time.perf_counter() - t0
            t0 = time.perf_counter()
            run_sweep(runs, tmp / "cluster", scheduler=address, progress=False)
            tc = time.perf_counter() - t0
        same_c = reproducible_rows(tmp / "cluster") == reproducible_rows(tmp / "w2")
        n_cols = len(reproducible_rows(tmp / "cluster")[0])
        print(f"(c) dask scheduler + 2 dask workers at {address}: sweep {tc:.2f} s (processes "
              f"up and warm in {up:.1f} s); results.parquet equal to the LocalCluster's "
              f"bit for bit ({n_cols} columns x {len(runs)} rows, wall-clock columns "
              f"excluded): {same_c}")
        same = same and same_c
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
