"""``cksim bench [--quick] [--json PATH]``: run the benchmark suite, print the headline figures.

Runs ``benchmarks/`` (beside the package in a checkout or editable install) through
pytest-benchmark in a subprocess with the same interpreter, writes pytest-benchmark's JSON
and prints a compact table: DRR time at 256²/512² with its ratios to plastimatch and to the
reference ray marcher, registration time, correction-loop and imaging-update latency
percentiles, the real-time factor. ``--quick`` runs the latency and peer benchmarks at small
sizes (``CKSIM_BENCH_QUICK=1``) in under a minute on two cores; without it every
``benchmarks/bench_*.py`` runs (a few minutes).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from ..errors import CksimError, InputError
from ._args import check_out_file

__all__ = ["QUICK_FILES", "find_benchmarks_dir", "headline_rows", "pytest_command", "register",
           "render_table"]

QUICK_FILES = ("bench_latency.py", "bench_peer_plastimatch.py")
"""Benchmark files of ``--quick`` (run with ``CKSIM_BENCH_QUICK=1``: small sizes)."""


def find_benchmarks_dir(explicit: str | Path | None = None) -> Path:
    """The ``benchmarks/`` folder: ``explicit``, else the one beside the installed package."""
    if explicit is not None:
        d = Path(explicit)
    else:
        import cyberknife_sim

        d = Path(cyberknife_sim.__file__).resolve().parents[1] / "benchmarks"
    if not d.is_dir() or not any(d.glob("bench_*.py")):
        raise InputError(f"no benchmarks found in {d} (cksim bench needs a source checkout; "
                         "pass --benchmarks DIR)")
    return d.resolve()


def pytest_command(bench_dir: Path, *, quick: bool, json_path: Path,
                   extra: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The pytest argv (this interpreter) and environment that run the suite."""
    if quick:
        files = [bench_dir / f for f in QUICK_FILES if (bench_dir / f).exists()]
    else:
        files = sorted(bench_dir.glob("bench_*.py"))
    if not files:
        raise InputError(f"no benchmark files to run in {bench_dir}")
    argv = [sys.executable, "-m", "pytest", *[str(f) for f in files], "--benchmark-only",
            "--benchmark-json", str(json_path), "-q", "-p", "no:cacheprovider",
            "-o", "python_files=bench_*.py", "--rootdir", str(bench_dir.parent),
            *(extra or [])]
    env = dict(os.environ)
    env["CKSIM_BENCH_QUICK"] = "1" if quick else "0"
    return argv, env


def _find(benchmarks: list[dict], suffix: str) -> dict | None:
    for b in benchmarks:
        if b.get("fullname", "").endswith(suffix) or b.get("name") == suffix:
            return b
    return None


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f} ms" if x < 10 else f"{x:.1f} ms" if x < 1000 else f"{x / 1e3:.2f} s"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"x{x:.2f}"


def headline_rows(data: dict, *, peer_installed: bool) -> list[tuple[str, str, str]]:
    """(figure, value, detail) rows of the headline table from pytest-benchmark JSON data."""
    bs = data.get("benchmarks", [])
    rows: list[tuple[str, str, str]] = []
    missing = "not run"
    peer_note = "plastimatch not installed (pip install plastimatch)"
    for size in (256, 512):
        ours = _find(bs, f"bench_peer_plastimatch.py::test_ours[{size}]")
        pm = _find(bs, f"bench_peer_plastimatch.py::test_plastimatch[{size}]")
        if ours is None:
            rows.append((f"DRR {size}x{size} (ours, one view)", missing, ""))
            continue
        info = ours["extra_info"]
        detail = []
        if "reference_ratio_to_ours" in info:
            detail.append(f"reference {_ratio(info['reference_ratio_to_ours'])} slower")
        if pm is not None:
            pi = pm["extra_info"]
            detail.append(f"plastimatch {_ratio(pi.get('ratio_to_ours'))} (process), "
                          f"{_ratio(pi.get('compute_ratio_to_ours'))} (its compute)")
            detail.append(f"rel. RMS vs plastimatch {100 * pi['relative_rms_vs_ours']:.2f} %")
        elif not peer_installed:
            detail.append(peer_note)
        rows.append((f"DRR {size}x{size} (ours, one view)",
                     _ms(1e3 * ours["stats"]["mean"]), "; ".join(detail)))
        if pm is not None:
            pi = pm["extra_info"]
            comp = pi.get("plastimatch_compute_s")
            rows.append((f"  plastimatch {pi.get('plastimatch_version', '')} {size}x{size}",
                         _ms(1e3 * pm["stats"]["mean"]),
                         f"its own compute {_ms(None if comp is None else 1e3 * comp)}"))
    ref = _find(bs, "bench_peer_plastimatch.py::test_reference")
    if ref is not None:
        rows.append(("  reference ray marcher 256x256", _ms(1e3 * ref["stats"]["mean"]),
                     "0.5 mm steps, trilinear"))
    loop = _find(bs, "bench_latency.py::test_correction_loop_latency")
    img = _find(bs, "bench_latency.py::test_imaging_update_latency")
    for label, b in (("correction loop (marker in -> robot command out)", loop),
                     ("imaging update (pair acquired -> corrected target)", img)):
        if b is None:
            rows.append((label, missing, ""))
            continue
        i = b["extra_info"]
        rows.append((label, f"p50 {_ms(i['latency_p50_ms'])}",
                     f"p95 {_ms(i['latency_p95_ms'])}, p99 {_ms(i['latency_p99_ms'])}, "
                     f"max {_ms(i['latency_max_ms'])} over {i['latency_n']} iterations"))
    if img is not None and "registration_p50_ms" in img["extra_info"]:
        i = img["extra_info"]
        rows.append(("registration (2D/3D, one pair)", f"p50 {_ms(i['registration_p50_ms'])}",
                     f"p99 {_ms(i['registration_p99_ms'])}; max error "
                     f"{i['max_translation_error_mm']:.2f} mm / "
                     f"{i['max_rotation_error_deg']:.2f} deg"))
    rtf = _find(bs, "bench_latency.py::test_realtime_factor")
    if rtf is None:
        rows.append(("real-time factor (full loop, X-ray imaging)", missing, ""))
    else:
        i = rtf["extra_info"]
        rows.append(("real-time factor (full loop, X-ray imaging)", f"{i['realtime_factor']:.2f}",
                     f"{i['simulated_s']:.0f} s simulated in {i['loop_wall_s']:.1f} s "
                     f"(+{i['setup_wall_s']:.1f} s setup), mean step "
                     f"{_ms(i['mean_step_ms'])}"))
    return rows


