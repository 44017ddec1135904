"""Trace reading and resampling: real files, caller-stated time units, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.errors import InputError
from cyberknife_sim.motion import MotionTruth, check_paired, read_trace, resample
from cyberknife_sim.scene import scene_from_dict


def _write(tmp_path, text, name="t.txt"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.shared_data
def test_reads_real_6dof_trace(shared_data):
    tr = read_trace(shared_data / "traces" / "liver_trace1_6dof.txt",
                    columns=(1, 2, 3, 4, 5, 6))
    assert tr.axes == ("x", "y", "z", "rx", "ry", "rz")
    assert tr.dt_s == pytest.approx(0.2)
    assert tr.duration_s == pytest.approx(1303.2)
    np.testing.assert_allclose(tr.values[0], [-0.86218, -5.9253, 1.3726, 1.0398, -1.6853,
                                              -0.33957])


@pytest.mark.shared_data
def test_paired_trace_time_unit_must_be_stated(shared_data):
    d = shared_data / "traces"
    internal = read_trace(d / "pair_mean_motion_091_internal.txt", columns=(1, 2, 3))
    wrong = read_trace(d / "pair_mean_motion_091_external.txt", columns=(1,))
    with pytest.raises(InputError, match="paired traces disagree.*time unit"):
        check_paired(internal, wrong)
    right = read_trace(d / "pair_mean_motion_091_external.txt", columns=(1,), time_unit_s=0.1)
    check_paired(internal, right)
    np.testing.assert_allclose(right.time_s, internal.time_s, atol=1e-9)


def test_header_csv_axis_mapping_and_scale(tmp_path):
    p = _write(tmp_path, "time_ms,a,b\n0,1,2\n100,2,4\n200,3,6\n300,4,8\n")
    tr = read_trace(p, time_column=0, columns=(2, 1), time_unit_s=1e-3, axes=("-z", "x"),
                    value_scale=10.0)
    np.testing.assert_allclose(tr.time_s, [0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(tr.xyz_mm()[1], [20.0, 0.0, -40.0])


@pytest.mark.parametrize(("text", "message"), [
    ("0 1\n1 2\n1 3\n2 4\n3 5\n", "not strictly increasing at row 3"),
    ("0 1\n1 nan\n2 3\n3 4\n", "NaN or infinite at row 2"),
    ("0 1\n1 2\n", "too few samples"),
    ("0 1\n1 x\n2 3\n3 4\n", "line 2: non-numeric"),
    ("0 1\n1\n2 3\n3 4\n", "line 2 has 1 columns"),
])
def test_bad_traces_raise_one_clear_line(tmp_path, text, message):
    p = _write(tmp_path, text)
    with pytest.raises(InputError, match=message) as info:
        read_trace(p, columns=(1,))
    assert str(p) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_bad_axis(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        read_trace(tmp_path / "nope.txt")
    p = _write(tmp_path, "0 1\n1 2\n2 3\n3 4\n")
    with pytest.raises(InputError, match="unknown axis 'w'"):
        read_trace(p, columns=(1,), axes=("w",))


def test_resample_linear_is_exact_on_a_line_and_cubic_on_a_cubic():
    from cyberknife_sim.motion import Trace

    t = np.linspace(0, 10, 11)
    tr = Trace(time_s=t, values=np.column_stack([2 * t + 1, t**3]), axes=("x", "y"))
    lin = resample(tr, 0.25)
    assert lin.time_s.size == 41
    np.testing.assert_allclose(lin.values[:, 0], 2 * lin.time_s + 1, atol=1e-12)
    cub = resample(tr, 0.1, t0_s=2.0, t1_s=8.0, method="cubic")
    np.testing.assert_allclose(cub.values[:, 1], cub.time_s**3, rtol=0.02)
    with pytest.raises(InputError, match="not inside"):
        resample(tr, 0.1, t1_s=11.0)
    with pytest.raises(ValueError, match="'linear', 'cubic'"):
        resample(tr, 0.1, method="spline")


@pytest.mark.shared_data
def test_truth_driven_by_a_recorded_target_trace(shared_data):
    path = shared_data / "traces" / "lung_trace1_large_ap_6dof.txt"
    scene = scene_from_dict({"motion": {"trace": {"file": str(path), "columns": [1, 2, 3]},
                                        "breathing": {"hysteresis_deg": 0}},
                             "simulation": {"duration_s": 600}})
    truth = MotionTruth.from_scene(scene, np.random.default_rng(0))
    raw = read_trace(path, columns=(1, 2, 3))
    t = raw.time_s[raw.time_s <= 600]
    off = truth.target_offset_room(t)
    np.testing.assert_allclose(off - off.mean(0),
                               raw.values[: t.size] - raw.values[: t.size].mean(0), atol=0.05)
    # the chest follows the trace's principal axis: strongly correlated
    ext = truth.external_signal(t)
    proj = off @ np.linalg.svd(off - off.mean(0), full_matrices=False)[2][0]
    assert abs(np.corrcoef(ext, proj)[0, 1]) > 0.999
    short = scene_from_dict({"motion": {"trace": {"file": str(path)}},
                             "simulation": {"duration_s": 3000}})
    with pytest.raises(InputError, match="shorter than the simulation"):
        MotionTruth.from_scene(short, np.random.default_rng(0))


def _trace(t, y, source="synthetic"):
    from cyberknife_sim.motion import Trace

    return Trace(time_s=np.asarray(t, float), values=np.asarray(y, float)[:, None],
                 axes=("s",), source=source)


def test_dominant_period_of_breathing_with_drift():
    from cyberknife_sim.motion import dominant_period_s

    t = np.arange(0, 300, 0.2)
    y = 5 * np.sin(2 * np.pi * t / 4.0) + 0.05 * t  # 15 mm of drift over the trace
    assert dominant_period_s(_trace(t, y)) == pytest.approx(4.0, rel=0.02)


def test_a_trace_in_tenths_of_a_second_read_as_seconds_is_flagged():
    from cyberknife_sim.motion import implausible_breathing

    t = np.arange(0, 300, 0.2)
    y = 5 * np.sin(2 * np.pi * t / 4.0)
    assert implausible_breathing(_trace(t, y), time_unit_s=1.0) is None
    msg = implausible_breathing(_trace(10 * t, y, "x.txt"), time_unit_s=1.0)
    assert msg is not None and "tenths" in msg and msg.startswith("x.txt")
    assert float(msg.split("period is ")[1].split(" s")[0]) == pytest.approx(40.0, rel=0.02)


@pytest.mark.shared_data
def test_real_traces_periods(shared_data):
    """The real traces breathe at 3-8 s; the one stamped in tenths is flagged until its unit
    is given (shared/data/README.md says which)."""
    from cyberknife_sim.motion import dominant_period_s, implausible_breathing, read_trace

    d = shared_data / "traces"
    for name in ("liver_trace1_6dof.txt", "lung_trace1_large_ap_6dof.txt",
                 "pair_mean_motion_091_internal.txt", "pair_sine_external.txt"):
        assert 3.0 < dominant_period_s(read_trace(d / name, columns=[1])) < 8.0, name
    ext = d / "pair_mean_motion_091_external.txt"
    assert implausible_breathing(read_trace(ext, columns=[1]), time_unit_s=1.0)
    assert implausible_breathing(read_trace(ext, columns=[1], time_unit_s=0.1),
                                 time_unit_s=0.1) is None


@pytest.mark.parametrize("sep, decimal", [(";", ","), ("\t", ","), (",", "."), (" ", "."),
                                          ("\t", ".")])
def test_delimiter_and_decimal_comma_are_detected(tmp_path, sep, decimal):
    t = np.arange(0, 30, 0.2)
    y = np.column_stack([5 * np.sin(t), np.cos(t)])
    lines = [sep.join(f"{v:.4f}".replace(".", decimal) for v in (a, *b))
             for a, b in zip(t, y, strict=True)]
    f = tmp_path / "trace.txt"
    f.write_text("time;x;y\n".replace(";", sep) + "\n".join(lines) + "\n", encoding="utf-8")
    tr = read_trace(f, columns=[1, 2])
    np.testing.assert_allclose(tr.time_s, t, atol=1e-4)
    np.testing.assert_allclose(tr.values, y, atol=1e-4)
