"""The sweep report (``cyberknife_sim.sweep._report``) on a synthetic ``results.parquet``:
metric = 2·x (+ 1 for mode "b") + noise over 5 seeds, x on a grid, one stopped run (an
outlier that must not count) and one failed run (no metrics)."""

from __future__ import annotations

import base64
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cyberknife_sim.errors import InputError
from cyberknife_sim.sweep._report import (
    aggregate,
    choose_metrics,
    plot_name,
    read_results_table,
    write_sweep_report,
)
from cyberknife_sim.sweep._results import write_results

X = [0.0, 0.5, 1.0, 2.0, 4.0]
MODES = ["a", "b"]
SEEDS = range(5)
METRIC = "targeting_error_mm.rms"
GAMMA = "dose.gamma.2%/1mm.pass_rate"


def _rows(rng):
    rows = []
    for x in X:
        for mode in MODES:
            for seed in SEEDS:
                m = 2.0 * x + (mode == "b") + rng.normal(0.0, 0.3)
                rows.append({"run_id": f"{len(rows):016x}", "status": "ok", "reason": None,
                             "seed": seed, "param.tracking.predictor.latency_s": x,
                             "param.tracking.mode": mode, METRIC: m,
                             GAMMA: 1.0 - 0.01 * x, "custom.value": rng.normal(),
                             "wall_s": 1.0 + 0.1 * seed, "worker": "tcp://127.0.0.1:1"})
    rows.append({**rows[0], "run_id": "stoppedstopped00", "status": "stopped",
                 "reason": "correction_limit", METRIC: 1000.0})
    rows.append({**rows[1], "run_id": "failedfailed0000", "status": "failed",
                 "reason": "ValueError: boom", METRIC: None, GAMMA: None,
                 "custom.value": None, "wall_s": 0.2})
    return rows


@pytest.fixture
def results(tmp_path):
    rows = _rows(np.random.default_rng(7))
    write_results(tmp_path / "results.parquet", rows)  # the sweep's own writer
    (tmp_path / "spec.yaml").write_text(
        "name: latency_demo\ndescription: error vs latency & mode\nseeds: {range: [0, 5]}\n")
    return tmp_path, rows


def _expected(rows, x, mode=None):
    ys = [r[METRIC] for r in rows if r["status"] == "ok"
          and r["param.tracking.predictor.latency_s"] == x
          and (mode is None or r["param.tracking.mode"] == mode)]
    return len(ys), np.percentile(ys, [50.0, 5.0, 95.0])


def test_aggregate_matches_numpy_percentiles_per_value_and_per_line(results):
    out_dir, rows = results
    table = read_results_table(out_dir)
    agg = aggregate(table, METRIC, "tracking.predictor.latency_s")
    np.testing.assert_array_equal(agg["x"], X)
    for i, x in enumerate(X):
        n, (med, p5, p95) = _expected(rows, x)
        assert agg["n"][0, i] == n == 10  # stopped and failed runs not counted
        np.testing.assert_allclose([agg["median"][0, i], agg["p5"][0, i], agg["p95"][0, i]],
                                   [med, p5, p95], rtol=0, atol=1e-12)
    by = aggregate(table, METRIC, "param.tracking.predictor.latency_s", by="tracking.mode")
    assert list(by["groups"]) == MODES
    for g, mode in enumerate(MODES):
        for i, x in enumerate(X):
            n, stats = _expected(rows, x, mode)
            assert by["n"][g, i] == n == 5
            np.testing.assert_allclose(
                [by["median"][g, i], by["p5"][g, i], by["p95"][g, i]], stats, atol=1e-12)
    # the slope of the median is the model's 2 per unit of x (noise sd 0.3 over 5 seeds)
    slope = np.polyfit(X, by["median"][0], 1)[0]
    assert abs(slope - 2.0) < 0.3
    # every counted run is an ok run, and the stopped outlier (1000) is not among them
    assert len(agg["y"]) == 50 and agg["y"].max() < 20
    np.testing.assert_array_equal(np.bincount(agg["ix"]), agg["n"][0])


