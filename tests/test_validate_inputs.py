"""``cksim validate`` checks what a run will read, and the scene bounds what a run holds."""

from __future__ import annotations

import pytest
import yaml

from cyberknife_sim.cli import main
from cyberknife_sim.errors import SceneError
from cyberknife_sim.scene import scene_from_dict


def _write(tmp_path, data, name="scene.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    return p


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.shared_data
def test_validate_reads_the_ct_and_checks_the_target(shared_data, tmp_path, capsys):
    ct = str(shared_data / "ct" / "example_ct.nii.gz")
    ok = _write(tmp_path, {"patient": {"phantom": None, "ct": ct,
                                       "target_ct_mm": [7.0, -143.3, 262.3]}})
    assert main(["validate", str(ok)]) == 0
    assert "122x101x112 voxels), target inside it" in capsys.readouterr().out
    outside = _write(tmp_path, {"patient": {"phantom": None, "ct": ct,
                                            "target_ct_mm": [7.0, -143.3, 900.0]}}, "o.yaml")
    assert main(["validate", str(outside)]) == 2
    assert "patient.target_ct_mm: the target" in _one_error(capsys)


def test_validate_refuses_an_unreadable_ct(tmp_path, capsys):
    bad = tmp_path / "ct.nii"
    bad.write_bytes(b"\x5c\x01\x00\x00" + b"\x00" * 40)  # a NIfTI header cut short
    scene = _write(tmp_path, {"patient": {"phantom": None, "ct": str(bad),
                                          "target_ct_mm": [0.0, 0.0, 0.0]}})
    assert main(["validate", str(scene)]) == 2
    assert str(bad) in _one_error(capsys)


def test_validate_reads_the_trace_and_the_plan(tmp_path, capsys):
    trace = tmp_path / "t.txt"
    trace.write_text("\n".join(f"{0.2 * k:.1f} {k % 20 * 0.5:.2f}" for k in range(300)))
    short = _write(tmp_path, {"motion": {"trace": {"file": str(trace), "kind": "external",
                                                   "columns": [1]}},
                              "simulation": {"duration_s": 120.0}})
    assert main(["validate", str(short)]) == 2  # the trace lasts 59.8 s
    assert "shorter than the simulation" in _one_error(capsys)
    plan = tmp_path / "plan.json"
    plan.write_text('{"format": "cksim-plan", "version": 1}')
    bad_plan = _write(tmp_path, {"plan": {"file": str(plan)}}, "p.yaml")
    assert main(["validate", str(bad_plan)]) == 2
    assert "plan.json" in _one_error(capsys)


def test_marker_frames_of_a_run_are_bounded():
    scene_from_dict({"tracking": {"markers": {"rate_hz": 100.0}},
                     "simulation": {"duration_s": 36000.0}})  # 3.6 M frames: fine
    with pytest.raises(SceneError, match="marker frames exceed"):
        scene_from_dict({"tracking": {"markers": {"rate_hz": 500.0}},
                         "simulation": {"duration_s": 36000.0}})
