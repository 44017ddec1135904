"""``cksim bench``: argument parsing, the pytest command it builds, the headline table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cyberknife_sim.cli import build_parser, main
from cyberknife_sim.commands import bench


def _b(fullname: str, mean_s: float, **extra) -> dict:
    return {"fullname": fullname, "name": fullname.split("::")[-1],
            "stats": {"mean": mean_s}, "extra_info": extra}


def test_parses_quick_json_and_pytest_args():
    args = build_parser().parse_args(["bench", "--quick", "--json", "x.json", "--", "-k", "lat"])
    assert args.quick and args.json == "x.json" and args.pytest_args == ["-k", "lat"]
    args = build_parser().parse_args(["bench"])
    assert not args.quick and args.json == "cksim-bench.json"


def test_pytest_command_quick_and_full(repo_root, tmp_path):
    d = bench.find_benchmarks_dir()
    assert d == (repo_root / "benchmarks").resolve()
    argv, env = bench.pytest_command(d, quick=True, json_path=tmp_path / "b.json")
    files = [Path(a).name for a in argv if Path(a).parent == d]
    assert files == list(bench.QUICK_FILES) and env["CKSIM_BENCH_QUICK"] == "1"
    assert argv[argv.index("--benchmark-json") + 1] == str(tmp_path / "b.json")
    argv, env = bench.pytest_command(d, quick=False, json_path=tmp_path / "b.json")
    files = {Path(a).name for a in argv if Path(a).parent == d}
    assert files == {p.name for p in d.glob("bench_*.py")} and env["CKSIM_BENCH_QUICK"] == "0"


def test_missing_benchmarks_dir_is_one_line_exit_2(tmp_path, capsys):
    assert main(["bench", "--quick", "--benchmarks", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no benchmarks found" in err[0]


def test_headline_rows_figures_and_ratios():
    peer = "benchmarks/bench_peer_plastimatch.py::"
    lat = "benchmarks/bench_latency.py::"
    data = {"benchmarks": [
        _b(peer + "test_ours[256]", 0.040, reference_ratio_to_ours=90.0),
        _b(peer + "test_plastimatch[256]", 0.400, ratio_to_ours=10.0,
           compute_ratio_to_ours=2.0, relative_rms_vs_ours=0.012,
           plastimatch_version="1.10.0", plastimatch_compute_s=0.08),
        _b(lat + "test_correction_loop_latency", 0.001, latency_p50_ms=0.9, latency_p95_ms=2.0,
           latency_p99_ms=3.5, latency_max_ms=20.0, latency_n=5000),
        _b(lat + "test_realtime_factor", 30.0, realtime_factor=3.75, simulated_s=60.0,
           loop_wall_s=16.0, setup_wall_s=2.0, mean_step_ms=10.0),
    ]}
    rows = {r[0]: r for r in bench.headline_rows(data, peer_installed=True)}
    drr = rows["DRR 256x256 (ours, one view)"]
    assert drr[1] == "40.0 ms"
    assert "reference x90.00 slower" in drr[2] and "plastimatch x10.00 (process)" in drr[2]
    assert "x2.00 (its compute)" in drr[2] and "1.20 %" in drr[2]
    assert rows["  plastimatch 1.10.0 256x256"][1] == "400.0 ms"
    loop = rows["correction loop (marker in -> robot command out)"]
    assert loop[1] == "p50 0.900 ms" and "p99 3.500 ms" in loop[2] and "5000" in loop[2]
    assert rows["real-time factor (full loop, X-ray imaging)"][1] == "3.75"
    assert rows["imaging update (pair acquired -> corrected target)"][1] == "not run"
    assert rows["DRR 512x512 (ours, one view)"][1] == "not run"
    text = bench.render_table(list(rows.values()))
    assert len(text.splitlines()) == len(rows)


def test_headline_says_when_the_peer_is_missing():
    data = {"benchmarks": [_b("benchmarks/bench_peer_plastimatch.py::test_ours[256]", 0.05)]}
    rows = bench.headline_rows(data, peer_installed=False)
    assert "plastimatch not installed" in rows[0][2]


@pytest.mark.slow
def test_cksim_bench_quick_end_to_end(tmp_path, capsys, monkeypatch, repo_root):
    """The real quick run: exit 0, JSON with the headline benchmarks, a table printed."""
    monkeypatch.chdir(repo_root)
    out = tmp_path / "q.json"
    assert main(["bench", "--quick", "--json", str(out)]) == 0
    names = {b["name"] for b in json.loads(out.read_text())["benchmarks"]}
    assert {"test_correction_loop_latency", "test_imaging_update_latency",
            "test_realtime_factor", "test_ours[256]", "test_reference"} <= names
    text = capsys.readouterr().out
    assert "correction loop" in text and "real-time factor" in text
    assert os.path.exists(out)
