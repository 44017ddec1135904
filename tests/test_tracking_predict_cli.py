"""``cksim predict``: CSV alignment, score against an analytic reference, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.cli import main


def _sine_file(tmp_path, *, unit_s=1.0):
    t = np.arange(0, 120, 0.01)
    path = tmp_path / "sine.txt"
    np.savetxt(path, np.column_stack([t / unit_s, 5 * np.sin(2 * np.pi * t / 4.0)]))
    return path


def test_predict_writes_aligned_csv_and_relative_rms(tmp_path, capsys):
    path = _sine_file(tmp_path, unit_s=0.1)
    out = tmp_path / "p.csv"
    rc = main(["predict", "--trace", str(path), "--columns", "1", "--time-unit-s", "0.1",
               "--method", "none", "--out", str(out)])
    assert rc == 0
    assert "relative RMS 1.0000" in capsys.readouterr().out
    data = np.genfromtxt(out, delimiter=",", names=True)
    assert data.dtype.names == ("time_s", "c1", "pred_c1")
    # with no prediction the aligned prediction is the signal 3 samples (115.4 ms) earlier
    np.testing.assert_allclose(data["pred_c1"][3:], data["c1"][:-3])
    np.testing.assert_allclose(data["time_s"][1], 1 / 26.0, rtol=1e-5)
    rc = main(["predict", "--trace", str(path), "--columns", "1", "--time-unit-s", "0.1",
               "--method", "rls", "--out", str(out)])
    rel = float(capsys.readouterr().out.split("relative RMS ")[1].split(",")[0])
    assert rc == 0 and rel < 0.01


@pytest.mark.parametrize(("argv", "message"), [
    (["--columns", "5"], "line 1 has 2 columns"),
    (["--columns", "1", "--horizon-ms", "-5"], "--horizon-ms must not be negative"),
])
def test_predict_errors_are_one_line(tmp_path, capsys, argv, message):
    path = _sine_file(tmp_path)
    rc = main(["predict", "--trace", str(path), "--out", str(tmp_path / "o.csv"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1
