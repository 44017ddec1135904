"""``cksim sweep SPEC.yaml --out DIR`` and ``cksim sweep-report DIR``: population studies.

``sweep`` validates the spec and every run's scene first (a problem: one line per problem,
exit 2, nothing run), then runs it on Dask (:func:`cyberknife_sim.sweep.run_sweep`). Exit 0
when every run ended ``ok``; 1 when some stopped early or failed (each is a row of
``results.parquet`` with its reason) or the sweep was interrupted; 2 on a user error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ._args import check_out_dir, one_line, shown


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` and ``sweep-report`` sub-commands."""
    p = sub.add_parser(
        "sweep", help="many runs of a scene (a grid, random samples, traces, seeds) on Dask",
        description="Run a sweep spec (docs/sweep_spec.md): runs = grid x random samples x "
        "traces x seeds of a base scene. Every run's scene is validated before anything "
        "runs. Results go to DIR/results.parquet, one row per run, written as runs finish; "
        "a second call with the same DIR runs only the runs missing from it. Exit 0: all runs "
        "ok; 1: some stopped or failed (rows with a reason); 2: a bad spec or option.")
    p.add_argument("spec", metavar="SPEC.yaml", help="sweep spec YAML file")
    p.add_argument("--out", metavar="DIR", help="output folder (created; required unless "
                   "--dry-run)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler "
                   "(tcp://host:8786); default: a LocalCluster on this machine")
    p.add_argument("--workers", metavar="N", type=int, help="LocalCluster worker processes "
                   "(1 thread each; default: the CPU count)")
    p.add_argument("--keep-runs", action="store_true", help="keep each run's folder in "
                   "DIR/runs/<run_id>/")
    p.add_argument("--retry-failed", action="store_true", help="run again the runs whose "
                   "row says failed")
    p.add_argument("--dry-run", action="store_true", help="print the number of runs and the "
                   "varied parameters, run nothing")
    p.set_defaults(func=run)
    r = sub.add_parser(
        "sweep-report", help="rebuild a sweep's report from DIR/results.parquet",
        description="Write DIR/report.html and DIR/plots/<metric>__<param>.png from "
        "DIR/results.parquet (median and 5-95 %% band over seeds) and print the report's path.")
    r.add_argument("dir", metavar="DIR", help="a sweep's output folder")
    r.set_defaults(func=report)


def describe(spec) -> list[str]:
    """Lines of the dry run: the run count and how it is made, then each varied parameter."""
    runs = spec.runs()
    parts = []
    if spec.grid:
        parts.append("grid " + " x ".join(str(len(v)) for v in spec.grid.values()))
    if spec.random is not None:
        parts.append(f"random {spec.random.n} samples (seed {spec.random.seed})")
    if spec.traces is not None:
        parts.append(f"traces {len(spec.trace_files)}")
    if spec.seeds is not None:
        parts.append(f"seeds {len(spec.seeds)}")
    lines = [f"{spec.name}: {len(runs)} run{'s' * (len(runs) != 1)} "
             f"({' x '.join(parts) or 'the base scene'}; imaging {spec.imaging}); "
             f"base {spec.base}"]
    lines.append("varied parameters:" if spec.varied else "varied parameters: none")
    for path, values in spec.grid.items():
        lines.append(f"  {path}: {', '.join(str(v) for v in values)}")
    if spec.random is not None:
        for path, dist in spec.random.params.items():
            lines.append(f"  {path}: {dist.describe()}")
    if spec.traces is not None:
        names = [f.name for f in spec.trace_files]
        more = f", ... ({len(names)} files)" if len(names) > 5 else ""
        lines.append(f"  {spec.traces.key}: {', '.join(names[:5])}{more}")
    seeds = sorted({r.seed for r in runs})
    shown_seeds = ", ".join(str(s) for s in seeds[:10]) + (", ..." if len(seeds) > 10 else "")
    lines.append(f"seeds: {shown_seeds}")
    return [one_line(line) for line in lines]


def run(args: argparse.Namespace) -> int:
    """Validate the spec, then dry-run it or run it; see the module doc for exit codes."""
    from ..sweep import load_sweep_spec

    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be >= 1 (got {args.workers})")
    if args.scheduler is not None and not args.scheduler.strip():
        raise InputError("--scheduler: empty address (give tcp://host:8786)")
    if args.out is None and not args.dry_run:
        raise InputError("--out DIR is required (except with --dry-run)")
    spec = load_sweep_spec(args.spec)
    if args.dry_run:
        print("\n".join(describe(spec)))
        return 0
    out = check_out_dir(args.out)
    from ..sweep._runner import run_sweep

    outcome = run_sweep(spec, out, scheduler=args.scheduler, workers=args.workers,
                        keep_runs=args.keep_runs, retry_failed=args.retry_failed)
    print(f"{spec.name}: {outcome.ok} ok, {outcome.stopped} stopped, {outcome.failed} failed, "
          f"{outcome.skipped} already done, {outcome.cancelled} not run; "
          f"{outcome.wall_s:.1f} s; {outcome.results_path}")
    bad = outcome.stopped + outcome.failed + outcome.cancelled
    return 1 if bad or outcome.interrupted else 0


def report(args: argparse.Namespace) -> int:
    """Write the report of ``args.dir``; print its path."""
    out = Path(args.dir)
    if not out.is_dir():
        raise InputError(f"{shown(args.dir)}: no such folder (a sweep's --out DIR)")
    if not (out / "results.parquet").is_file():
        raise InputError(f"{shown(args.dir)}: no results.parquet (run `cksim sweep SPEC "
                         f"--out {args.dir}` first)")
    from ..sweep._report import write_sweep_report

    print(write_sweep_report(out))
    return 0
