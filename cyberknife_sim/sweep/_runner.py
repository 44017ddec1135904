"""Run a sweep on Dask: a ``LocalCluster`` on this machine, or an existing scheduler.

One task per run (``client.submit(run_one, run_as_plain_dict)``): the task carries the
resolved scene and its seed, so where it runs does not change its result. Rows are collected
with ``distributed.as_completed`` and ``results.parquet`` is rewritten atomically after each
one (see :mod:`._results`). Resume: run ids already in the file are skipped (with
``retry_failed``, failed rows are run again). Ctrl-C cancels what is pending and keeps what
finished.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import distributed
import yaml

from ..errors import InputError
from ._results import RESULTS_FILE, read_results, write_results
from ._worker import WarmUp, run_one

__all__ = ["SweepOutcome", "run_as_dict", "run_sweep"]

_RUN_FIELDS = ("run_id", "seed", "params", "scene_data", "imaging")


@dataclass(frozen=True)
class SweepOutcome:
    """What a call of :func:`run_sweep` did.

    Attributes
    ----------
    ok, stopped, failed : int
        Runs finished in this call with that status.
    skipped : int
        Runs not run because their ``run_id`` was already in the results (resume).
    cancelled : int
        Runs not finished because the sweep was interrupted.
    wall_s : float
        Wall time of the call (s), cluster start-up included.
    results_path : Path
        ``<out_dir>/results.parquet``.
    interrupted : bool
        True when Ctrl-C ended the sweep (the rows that finished are in the file).
    """

    ok: int
    stopped: int
    failed: int
    skipped: int
    cancelled: int
    wall_s: float
    results_path: Path
    interrupted: bool = False

    @property
    def ran(self) -> int:
        """Runs finished in this call (ok + stopped + failed)."""
        return self.ok + self.stopped + self.failed


def run_as_dict(run: Any) -> dict[str, Any]:
    """A ``RunSpec`` (or any object or mapping with its fields) as the plain dict a task gets.

    Raises
    ------
    InputError
        A field is missing.
    """
    get = run.get if isinstance(run, dict) else (lambda k, d=None: getattr(run, k, d))
    missing = [f for f in _RUN_FIELDS if f != "imaging" and get(f) is None]
    if missing:
        raise InputError(f"sweep run {get('run_id')!r}: missing {', '.join(missing)}")
    return {"run_id": str(get("run_id")), "seed": int(get("seed")),
            "params": dict(get("params")), "scene_data": get("scene_data"),
            "imaging": get("imaging") or "xray"}


def _load_spec(spec: Any) -> Any:
    if isinstance(spec, str | os.PathLike):
        from ._spec import load_sweep_spec

        return load_sweep_spec(spec)
    return spec


def _copy_spec(spec: Any, source: Any, out: Path) -> None:
    """``out/spec.yaml``: the spec file itself where known, else the spec's data dumped."""
    dest = out / "spec.yaml"
    path = source if isinstance(source, str | os.PathLike) else None
    path = path or getattr(spec, "path", None) or getattr(spec, "source", None)
    if path is not None and Path(path).is_file():
        if Path(path).resolve() != dest.resolve():
            shutil.copyfile(path, dest)
        return
    data = getattr(spec, "data", None)
    if data is None and hasattr(spec, "model_dump"):
        data = spec.model_dump(mode="json")
    if data is not None:
        dest.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _previous_rows(path: Path, *, retry_failed: bool) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = read_results(path).to_pylist()
    if retry_failed:
        rows = [r for r in rows if r.get("status") != "failed"]
    return [{k: v for k, v in r.items() if v is not None} for r in rows]


def _failed_row(run: dict[str, Any], reason: str) -> dict[str, Any]:
    row = {"run_id": run["run_id"], "status": "failed", "reason": reason,
           "seed": run["seed"], "wall_s": None, "worker": None}
    row.update({f"param.{k}": v for k, v in run["params"].items()})
    return row


class _Progress:
    """tqdm bar on stderr: runs done / total, failed count, ETA (nothing when disabled)."""

    def __init__(self, total: int, *, enabled: bool, skipped: int):
        self.failed = 0
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="run", file=sys.stderr, dynamic_ncols=True,
                            desc="sweep")
            self.bar.set_postfix(failed=0, skipped=skipped)
        self.skipped = skipped

    def update(self, row: dict[str, Any]) -> None:
        self.failed += row["status"] == "failed"
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, skipped=self.skipped, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _client(scheduler: str | None, workers: int | None) -> tuple[distributed.Client, Any]:
    if scheduler is not None:
        try:
            return distributed.Client(scheduler, timeout="30s"), None
        except (OSError, ValueError) as exc:
            raise InputError(f"--scheduler {scheduler}: cannot connect ({exc})") from exc
    n = (os.cpu_count() or 1) if workers is None else workers
    if n < 1:
        raise InputError(f"--workers must be >= 1 (got {n})")
    cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=logging.ERROR)
    return distributed.Client(cluster), cluster


