"""Scene values of the wrong type, non-finite, or beyond what a run can take are refused at
validation with one line each that names the key path; nothing else ever escapes."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cyberknife_sim.cli import main
from cyberknife_sim.errors import SceneError
from cyberknife_sim.scene import Scene, load_scene, scene_from_dict

SCENES = Path(__file__).resolve().parents[1] / "scenes"
DEFAULT = yaml.safe_load((SCENES / "default.yaml").read_text(encoding="utf-8"))
NAN, INF = float("nan"), float("inf")
ORIGIN = "s.yaml"


def _set(data: dict, key: str, value: Any) -> dict:
    """A copy of ``data`` with ``value`` at the dotted ``key`` (list indices as numbers)."""
    data = copy.deepcopy(data)
    *parents, last = [int(p) if p.isdigit() else p for p in key.split(".")]
    node = data
    for part in parents:
        node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    node[last] = value
    return data


@pytest.fixture
def scene_dir(tmp_path) -> Path:
    """A scene folder with a valid trace, an empty folder and a folder of (pretend) DICOM."""
    (tmp_path / "trace.txt").write_text("".join(f"{i * 0.1:.1f} 0 0 0\n" for i in range(400)))
    (tmp_path / "empty").mkdir()
    (tmp_path / "dicom").mkdir()
    (tmp_path / "dicom" / "slice1.dcm").write_bytes(b"\0" * 128 + b"DICM")
    (tmp_path / "notes.txt").write_text("not a CT\n")
    return tmp_path


def _problems(data: dict, scene_dir: Path) -> list[str]:
    with pytest.raises(SceneError) as info:
        scene_from_dict(data, origin=ORIGIN, scene_dir=scene_dir)
    lines = list(info.value.problems)
    assert lines and all("\n" not in ln and ln.startswith(f"{ORIGIN}: ") for ln in lines), lines
    return lines


TRACE = {"motion": {"trace": {"file": "trace.txt", "columns": [1]}}}

# (key path set, value, the key path the problem must name, a word of the message)
CASES = [
    # 1. wrong types are not coerced
    ("simulation.duration_s", True, "simulation.duration_s", "number"),
    ("simulation.duration_s", "12.5", "simulation.duration_s", "number"),
    ("motion.breathing.hysteresis_deg", "10", "motion.breathing.hysteresis_deg", "number"),
    ("motion.breathing.enabled", "yes", "motion.breathing.enabled", "boolean"),
    ("motion.breathing.enabled", 1, "motion.breathing.enabled", "boolean"),
    ("motion.target_moves_with_spine", 0, "motion.target_moves_with_spine", "boolean"),
    ("name", b"hello", "name", "string"),
    ("room.imaging.views.0.name", b"A", "room.imaging.views.0.name", "string"),
    ("patient.phantom", b"default", "patient.phantom", "string"),
    ("simulation.seed", True, "simulation.seed", "integer"),
    ("plan.n_beams", 120.0, "plan.n_beams", "integer"),
    ("room.imaging.binning", True, "room.imaging.binning", "integer"),
    ("room.imaging.binning", 2.0, "room.imaging.binning", "integer"),
    ("room.couch.size_mm", "520, 60, 2000", "room.couch.size_mm", "tuple"),
    ("room.couch.size_mm", [520, True, 2000], "room.couch.size_mm.1", "number"),
    ("plan.file", 12, "plan.file", "path must be a string"),
    # 2. every float is finite
    ("motion.spine.drift_mm_per_min", [NAN, 0, 0], "motion.spine.drift_mm_per_min.0", "finite"),
    ("motion.spine.drift_deg_per_min", [0, INF, 0], "motion.spine.drift_deg_per_min.1",
     "finite"),
    ("motion.spine.setup_error_mm", [0, 0, -INF], "motion.spine.setup_error_mm.2", "finite"),
    ("room.couch.patient_size_mm", [NAN, 0, 0], "room.couch.patient_size_mm.0", "finite"),
    ("simulation.duration_s", NAN, "simulation.duration_s", "finite"),
    ("tracking.markers.noise_mm", INF, "tracking.markers.noise_mm", "finite"),
    ("simulation.blank_xray_at_s", [NAN], "simulation.blank_xray_at_s.0", "finite"),
    ("room.robot.base_position_mm", [0, 10**400, 0], "room.robot.base_position_mm.1", "number"),
    # 3. values a run cannot take
    ("simulation.time_step_s", 1e-9, "simulation.time_step_s", "greater than or equal to 0.001"),
    ("tracking.markers.rate_hz", 5e-324, "tracking.markers.rate_hz", "greater than or equal"),
    ("motion.breathing.direction", [0, 0, 0], "motion.breathing.direction", "not be zero"),
    ("motion.breathing.direction", [1e-200, 0, 0], "motion.breathing.direction", "not be zero"),
    ("motion.breathing.direction", [1e300, 0, 0], "motion.breathing.direction.0", "less than"),
    ("room.couch.patient_size_mm", [420, 0, 1750], "room.couch.patient_size_mm.1", "greater"),
    ("room.couch.size_mm", [-520, 60, 2000], "room.couch.size_mm.0", "greater"),
    ("room.couch.center_z_mm", 1e300, "room.couch.center_z_mm", "less than"),
    ("room.robot.base_position_mm", [0, 1e300, 0], "room.robot.base_position_mm.1", "less"),
    ("room.imaging.pixel_spacing_mm", 5e-324, "room.imaging.pixel_spacing_mm", "greater"),
    ("room.imaging.xray.photons_per_mas_per_mm2", 1e300,
     "room.imaging.xray.photons_per_mas_per_mm2", "less than"),
    ("room.imaging.xray.scatter_kernel_sigma_mm", 1e300,
     "room.imaging.xray.scatter_kernel_sigma_mm", "less than"),
    ("plan.total_mu", 1e300, "plan.total_mu", "less than"),
    ("plan.dose_rate_mu_per_min", 5e-324, "plan.dose_rate_mu_per_min", "greater"),
    ("tracking.imaging.retry_s", 5e-324, "tracking.imaging.retry_s", "greater"),
    ("tracking.imaging.model_build_spacing_s", 1e-9, "tracking.imaging.model_build_spacing_s",
     "greater"),
    ("motion.spine.drift_mm_per_min", [1e300, 0, 0], "motion.spine.drift_mm_per_min.0", "less"),
    ("motion.spine.shifts", [{"time_s": 1, "rotation_deg": [0, 0, 1e300]}],
     "motion.spine.shifts.0.rotation_deg.2", "less"),
    ("patient.target_ct_mm", [0, 0, 1e300], "patient.target_ct_mm.2", "less"),
    ("patient.ct", "", "patient.ct", "path is empty"),
    ("patient.ct", "   ", "patient.ct", "path is empty"),
    ("patient.ct", ".", "patient.ct", "scene file's own folder"),
    ("patient.ct", "empty", "patient.ct", "holds no files"),
    ("patient.ct", "notes.txt", "patient.ct", "unsupported CT file type"),
    ("patient.ct", "a\x00b.nii", "patient.ct", "NUL"),
    ("patient.ct", "x" * 5000 + ".nii", "patient.ct", ""),
    ("plan.file", "", "plan.file", "path is empty"),
    ("plan.file", ".", "plan.file", "is a folder"),
    ("motion.trace.file", "dicom", "motion.trace.file", "is a folder"),
    ("motion.trace.columns", [-1], "motion.trace.columns.0", "greater than or equal to 0"),
    ("motion.trace.time_column", -1, "motion.trace.time_column", "greater than or equal"),
    ("motion.trace.time_unit_s", 1e300, "motion.trace.time_unit_s", "less than"),
    ("motion.trace.time_unit_s", 5e-324, "motion.trace.time_unit_s", "greater"),
    ("patient.organs_at_risk", [""], "patient.organs_at_risk.0", "pattern"),
]


@pytest.mark.parametrize(("key", "value", "where", "word"), CASES,
                         ids=[f"{c[0]}={str(c[1])[:20]}" for c in CASES])
def test_bad_value_is_refused_naming_its_key(scene_dir, key, value, where, word):
    base = {**DEFAULT, **TRACE} if key.startswith("motion.trace") else DEFAULT
    if key.startswith("patient.ct"):
        base = _set(_set(base, "patient.phantom", None), "patient.target_ct_mm", [0, 0, 0])
    lines = _problems(_set(base, key, value), scene_dir)
    assert any(ln.startswith(f"{ORIGIN}: {where}: ") and word in ln for ln in lines), lines


def test_time_step_too_fine_for_the_duration(scene_dir):
    data = _set(_set(DEFAULT, "simulation.duration_s", 36000), "simulation.time_step_s", 0.001)
    (line,) = _problems(data, scene_dir)
    assert line.startswith(f"{ORIGIN}: simulation.time_step_s: ") and "2,000,000" in line


def test_a_bad_list_item_is_one_problem_not_two(scene_dir):
    views = [{"name": "A", "source_angle_deg": "x"}, {"name": "B", "source_angle_deg": -45}]
    (line,) = _problems(_set(DEFAULT, "room.imaging.views", views), scene_dir)
    assert line.startswith(f"{ORIGIN}: room.imaging.views.0.source_angle_deg: ")
    (line,) = _problems(_set(DEFAULT, "room.imaging.views", views[:1]), scene_dir)
    assert "room.imaging.views: should have at least 2 items, not 1" in line


@pytest.mark.parametrize(("key", "value", "expect"), [
    ("simulation.duration_s", 45, 45.0),          # an int where a float is expected
    ("motion.breathing.direction", [0, 0, 1], (0.0, 0.0, 1.0)),
    ("motion.breathing.direction", (0, -1, 0), (0.0, -1.0, 0.0)),  # a tuple (Python callers)
    ("simulation.time_step_s", 0.001, 0.001),
    ("patient.ct", "dicom", "dicom"),              # a folder holding files: a DICOM series
    ("motion.trace.time_unit_s", 0.1, 0.1),
])
def test_good_values_still_pass(scene_dir, key, value, expect):
    base = {**DEFAULT, **TRACE} if key.startswith("motion.trace") else DEFAULT
    if key.startswith("patient.ct"):
        base = _set(_set(base, "patient.phantom", None), "patient.target_ct_mm", [0, 0, 0])
        expect = scene_dir / expect
    scene = scene_from_dict(_set(base, key, value), origin=ORIGIN, scene_dir=scene_dir)
    got: Any = scene
    for part in key.split("."):
        got = getattr(got, part)
    assert got == expect and type(got) is type(expect)


@pytest.mark.parametrize("path", sorted(SCENES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenes_round_trip_through_json(path):
    """A run re-validates the scene from its JSON dump (seed/duration overrides, the run
    folder's scene.yaml): strict types must take lists and strings back."""
    scene = load_scene(path)
    again = scene_from_dict(scene.model_dump(mode="json"), origin=ORIGIN)
    assert again.model_dump() == scene.model_dump()


# YAML text, then the key path of each problem it holds (one stderr line each)
YAML_CASES = [
    ("name: !!binary aGVsbG8=\n", ["name"]),
    ("motion: {spine: {drift_mm_per_min: [.nan, 0, 0], setup_error_mm: [0, .inf, 0]}}\n",
     ["motion.spine.drift_mm_per_min.0", "motion.spine.setup_error_mm.1"]),
    ("room: {couch: {patient_size_mm: [.nan, 0, 0]}}\n",
     ["room.couch.patient_size_mm.0", "room.couch.patient_size_mm.1",
      "room.couch.patient_size_mm.2"]),
    ("simulation: {time_step_s: 1e-9}\ntracking: {markers: {rate_hz: 5e-324}}\n",
     ["simulation.time_step_s", "tracking.markers.rate_hz"]),
    ("motion: {breathing: {direction: [0, 0, 0], enabled: yes, period_s: true}}\n",
     ["motion.breathing.direction", "motion.breathing.period_s"]),  # YAML 1.1 `yes` is true
    ("motion: {breathing: {enabled: 'yes', amplitude_mm: '12.5'}}\n",
     ["motion.breathing.enabled", "motion.breathing.amplitude_mm"]),
    ("patient: {phantom: null, ct: '', target_ct_mm: [0, 0, 0]}\n", ["patient.ct"]),
    ("patient: {phantom: null, ct: ., target_ct_mm: [0, 0, 0]}\n", ["patient.ct"]),
    ("room: {imaging: {binning: true}}\nsimulation: {seed: 1.0}\n",
     ["room.imaging.binning", "simulation.seed"]),
]


@pytest.mark.parametrize(("text", "keys"), YAML_CASES, ids=[c[1][0] for c in YAML_CASES])
def test_cli_validate_one_line_per_problem(tmp_path, capsys, text, keys):
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    prefix = f"cksim validate: error: {path}: "
    assert len(lines) == len(keys), captured.err
    assert all(ln.startswith(prefix) for ln in lines), captured.err
    assert sorted(ln[len(prefix):].split(": ")[0] for ln in lines) == sorted(keys)
    assert "Traceback" not in captured.err and captured.out == ""


# ---- property: random junk in random leaves is refused cleanly or gives a finite scene ------

def _leaves(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves of the full default scene (lists of sections entered)."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaves(v, f"{prefix}{k}.")]
    if isinstance(node, list) and node and isinstance(node[0], dict):
        return [p for i, v in enumerate(node) for p in _leaves(v, f"{prefix}{i}.")]
    return [prefix[:-1]]


FULL = Scene().model_dump(mode="json")
LEAVES = sorted(set(_leaves(FULL)) | {"motion.spine.shifts", "patient.ct", "plan.file"})

_nasty = st.sampled_from([NAN, INF, -INF, True, False, "12.5", "yes", b"A", None, 0, -1,
                          5e-324, 1e-9, 1e300, -1e300, 10**400, "", ".", "/", [0, 0, 0], []])
_scalars = st.one_of(
    st.none(), st.booleans(), st.text(max_size=12), st.binary(max_size=6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30))
_nested = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)
_junk = st.one_of(_nasty, _scalars, _nested)


def _floats(node: Any) -> list[float]:
    if isinstance(node, float):
        return [node]
    if isinstance(node, dict):
        return [f for v in node.values() for f in _floats(v)]
    if isinstance(node, list | tuple):
        return [f for v in node for f in _floats(v)]
    return []


def _get(node: Any, key: str) -> Any:
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _kept(got: Any, given: Any) -> bool:
    """``got`` (the validated value, dumped as JSON) is ``given`` without coercion: no bool
    or string became a number, no number a bool (an int may become a float)."""
    if isinstance(given, bool) or given is None:
        return got is given
    if isinstance(given, int | float):
        return not isinstance(got, bool) and isinstance(got, int | float) and got == given
    if isinstance(given, list):
        return (isinstance(got, list) and len(got) == len(given)
                and all(_kept(a, b) for a, b in zip(got, given, strict=True)))
    if isinstance(given, dict):
        return isinstance(got, dict) and all(k in got and _kept(got[k], v)
                                             for k, v in given.items())
    return type(got) is type(given) and got == given


PATHS = {"patient.ct", "plan.file", "motion.trace.file"}


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(st.sampled_from(LEAVES), _junk), min_size=1, max_size=2))
def test_random_junk_is_refused_cleanly_or_valid_and_finite(scene_dir, changes):
    data = copy.deepcopy(FULL)
    for key, value in changes:
        data = _set(data, key, value)
    try:
        scene = scene_from_dict(data, origin=ORIGIN, scene_dir=scene_dir)
    except SceneError as exc:
        assert exc.problems and all("\n" not in ln and ln.startswith(f"{ORIGIN}: ")
                                    for ln in exc.problems)
        return
    assert all(math.isfinite(f) for f in _floats(scene.model_dump()))
    dumped = scene.model_dump(mode="json")
    for key, value in dict(changes).items():
        if key not in PATHS and not any(k != key and k.startswith(key + ".") for k in PATHS):
            assert _kept(_get(dumped, key), value), (key, value, _get(dumped, key))
