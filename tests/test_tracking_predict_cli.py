"""``cksim predict``: CSV layout, score against an analytic reference, causal defaults,
labelled non-causal resampling, any horizon on any rate, the comparison table, one-line
errors."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.cli import main
from cyberknife_sim.tracking._predictors import METHODS


def _sine_file(tmp_path, *, unit_s=1.0, dt_s=0.01, seconds=120):
    t = np.arange(0, seconds, dt_s)
    path = tmp_path / "sine.txt"
    np.savetxt(path, np.column_stack([t / unit_s, 5 * np.sin(2 * np.pi * t / 4.0)]))
    return path


def _rel(printed: str) -> float:
    return float(printed.split("relative RMS ")[1].split(" ")[0])


def test_predict_writes_csv_and_relative_rms(tmp_path, capsys):
    """A 2-column file needs no --columns; the file's own samples are used (no resampling)."""
    path = _sine_file(tmp_path, unit_s=0.1)
    out = tmp_path / "p.csv"
    rc = main(["predict", "--trace", str(path), "--time-unit-s", "0.1",
               "--method", "none", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "relative RMS 1.0000 (dimensionless)" in printed
    assert "RMS error" in printed and " mm" in printed and "non-causal" not in printed
    data = np.genfromtxt(out, delimiter=",", names=True)
    assert data.dtype.names == ("time_s", "for_time_s", "c1", "pred_c1")
    # row i: the prediction made at time_s of the signal at time_s + 115 ms
    np.testing.assert_allclose(data["pred_c1"], data["c1"])
    np.testing.assert_allclose(data["for_time_s"] - data["time_s"], 0.115, atol=1e-5)
    np.testing.assert_allclose(data["time_s"][1], 0.01, rtol=1e-5)
    rc = main(["predict", "--trace", str(path), "--time-unit-s", "0.1",
               "--method", "rls", "--out", str(out)])
    # 11.5 samples ahead at 100 Hz with 8 increments (80 ms) of history: 0.05 here
    assert rc == 0 and _rel(capsys.readouterr().out) < 0.1


def test_any_horizon_on_a_5_hz_trace(tmp_path, capsys):
    """115 ms on 5 Hz samples (0.575 samples) is predicted and scored, not refused."""
    path = _sine_file(tmp_path, dt_s=0.2, seconds=300)
    rc = main(["predict", "--trace", str(path), "--method", "rls",
               "--out", str(tmp_path / "o.csv")])
    printed = capsys.readouterr().out
    assert rc == 0 and "horizon 115 ms (0.575 samples at 5 Hz)" in printed
    assert _rel(printed) < 0.2


@pytest.mark.parametrize(("mode", "causal"), [("hold", True), ("linear", False),
                                              ("cubic", False)])
def test_resampling_is_labelled(tmp_path, capsys, mode, causal):
    path = _sine_file(tmp_path, dt_s=0.2, seconds=60)
    rc = main(["predict", "--trace", str(path), "--rate-hz", "26", "--resample", mode,
               "--method", "none", "--out", str(tmp_path / "o.csv")])
    printed = capsys.readouterr().out
    assert rc == 0 and f"{mode}-resampled" in printed
    assert ("non-causal resampling: looks ahead" in printed) is not causal
    if mode == "linear":
        assert "up to 200 ms" in printed


def test_method_all_prints_one_table(tmp_path, capsys):
    path = _sine_file(tmp_path, dt_s=0.2, seconds=120)
    out = tmp_path / "all.csv"
    assert main(["predict", "--trace", str(path), "--method", "all", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| method | relative RMS | RMS error (mm) | worst error (mm) |" in printed
    rows = [ln for ln in printed.splitlines() if ln.startswith("| ") and "method" not in ln]
    assert [r.split("|")[1].strip() for r in rows] == list(METHODS)
    assert float(rows[0].split("|")[2]) == pytest.approx(1.0)
    data = np.genfromtxt(out, delimiter=",", names=True)
    assert all(f"pred_{m}_c1" in data.dtype.names for m in METHODS)


@pytest.mark.parametrize(("argv", "message"), [
    (["--columns", "5"], "line 1 has 2 columns"),
    (["--columns", "1", "--horizon-ms", "-5"], "--horizon-ms must not be negative"),
])
def test_predict_errors_are_one_line(tmp_path, capsys, argv, message):
    path = _sine_file(tmp_path)
    rc = main(["predict", "--trace", str(path), "--out", str(tmp_path / "o.csv"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1


def test_non_uniform_samples_ask_for_a_clock(tmp_path, capsys):
    t = np.cumsum(np.random.default_rng(0).uniform(0.15, 0.25, 600))
    path = tmp_path / "jitter.txt"
    np.savetxt(path, np.column_stack([t, np.sin(t)]))
    rc = main(["predict", "--trace", str(path), "--out", str(tmp_path / "o.csv")])
    assert rc == 2 and "give --rate-hz" in capsys.readouterr().err
    rc = main(["predict", "--trace", str(path), "--rate-hz", "26",
               "--out", str(tmp_path / "o.csv")])
    assert rc == 0


def test_default_output_goes_to_the_current_folder_not_beside_the_trace(tmp_path, capsys,
                                                                        monkeypatch):
    data, work = tmp_path / "data", tmp_path / "work"
    data.mkdir()
    work.mkdir()
    path = _sine_file(data, dt_s=0.2, seconds=120)
    monkeypatch.chdir(work)
    assert main(["predict", "--trace", str(path), "--method", "none"]) == 0
    assert (work / f"{path.stem}.none.csv").is_file()
    assert sorted(p.name for p in data.iterdir()) == [path.name]
    capsys.readouterr()
