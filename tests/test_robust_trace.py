"""Trace files that are not text, not regular files, or absurd are refused in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from cyberknife_sim.errors import InputError
from cyberknife_sim.motion import read_trace

GOOD = "".join(f"{0.2 * i:.1f} {np.sin(0.5 * i):.4f} {np.cos(0.5 * i):.4f}\n" for i in range(40))


def _refused(path, match, **kwargs) -> str:
    with pytest.raises(InputError) as err:
        read_trace(path, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and match in msg, msg
    return msg


def test_latin1_comment_is_ignored_but_latin1_data_is_refused(tmp_path):
    p = tmp_path / "lat.txt"
    p.write_bytes("# température (°C) — latin-1\n".encode("latin-1", "replace") + GOOD.encode())
    tr = read_trace(p, columns=(1, 2))
    assert tr.values.shape == (40, 2)
    q = tmp_path / "lat_data.txt"
    q.write_bytes(GOOD.encode() + "8.0 1,5° 2\n".encode("latin-1"))
    _refused(q, "line 41 is not UTF-8", columns=(1, 2))


def test_utf16_with_bom_is_read(tmp_path):
    p = tmp_path / "u16.txt"
    p.write_text("# exported\n" + GOOD, encoding="utf-16")
    np.testing.assert_allclose(read_trace(p, columns=(1,)).values[:, 0],
                               np.sin(0.5 * np.arange(40)), atol=1e-4)


@pytest.mark.parametrize("data", [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),   # an image
    GOOD.encode("utf-16-le"),                                     # UTF-16 without BOM
])
def test_binary_files_are_refused(tmp_path, data):
    p = tmp_path / "trace.png"
    p.write_bytes(data)
    _refused(p, "binary data")


def test_device_folder_and_oversize_files_are_refused(tmp_path):
    _refused(tmp_path, "is a folder")
    if os.path.exists("/dev/zero"):
        with pytest.raises(InputError, match="not a regular file"):
            read_trace("/dev/zero")  # used to die with MemoryError
    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.truncate(65 * 2**20)  # sparse: no real disk use
    _refused(big, "MiB")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_does_not_block(tmp_path):
    fifo = tmp_path / "trace.fifo"
    os.mkfifo(fifo)
    code = ("from cyberknife_sim.motion import read_trace\n"
            "from cyberknife_sim.errors import InputError\n"
            f"try:\n    read_trace({str(fifo)!r})\nexcept InputError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    assert "not a regular file" in out.stdout, out


@pytest.mark.parametrize(("text", "kwargs", "match"), [
    (GOOD + "8.0 1e300 0\n", {}, "line 41: value 1e+300"),
    (GOOD + "8.0 2e6 0\n", {}, "beyond ±1e+06"),
    (GOOD, {"value_scale": 1e7}, "beyond ±1e+06"),
    (GOOD, {"columns": (-1,)}, "must not be negative (got -1)"),
    (GOOD, {"time_column": -1}, "must not be negative (got -1)"),
    (GOOD, {"time_unit_s": 1e300}, "time_unit_s must be within"),
    (GOOD, {"time_unit_s": 1e-4}, "sampling interval 2e-05 s"),
    (GOOD, {"time_unit_s": 100.0}, "sampling interval 20 s"),
    (GOOD + "1e9 0 0\n", {}, "time runs 0..1e+09 s"),
])
def test_absurd_values_and_columns_are_refused(tmp_path, text, kwargs, match):
    p = tmp_path / "t.txt"
    p.write_text(text)
    _refused(p, match, **{"columns": (1,), **kwargs})


def test_negative_column_does_not_count_from_the_end(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(GOOD)
    _refused(p, "0-based", columns=(1, -1))


def test_read_trace_is_simple_enough():
    ruff = os.path.join(os.path.dirname(sys.executable), "ruff")
    if not os.path.exists(ruff):
        pytest.skip("ruff not installed beside the interpreter")
    src = os.path.join(os.path.dirname(__file__), "..", "cyberknife_sim", "motion", "_trace.py")
    out = subprocess.run([ruff, "check", "--select", "C901", "--config",
                          "lint.mccabe.max-complexity=15", src], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout


def test_scene_trace_with_negative_column_is_refused(tmp_path):
    """Refused by the scene schema or, at the latest, by read_trace (never counted from the
    end of the row)."""
    from cyberknife_sim.errors import SceneError
    from cyberknife_sim.motion import MotionTruth
    from cyberknife_sim.scene import scene_from_dict

    p = tmp_path / "t.txt"
    p.write_text(GOOD)
    with pytest.raises((SceneError, InputError), match="columns|must not be negative"):
        scene = scene_from_dict({"motion": {"trace": {"file": str(p), "columns": [-1]}},
                                 "simulation": {"duration_s": 5}})
        MotionTruth.from_scene(scene, np.random.default_rng(0))