def render_table(rows: list[tuple[str, str, str]]) -> str:
    """Rows as aligned text (figure | value | detail)."""
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{w0}}  {b:>{w1}}  {c}".rstrip() for a, b, c in rows)


def _run(args) -> int:
    from ..imaging.peer import find_plastimatch

    bench_dir = find_benchmarks_dir(args.benchmarks)
    json_path = check_out_file(args.json, "--json").resolve()
    json_path.unlink(missing_ok=True)  # a stale JSON from an earlier run must not be read
    argv, env = pytest_command(bench_dir, quick=args.quick, json_path=json_path,
                               extra=list(args.pytest_args or []))
    peer_installed = find_plastimatch() is not None
    mode = "quick" if args.quick else "full"
    n_files = sum(a.endswith(".py") and Path(a).parent == bench_dir for a in argv)
    print(f"cksim bench ({mode}): running {n_files} benchmark file(s) in {bench_dir} ...",
          file=sys.stderr, flush=True)
    proc = subprocess.run(argv, cwd=bench_dir.parent, env=env, check=False,
                          capture_output=not args.verbose, text=True)
    if not json_path.exists():
        tail = "" if args.verbose else (proc.stdout + proc.stderr).strip().splitlines()[-1:]
        raise CksimError(f"pytest wrote no benchmark JSON (exit {proc.returncode}) "
                         f"{tail[0] if tail else ''}".rstrip())
    data = json.loads(json_path.read_text())
    rows = headline_rows(data, peer_installed=peer_installed)
    py = data.get("machine_info", {}).get("python_version", platform.python_version())
    print(f"cksim bench ({mode}) on {platform.node() or 'this machine'}: "
          f"{os.cpu_count()} CPUs, Python {py}; timings are wall-clock and shared-machine noisy")
    print(render_table([("figure", "value", "detail")] + rows))
    print(f"pytest-benchmark JSON: {json_path}")
    if proc.returncode != 0:
        if not args.verbose:
            lines = (proc.stdout or "").strip().splitlines()
            failed = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
            for ln in failed[:10] or lines[-5:]:
                print(ln, file=sys.stderr)
        print(f"cksim bench: pytest exited with {proc.returncode} (a benchmark failed its "
              "correctness check or errored; figures above may be incomplete)", file=sys.stderr)
        return 1
    return 0


def register(subparsers) -> None:
    """Add ``cksim bench`` to the ``cksim`` parser."""
    p = subparsers.add_parser(
        "bench", help="run the benchmarks and print the headline figures",
        description="Run benchmarks/ through pytest-benchmark (same interpreter), write its "
                    "JSON and print DRR, registration, latency and real-time-factor figures.")
    p.add_argument("--quick", action="store_true",
                   help="latency + DRR peer comparison at small sizes (under a minute)")
    p.add_argument("--json", default="cksim-bench.json", metavar="PATH",
                   help="where to write pytest-benchmark's JSON (default: %(default)s)")
    p.add_argument("--benchmarks", default=None, metavar="DIR",
                   help="benchmarks folder (default: the one beside the package)")
    p.add_argument("-v", "--verbose", action="store_true", help="show pytest's output")
    p.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG",
                   help="extra pytest arguments after --, e.g. -- -k latency")
    p.set_defaults(func=_run)