def _collect(client: distributed.Client, todo: list[dict[str, Any]], rows: list[dict],
             results: Path, keep_dir: str | None, progress: _Progress, *,
             fn: Callable[..., dict[str, Any]] = run_one) -> dict[str, int]:
    """Submit ``fn(run, keep_dir=...)`` per run, append each row as it finishes, rewrite the
    results file; on Ctrl-C cancel what is pending. Returns the counts by status."""
    counts = {"ok": 0, "stopped": 0, "failed": 0}
    futures = {client.submit(fn, run, keep_dir=keep_dir, pure=False,
                             key=f"cksim-run-{run['run_id']}-{time.time_ns()}"): run
               for run in todo}
    pending = set(futures)
    try:
        for fut in distributed.as_completed(futures):
            pending.discard(fut)
            run = futures[fut]
            if fut.status == "finished":
                row = fut.result()
            else:  # KilledWorker (the worker died), or the task could not be run at all
                exc = fut.exception()
                row = _failed_row(run, f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500])
            fut.release()
            rows.append(row)
            counts[row["status"]] += 1
            write_results(results, rows)
            progress.update(row)
    except KeyboardInterrupt:
        client.cancel(list(pending))
        counts["cancelled"] = len(pending)
    return counts


def run_sweep(spec: Any, out_dir: str | Path, *, scheduler: str | None = None,
              workers: int | None = None, keep_runs: bool = False,
              retry_failed: bool = False, progress: bool = True) -> SweepOutcome:
    """Run every run of ``spec`` on Dask and write ``out_dir/results.parquet``.

    Parameters
    ----------
    spec : SweepSpec, path, or iterable of RunSpec
        The sweep (``spec.runs()``), its YAML file, or the runs themselves.
    out_dir : str or Path
        Output folder: ``results.parquet``, ``spec.yaml`` (a copy of the spec) and, with
        ``keep_runs``, ``runs/<run_id>/``. Created if needed; an existing results file is
        resumed.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``). None: start a
        ``LocalCluster`` on this machine (processes, 1 thread each) and close it at the end.
    workers : int, optional
        Workers of the ``LocalCluster`` (default: the CPU count). Ignored with ``scheduler``.
    keep_runs : bool
        Write each run's folder (``write_run`` without plots); the workers must see
        ``out_dir`` (a shared file system on a cluster).
    retry_failed : bool
        Run again the runs whose row has status ``failed``.
    progress : bool
        A progress bar on stderr (runs done / total, failed, ETA).

    Returns
    -------
    SweepOutcome
        Counts of this call; ``interrupted`` after Ctrl-C (pending runs cancelled, finished
        ones kept).

    Raises
    ------
    InputError
        Bad arguments, an unreachable scheduler, an unreadable results file.
    """
    wall0 = time.perf_counter()
    source = spec
    spec = _load_spec(spec)
    runs = [run_as_dict(r) for r in (spec.runs() if hasattr(spec, "runs") else spec)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _copy_spec(spec, source, out)
    results = out / RESULTS_FILE
    rows = _previous_rows(results, retry_failed=retry_failed)
    done = {r["run_id"] for r in rows}
    runs = _unique(runs)
    todo = [r for r in runs if r["run_id"] not in done]
    skipped = len(runs) - len(todo)
    keep_dir = str((out / "runs").resolve()) if keep_runs else None
    counts: dict[str, int] = {}
    if todo:
        client, cluster = _client(scheduler, workers)
        bar = None
        try:
            # before the bar (its ETA is of runs only); our own workers leave Ctrl-C to the driver
            client.register_plugin(WarmUp(todo[0], ignore_sigint=cluster is not None))
            bar = _Progress(len(todo), enabled=progress, skipped=skipped)
            counts = _collect(client, todo, rows, results, keep_dir, bar)
        finally:
            if bar is not None:
                bar.close()
            client.close()
            if cluster is not None:
                cluster.close()
    elif not results.is_file():
        write_results(results, rows)
    return SweepOutcome(ok=counts.get("ok", 0), stopped=counts.get("stopped", 0),
                        failed=counts.get("failed", 0), skipped=skipped,
                        cancelled=counts.get("cancelled", 0),
                        wall_s=time.perf_counter() - wall0, results_path=results,
                        interrupted="cancelled" in counts)


def _unique(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for r in runs:
        seen.setdefault(r["run_id"], r)
    return list(seen.values())