def test_aggregate_over_categories(results):
    out_dir, rows = results
    agg = aggregate(read_results_table(out_dir), METRIC, "tracking.mode")
    assert list(agg["x"]) == MODES
    for i, mode in enumerate(MODES):
        ys = [r[METRIC] for r in rows if r["status"] == "ok" and r["param.tracking.mode"] == mode]
        assert agg["n"][0, i] == 25
        assert agg["median"][0, i] == pytest.approx(np.median(ys), abs=1e-12)
    assert agg["median"][0, 1] - agg["median"][0, 0] == pytest.approx(1.0, abs=0.4)


def test_default_metrics_are_the_curated_ones_present(results):
    out_dir, _ = results
    table = read_results_table(out_dir)
    assert choose_metrics(table) == [METRIC, GAMMA]  # custom.value is not curated
    assert choose_metrics(table, ["custom.value"]) == ["custom.value"]
    with pytest.raises(InputError, match="no numeric metric column nope"):
        choose_metrics(table, ["nope"])
    bare = table.drop_columns([METRIC, GAMMA])
    assert choose_metrics(bare) == ["custom.value"]  # no curated one: every numeric one


def test_plot_name_is_a_safe_file_name():
    assert plot_name(GAMMA, "tracking.mode") == "dose.gamma.2__1mm.pass_rate__tracking.mode.png"


def test_report_holds_every_plot_the_counts_and_every_run(results):
    out_dir, rows = results
    page = write_sweep_report(out_dir)
    text = page.read_text(encoding="utf-8")
    params = ["tracking.predictor.latency_s", "tracking.mode"]
    for metric in (METRIC, GAMMA):
        for p in params:
            png = out_dir / "plots" / plot_name(metric, p)
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert base64.b64encode(png.read_bytes()).decode() in text
    assert len(re.findall(r"data:image/png;base64,", text)) == 4
    assert "<h1>Sweep: latency_demo</h1>" in text
    assert "error vs latency &amp; mode" in text
    counts = re.search(r'<p id="counts">(.*?)</p>', text, re.S).group(1)
    assert " ".join(re.sub(r"<.*?>", "", counts).split()) == \
        "52 runs: 50 ok, 1 stopped, 1 failed."
    runs = text.split('<table id="runs">')[1]
    assert runs.count("<tr>") == 1 + len(rows)
    assert "failedfailed0000" in runs and "ValueError: boom" in runs
    not_ok = text.split('<table id="not-ok">')[1].split("</table>")[0]
    assert "stoppedstopped00" in not_ok and "correction_limit" in not_ok
    assert "failedfailed0000" in not_ok and rows[5]["run_id"] not in not_ok
    total = sum(r["wall_s"] for r in rows)
    assert f"{total:.1f} s in all" in text


def test_report_with_chosen_metrics_and_no_spec(results):
    out_dir, _ = results
    (out_dir / "spec.yaml").unlink()
    text = write_sweep_report(out_dir, metrics=["custom.value"]).read_text(encoding="utf-8")
    assert len(re.findall(r"data:image/png;base64,", text)) == 2
    assert f"<h1>Sweep: {out_dir.name}</h1>" in text


def test_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="no sweep results here") as err:
        write_sweep_report(tmp_path)
    assert "\n" not in str(err.value)
    schema = pa.schema([("run_id", pa.string()), ("status", pa.string()),
                        ("param.x", pa.float64()), (METRIC, pa.float64())])
    pq.write_table(schema.empty_table(), tmp_path / "results.parquet")
    with pytest.raises(InputError, match="no runs"):
        write_sweep_report(tmp_path)
    pq.write_table(pa.table({"run_id": ["a"], "status": ["ok"], METRIC: [1.0]}),
                   tmp_path / "results.parquet")
    with pytest.raises(InputError, match="no varied parameter"):
        write_sweep_report(tmp_path)
    (tmp_path / "results.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="not a readable Parquet"):
        write_sweep_report(tmp_path)
