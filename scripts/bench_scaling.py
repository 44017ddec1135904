"""Run the scaling benchmarks and write their table into benchmarks/README.md.

Usage: ``.venv/bin/python scripts/bench_scaling.py [--json PATH]`` from the repository root.
Runs ``benchmarks/bench_scaling_drr.py`` and ``benchmarks/bench_scaling_registration.py``
through pytest-benchmark (same interpreter), then replaces the text between
``<!-- scaling:begin -->`` and ``<!-- scaling:end -->`` in ``benchmarks/README.md`` with a
Markdown table (mean ms per call, CT voxels, detector) and the date and machine of the run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "benchmarks" / "README.md"
BEGIN, END = "<!-- scaling:begin -->", "<!-- scaling:end -->"
FILES = ("benchmarks/bench_scaling_drr.py", "benchmarks/bench_scaling_registration.py")


def table(data: dict) -> str:
    """Markdown table of the scaling benchmarks in pytest-benchmark JSON ``data``."""
    lines = ["| stage | detector | CT voxel (mm) | CT voxels | mean (ms) | median (ms) | check |",
             "|---|---|---|---|---|---|---|"]
    for b in data["benchmarks"]:
        i, st = b["extra_info"], b["stats"]
        stage = "DRR (one view)" if "drr" in b["name"] else "registration (pair)"
        if "relative_rms_vs_1mm_256" in i:
            check = f"rel. RMS vs 1 mm {100 * i['relative_rms_vs_1mm_256']:.1f} %"
        else:
            check = (f"error {i['max_translation_error_mm']:.2f} mm / "
                     f"{i['max_rotation_error_deg']:.2f} deg")
        lines.append(f"| {stage} | {i['detector']}² | {i['voxel_mm']:g} | "
                     f"{i['ct_voxels'] / 1e6:.2f} M | {1e3 * st['mean']:.1f} | "
                     f"{1e3 * st['median']:.1f} | {check} |")
    when = datetime.date.today().isoformat()
    return (f"Measured {when} on {os.cpu_count()} CPUs ({platform.machine()}, Python "
            f"{platform.python_version()}), shared machine: expect ±30 % noise.\n\n"
            + "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(ROOT / "scaling-bench.json"))
    args = ap.parse_args(argv)
    env = dict(os.environ, CKSIM_BENCH_QUICK="0")
    rc = subprocess.run([sys.executable, "-m", "pytest", *FILES, "--benchmark-only", "-q",
                         "-p", "no:cacheprovider", "-o", "python_files=bench_*.py",
                         "--benchmark-json", args.json], cwd=ROOT, env=env, check=False).returncode
    if rc != 0:
        print(f"bench_scaling: pytest exited with {rc}; README not updated", file=sys.stderr)
        return rc
    text = README.read_text()
    if BEGIN not in text or END not in text:
        print(f"bench_scaling: markers {BEGIN} / {END} not found in {README}", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{table(json.loads(Path(args.json).read_text()))}\n"
                      f"{END}{tail}")
    print(f"wrote the scaling table into {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
