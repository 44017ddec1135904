"""What runs on a Dask worker: one run of a sweep, and the worker's warm-up.

A task receives plain data only (the resolved scene as a dict, its seed, the imaging seam),
so a run is reproducible on any worker, local or remote: the seed travels with the task.

Warm workers: a worker is a long-lived process, so everything the simulator caches in-process
lives across the runs it executes: the imported modules, numba's compiled DRR / dose kernels,
the phantom CT (``anatomy``'s in-process cache), the plan dose memo; and the on-disk plan and
truth caches are shared by every worker of the machine. :class:`WarmUp` (a
``distributed.WorkerPlugin``) pays the first-time costs once per worker before its first task,
by simulating the sweep's first scene for a short time, so no run's ``wall_s`` carries them.
"""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path
from typing import Any

import distributed

__all__ = ["WARMUP_DURATION_S", "WarmUp", "run_one", "warm_up"]

WARMUP_DURATION_S = 0.5
"""Simulated time of the warm-up run (s): enough to build every part and image once."""


def _worker_address() -> str:
    try:
        return distributed.get_worker().address
    except ValueError:  # not on a worker (run in-process, e.g. a test)
        return "local"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"[:500]


def _scene_of(run: dict[str, Any], *, duration_s: float | None = None):
    from ..scene import scene_from_dict

    data = copy.deepcopy(run["scene_data"])
    sim = data.setdefault("simulation", {})
    sim["seed"] = int(run["seed"])
    if duration_s is not None:
        sim["duration_s"] = duration_s
    return scene_from_dict(data, origin=f"run {run['run_id']}")


def run_one(run: dict[str, Any], *, keep_dir: str | None = None) -> dict[str, Any]:
    """Simulate one run of a sweep and return its results row. Never raises for a failing run.

    Parameters
    ----------
    run : dict
        Plain data: ``run_id`` (str), ``seed`` (int), ``params`` (dict key path → value),
        ``scene_data`` (the resolved scene as JSON-able data), ``imaging`` ("xray" or "truth").
    keep_dir : str, optional
        Write the run folder to ``keep_dir/<run_id>/`` (``write_run``, without plots).

    Returns
    -------
    dict
        The row: ``run_id``, ``status`` (ok / stopped / failed), ``reason``, ``seed``,
        ``param.<key path>``, every numeric summary leaf (:func:`flatten_summary`),
        ``wall_s`` (s, this run on this worker) and ``worker`` (its address).
    """
    from ..simulation import StoppedEarly, simulate, write_run
    from ._results import flatten_summary

    wall0 = time.perf_counter()
    row: dict[str, Any] = {"run_id": run["run_id"], "status": "ok", "reason": None,
                           "seed": int(run["seed"])}
    row.update({f"param.{k}": v for k, v in (run.get("params") or {}).items()})
    result = None
    try:
        try:
            result = simulate(_scene_of(run), imaging=run.get("imaging", "xray"))
        except StoppedEarly as exc:  # a part raised: a failure, with the partial metrics
            result = exc.result
            row.update(status="failed", reason=_one_line(exc))
        if result is not None:
            summary = result.summary
            if row["status"] == "ok" and summary.stopped_early:
                row.update(status="stopped", reason=" ".join(summary.stopped_early.split()))
            row.update(flatten_summary(summary.to_dict()))
            if keep_dir is not None:
                write_run(Path(keep_dir) / run["run_id"], result, plots=False)
    except Exception as exc:  # noqa: BLE001 -- a failing run is a row, never a crashed sweep
        row.update(status="failed", reason=_one_line(exc))
    row["wall_s"] = time.perf_counter() - wall0
    row["worker"] = _worker_address()
    return row


def warm_up(run: dict[str, Any] | None = None, *, duration_s: float = WARMUP_DURATION_S) -> float:
    """Pay the first-run costs in this process: imports, numba JIT, phantom and plan caches.

    Parameters
    ----------
    run : dict, optional
        A run of the sweep (plain data as :func:`run_one`); its scene is simulated for
        ``duration_s`` with its imaging seam. None: only import the simulator.
    duration_s : float
        Simulated time of the warm-up run (s).

    Returns
    -------
    float
        Wall time spent (s). A warm-up that fails is ignored (the run itself will report).
    """
    wall0 = time.perf_counter()
    from ..simulation import simulate

    if run is not None:
        with contextlib.suppress(Exception):  # the real run records any failure
            simulate(_scene_of(run, duration_s=duration_s), imaging=run.get("imaging", "xray"))
    return time.perf_counter() - wall0


class WarmUp(distributed.WorkerPlugin):
    """Worker plugin: warm every worker (present and joining later) once, before its tasks.

    Parameters
    ----------
    run : dict, optional
        The run whose scene warms the worker (normally the sweep's first).
    ignore_sigint : bool
        Make the worker process ignore SIGINT (for the sweep's own LocalCluster: Ctrl-C in the
        terminal reaches the whole process group, and the driver, not each worker, handles it).
    """

    name = "cksim-warm-up"

    def __init__(self, run: dict[str, Any] | None = None, *, ignore_sigint: bool = False):
        self.run = run
        self.ignore_sigint = ignore_sigint

    async def setup(self, worker: distributed.Worker) -> None:
        """Warm ``worker`` in a thread so that its event loop keeps answering."""
        import asyncio
        import signal

        if self.ignore_sigint:
            with contextlib.suppress(ValueError):  # only possible in the main thread
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        worker.cksim_warm_up_s = await asyncio.to_thread(warm_up, self.run)
